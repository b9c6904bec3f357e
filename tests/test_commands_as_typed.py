"""The commands work as typed: tasks.py answers --help and sets up, and the scripts run with a python3 that lacks
the project's packages (they run again under .venv/bin/python, or say in one line what to type)."""

import os
import shutil
import subprocess
import sys

import pytest

import tasks
from conftest import ROOT
from devicefactory import projectpython
from devicefactory.errors import ExitCode

SCRIPTS = ["deviceRegistrator.py", "deviceDeployer.py", "deviceStatus.py", "deviceDecommissioner.py", "deviceRunner.py"]
FAKE = ["-m", "devicefactory.fakeplatform"]
COMMANDS = [[script] for script in SCRIPTS] + [FAKE]
BARE_PYTHON = [sys.executable, "-S"]  # no site-packages: a python3 with none of the project's packages


def system_python():
    """A python3 on PATH outside .venv, or None."""
    path = os.pathsep.join(folder for folder in os.environ["PATH"].split(os.pathsep) if ".venv" not in folder)
    found = shutil.which("python3", path=path)
    return found if found and os.path.realpath(found) != os.path.realpath(sys.executable) else None


def run(command, cwd=ROOT):
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_tasks_help_exits_0_and_names_every_task():
    result = run([sys.executable, "tasks.py", "--help"])
    assert result.returncode == 0 and result.stderr == ""
    for task in ("setup", "demo", "test --fast", "lint", "bench"):
        assert f"    {task} " in result.stdout


def test_an_unknown_task_is_one_line_then_the_usage():
    result = run([sys.executable, "tasks.py", "tset"])
    assert result.returncode == 2
    assert result.stderr.startswith("tasks.py: error: unknown task 'tset'\n\n")


def test_setup_says_the_venv_is_ready():
    result = run([sys.executable, "tasks.py", "setup"])
    assert result.returncode == 0
    assert result.stdout.endswith("is ready: the scripts now run as typed, e.g. python3 deviceRegistrator.py --help\n")


def test_demo_help_describes_the_demo_and_runs_nothing():
    result = run([sys.executable, "tasks.py", "demo", "--help"])
    assert result.returncode == 0 and result.stdout.startswith("usage: python3 tasks.py demo [-h]")
    assert "Local fake" not in result.stdout and "$ python3" not in result.stdout


def test_fast_runs_pytest_without_the_slow_tests():
    assert tasks.commands_of("test", ["--fast", "-x"]) == [
        [str(tasks.PYTHON), "-m", "pytest", "-q", "-n", "2", "tests", "-x", "-m", "not slow"]]
    assert tasks.commands_of("test", []) == [[str(tasks.PYTHON), "-m", "pytest", "-q", "-n", "2", "tests"]]
    lint = tasks.commands_of("lint", [])
    assert [command[1:4] for command in lint] == [["-m", "ruff", "check"], ["tools/shellcheck.py"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command[-1])
def test_a_python_without_the_packages_runs_the_command_under_the_venv(command):
    result = run([*BARE_PYTHON, *command, "--version"])
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.endswith(f"(device factory) {tasks_version()}\n")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command[-1])
def test_without_a_venv_the_command_says_what_to_type_in_one_line(tmp_path, command):
    shutil.copytree(ROOT / "devicefactory", tmp_path / "devicefactory", ignore=shutil.ignore_patterns("__pycache__"))
    for script in SCRIPTS:
        shutil.copy(ROOT / script, tmp_path)
    result = run([*BARE_PYTHON, *command, "--help"], cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "missing here): set them up once with `python3 tasks.py setup` in " in line
    assert line.endswith(", then run the same command again")


@pytest.mark.slow
def test_the_system_python3_runs_every_command():
    python = system_python()
    if python is None:
        pytest.skip("no python3 on PATH outside .venv")
    for command in COMMANDS:
        result = run([python, *command, "--version"])
        assert (result.returncode, result.stderr) == (0, ""), command


def tasks_version():
    from devicefactory import __version__

    return __version__


@pytest.mark.slow
def test_shellcheck_finds_the_runtime_the_chart_scripts_and_every_generated_form_clean():
    result = run([sys.executable, "tools/shellcheck.py"])
    assert (result.returncode, result.stderr) == (0, ""), result.stdout
    assert result.stdout == ("shellcheck: 4 runtime files, 3 chart scripts and 16 generated scripts are clean\n")


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_exit_code_in_the_help_is_written_from_the_one_enumeration(script):
    help_text = run([sys.executable, script, "--help"]).stdout
    block = help_text.split("\nexit codes:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    codes = [ExitCode(int(line.split()[0])) for line in block]
    assert codes[:3] == [ExitCode.OK, ExitCode.ERROR, ExitCode.USAGE] and codes[-1] == ExitCode.INTERRUPTED
    for code, line in zip(codes, block, strict=True):
        assert line.startswith(f"{int(code):>5}  {code.description}")


def test_a_python_too_old_or_a_venv_that_did_not_help_gets_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(projectpython, "VENV_PYTHON", str(tmp_path / "no-venv" / "python"))
    monkeypatch.setattr(projectpython, "MINIMUM_PYTHON", (99, 0))
    with pytest.raises(SystemExit) as stopped:
        projectpython.use_project_python("deviceStatus.py")
    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith(
        f"deviceStatus.py: error: this needs Python 99.0 or later (this is {sys.version.split()[0]}): run "
        "`python3 tasks.py setup` in ")
    # Run again under .venv already (the marker is set) and still missing a package: no second exec, one line.
    monkeypatch.setattr(projectpython, "MINIMUM_PYTHON", (3, 0))
    monkeypatch.setattr(projectpython, "VENV_PYTHON", sys.executable)
    monkeypatch.setenv("DEVICEFACTORY_PROJECT_PYTHON", "1")
    with pytest.raises(SystemExit):
        projectpython.use_project_python("deviceStatus.py", modules=("no_such_module_here",))
    assert "(no_such_module_here missing here)" in capsys.readouterr().err
