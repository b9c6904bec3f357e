#!/usr/bin/env python3
"""Set-up and everyday tasks, with nothing but python3 on the machine.

usage: python3 tasks.py TASK [ARGUMENTS...]

    setup          make ./.venv and install the pinned requirements into it (once; again when they change)
    demo           register a batch against the local fake platform and write its helm scripts
    test           run the whole test suite (what CI runs); pytest's own arguments may follow
    test --fast    run everything but the tests marked slow (the edit loop)
    lint           check the code with ruff (settings in pyproject.toml) and the shell with shellcheck
    bench          run the benchmarks

Each task first sets up ./.venv as `setup` does, then runs in that environment.
`python3 tasks.py TASK --help` describes a task's own arguments.
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

# Each task's commands, run in turn; the task fails if any of them fails (every one still runs).
TASKS = {
    "setup": [],
    "demo": [[str(PYTHON), "-m", "devicefactory.demo"]],
    # Two worker processes, each with its own fake platform: most tests wait on a subprocess of their own, so two
    # at a time use both cores of the 2-core machines CI and the team run on.
    "test": [[str(PYTHON), "-m", "pytest", "-q", "-n", "2", "tests"]],
    "lint": [[str(PYTHON), "-m", "ruff", "check", "."], [str(PYTHON), "tools/shellcheck.py"]],
    "bench": [[str(PYTHON), "bench/run.py"]],
}
FAST = ["-m", "not slow"]  # what `test --fast` adds: the tests not marked @pytest.mark.slow


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


def commands_of(task, arguments):
    """The command lines of `task`, the user's `arguments` given to its first command (pytest's, ruff's ...)."""
    if task == "test" and "--fast" in arguments:
        arguments = [argument for argument in arguments if argument != "--fast"] + FAST
    first, *rest = TASKS[task]
    return [first + arguments, *rest]


def main(argv):
    if argv[:1] in (["--help"], ["-h"], ["help"]):
        print(__doc__.strip())
        return 0
    if len(argv) < 1 or argv[0] not in TASKS:
        problem = f"unknown task {argv[0]!r}" if argv else "no task given"
        print(f"tasks.py: error: {problem}\n\n{__doc__.strip()}", file=sys.stderr)
        return 2
    task, arguments = argv[0], argv[1:]
    if task == "setup" and arguments:
        print("usage: python3 tasks.py setup  (make ./.venv with the pinned requirements)",
              file=sys.stdout if arguments in (["--help"], ["-h"]) else sys.stderr)
        return 0 if arguments in (["--help"], ["-h"]) else 2
    try:
        ensure_venv()
    except subprocess.CalledProcessError as error:
        print(f"tasks.py: error: installing the requirements failed (exit {error.returncode})", file=sys.stderr)
        return 1
    if task == "setup":
        print(f"{VENV} is ready: the scripts now run as typed, e.g. python3 deviceRegistrator.py --help")
        return 0
    failed = [subprocess.run(command, cwd=ROOT).returncode for command in commands_of(task, arguments)]
    return next((code for code in failed if code), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
