"""Shared fixtures and helpers: one local fake platform per session (reset for each test), running each script as
a user would, and the stand-in helm with its call log."""

import json
import os
import subprocess
import sys
from pathlib import Path

import helm_python
import pytest

from devicefactory.fakeplatform import FakePlatform

ROOT = Path(__file__).resolve().parent.parent
REGISTRATOR = ROOT / "deviceRegistrator.py"
DEPLOYER = ROOT / "deviceDeployer.py"
STATUS = ROOT / "deviceStatus.py"
DECOMMISSIONER = ROOT / "deviceDecommissioner.py"
STANDIN_HELM = ROOT / "tests" / "standins" / "helm"


@pytest.fixture(scope="session")
def fake_platform_server(tmp_path_factory):
    with FakePlatform(state_dir=tmp_path_factory.mktemp("fakeplatform")) as fake:
        yield fake


@pytest.fixture
def fake_platform(fake_platform_server):
    """The session's fake platform, with no devices, types or injected failures."""
    fake_platform_server.reset()
    yield fake_platform_server
    fake_platform_server.on_bulk_add = None
    fake_platform_server.reset()


def clean_environment(**extra):
    """The test process's environment without any WIOTP_* setting or CA bundle, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIOTP_") and k != "REQUESTS_CA_BUNDLE"}
    env.update(extra)
    return env


def registrator_command(*args):
    return [sys.executable, str(REGISTRATOR), *args]


def run_registrator(workdir, *args, fake=None, env=None, timeout=120):
    """Run deviceRegistrator.py as a user would, in `workdir`, against `fake` unless `env` is given."""
    if env is None:
        env = clean_environment(**(fake.env() if fake else {}))
    return subprocess.run(
        registrator_command(*args), cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout
    )


def run_script(script, workdir, *args, fake=None, env=None, timeout=120):
    """Run one of the scripts that talk to the platform as a user would, in `workdir`, against `fake` unless
    `env` is given, with no terminal on stdin."""
    if env is None:
        env = clean_environment(**(fake.env() if fake else {}))
    return subprocess.run([sys.executable, str(script), *args], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def read_terminal(leader):
    """Everything a process wrote to the pty whose leader side is `leader`, until its other side closes."""
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: every process holding the other side has closed it
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    return output.decode()


def run_generated_script(workdir, script, helm_log):
    """Run a script deviceDeployer.py wrote with bash, in `workdir`, its helm calls recorded into `helm_log`."""
    env = dict(os.environ, HELM_STANDIN_LOG=str(helm_log))
    return subprocess.run(["bash", script], cwd=workdir, env=env, capture_output=True, text=True)


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture
def workdir(tmp_path):
    """An empty folder to run the scripts in, as a user runs them from their project folder."""
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


def run_deployer(project, *arguments, env=None):
    """Run deviceDeployer.py in `project`, with no WIOTP_* settings unless `env` is given."""
    return subprocess.run(
        [sys.executable, str(DEPLOYER), *arguments], cwd=project, env=clean_environment() if env is None else env,
        capture_output=True, text=True, timeout=60,
    )


def helm_calls(helm_log):
    """Every call the stand-in helm recorded into `helm_log`, by start time: (start, end, [arguments])."""
    calls = []
    for record in helm_log.iterdir():
        start, end, *arguments = record.read_bytes().split(b"\0")[:-1]
        calls.append((float(start), float(end), [argument.decode() for argument in arguments]))
    return sorted(calls)


def helm_arguments(helm_log, subcommand=None):
    """The argument lists of the stand-in helm's calls (of one subcommand, or all), by start time."""
    return [arguments for _, _, arguments in helm_calls(helm_log) if subcommand in (None, arguments[0])]


@pytest.fixture(scope="module", params=["oshi", "psutil"])
def chart_name(request):
    """Each of the Helm charts in turn: a chart test runs for both."""
    return request.param


@pytest.fixture(scope="module")
def chart(chart_name):
    """The chart, loaded by the real Helm engine."""
    with helm_python.Chart.load(ROOT / "helm" / chart_name) as loaded:
        yield loaded
