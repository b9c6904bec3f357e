"""Shared fixtures: one local fake platform per session (reset for each test), and ways to run the scripts."""

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


@pytest.fixture
def workdir(tmp_path):
    """An empty folder to run the scripts in, as a user runs them from their project folder."""
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module", params=["oshi", "psutil"])
def chart_name(request):
    """Each of the Helm charts in turn: a chart test runs for both."""
    return request.param


@pytest.fixture(scope="module")
def chart(chart_name):
    """The chart, loaded by the real Helm engine."""
    with helm_python.Chart.load(ROOT / "helm" / chart_name) as loaded:
        yield loaded
