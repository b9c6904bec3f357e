"""Commands that work as typed: `python3 deviceRegistrator.py ...` with the system's python3, after set-up.

The project's packages live in ./.venv (`python3 tasks.py setup`). When a command is started by a python that
lacks them, `use_project_python` runs it again under .venv/bin/python, with the same arguments; without a set-up
.venv it prints one line that says what to type, instead of an import error's traceback. Standard library only,
and imported before anything else: this module runs where the project's packages are missing.
"""

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
# What every command imports (PyYAML, tqdm, wiotp-sdk); the fake platform adds its own (trustme, amqtt).
COMMAND_MODULES = ("yaml", "tqdm", "wiotp")
FAKE_MODULES = COMMAND_MODULES + ("trustme", "amqtt")
MINIMUM_PYTHON = (3, 11)
SETUP_COMMAND = "python3 tasks.py setup"
_REEXECUTED = "DEVICEFACTORY_PROJECT_PYTHON"  # set on the second run, so that a broken .venv cannot loop


def missing_modules(modules):
    """The names of `modules` this python cannot import."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def use_project_python(prog, modules=COMMAND_MODULES, module=None):
    """Make sure the command `prog` runs where `modules` import: return at once if they do; else run it again
    under .venv/bin/python (`module`: it was started as `python -m module`); else exit 2 with one line."""
    too_old = sys.version_info < MINIMUM_PYTHON
    missing = [] if too_old else missing_modules(modules)
    if not too_old and not missing:
        os.environ.pop(_REEXECUTED, None)  # the commands this one starts check for themselves
        return
    if os.path.exists(VENV_PYTHON) and not os.environ.get(_REEXECUTED):
        arguments = ["-m", module] if module else [sys.argv[0]]
        os.environ[_REEXECUTED] = "1"
        try:
            os.execv(VENV_PYTHON, [VENV_PYTHON, *arguments, *sys.argv[1:]])
        except OSError:
            pass  # a .venv that cannot run: say what to do below
    if too_old:
        wanted = ".".join(map(str, MINIMUM_PYTHON))
        print(f"{prog}: error: this needs Python {wanted} or later (this is {sys.version.split()[0]}): run "
              f"`{SETUP_COMMAND}` in {ROOT} with a python{wanted} or later, then the same command again",
              file=sys.stderr)
    else:
        print(f"{prog}: error: this needs the project's packages ({', '.join(missing)} missing here): set them up "
              f"once with `{SETUP_COMMAND}` in {ROOT}, then run the same command again", file=sys.stderr)
    sys.exit(2)
