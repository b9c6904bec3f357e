#!/usr/bin/env python3
"""Copy the chart library helm/devicefactory-lib into the charts/ folder of every chart that depends on it, so that
`--helmChart ./helm/psutil` installs from a fresh clone with no `helm dependency build`. Run it after every change
to the library (tests/test_charts.py checks that each copy equals the source)."""

import shutil
import sys
from pathlib import Path

HELM = Path(__file__).resolve().parent.parent / "helm"
LIBRARY = HELM / "devicefactory-lib"
CHARTS = ("psutil", "oshi")


def main():
    for chart in CHARTS:
        copy = HELM / chart / "charts" / LIBRARY.name
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(LIBRARY, copy)
        print(f"copied {LIBRARY.relative_to(HELM.parent)} to {copy.relative_to(HELM.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
