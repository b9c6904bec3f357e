#!/usr/bin/env python3
"""Set-up and everyday tasks, with nothing but python3 on the machine.

    python3 tasks.py demo    register a batch against the local fake platform and write its helm scripts
    python3 tasks.py test    run the whole test suite
    python3 tasks.py lint    check the code with ruff (settings in pyproject.toml)
    python3 tasks.py bench   run the benchmarks

Each task first makes ./.venv and installs the pinned requirements into it (once, and again when a
requirements file changes), then runs in that environment.
"""

import hashlib
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
REQUIREMENTS = ROOT / "requirements-dev.txt"
STAMP = VENV / "requirements.sha256"

TASKS = {
    "demo": [str(PYTHON), "-m", "devicefactory.demo"],
    "test": [str(PYTHON), "-m", "pytest", "-q", "tests"],
    "lint": [str(PYTHON), "-m", "ruff", "check", "."],
    "bench": [str(PYTHON), "bench/run.py"],
}


def requirements_digest():
    digest = hashlib.sha256()
    for path in sorted(ROOT.glob("requirements*.txt")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_venv():
    wanted = requirements_digest()
    if PYTHON.exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return
    print(f"Setting up {VENV} with the pinned requirements ...", flush=True)
    if not PYTHON.exists():
        venv.create(VENV, with_pip=True)
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
        check=True,
    )
    STAMP.write_text(wanted)


def main(argv):
    if len(argv) < 1 or argv[0] not in TASKS:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        ensure_venv()
    except subprocess.CalledProcessError as error:
        print(f"tasks.py: error: installing the requirements failed (exit {error.returncode})", file=sys.stderr)
        return 1
    return subprocess.run(TASKS[argv[0]] + argv[1:], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
