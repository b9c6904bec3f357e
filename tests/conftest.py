"""Shared fixtures and helpers: one local fake platform per session (reset for each test), running each script as
a user would, the stand-in helm with its call log, the charts as the real Helm engine renders them, and a fleet
pod's start-up command run with a stand-in client."""

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import helm_python
import kubernetes_validate
import pytest
import yaml

from devicefactory.fakeplatform import FakePlatform
from devicefactory.localregistry import write_device_config

ROOT = Path(__file__).resolve().parent.parent
REGISTRATOR = ROOT / "deviceRegistrator.py"
DEPLOYER = ROOT / "deviceDeployer.py"
STATUS = ROOT / "deviceStatus.py"
DECOMMISSIONER = ROOT / "deviceDecommissioner.py"
STANDIN_HELM = ROOT / "tests" / "standins" / "helm"
# The Kubernetes versions the charts support: the oldest and newest kubernetes-validate ships schemas for.
KUBERNETES_VERSIONS = ["1.25.0", "1.37.0"]


@pytest.fixture(scope="session")
def fake_platform_server(tmp_path_factory):
    with FakePlatform(state_dir=tmp_path_factory.mktemp("fakeplatform"), mqtt_port=0) as fake:
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


def kill_registrator_once_the_platform_applied(workdir, fake, *args):
    """Run deviceRegistrator.py and kill -9 it at the worst moment: the platform has applied its first bulk add,
    and the answer has not been read. Returns the killed process."""
    process = subprocess.Popen(registrator_command(*args), cwd=workdir, env=clean_environment(**fake.env()),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    fake.on_bulk_add = lambda device_ids: (os.kill(process.pid, signal.SIGKILL), process.wait())
    try:
        process.communicate(timeout=60)
    finally:
        fake.on_bulk_add = None
    return process


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


def run_status(workdir, *args, **kwargs):
    """Run deviceStatus.py in `workdir`, as run_script does."""
    return run_script(STATUS, workdir, *args, **kwargs)


def run_decommissioner(workdir, *args, **kwargs):
    """Run deviceDecommissioner.py in `workdir`, as run_script does."""
    return run_script(DECOMMISSIONER, workdir, *args, **kwargs)


def run_deployer(project, *arguments, env=None):
    """Run deviceDeployer.py in `project`, with no WIOTP_* settings unless `env` is given."""
    return subprocess.run(
        [sys.executable, str(DEPLOYER), *arguments], cwd=project, env=clean_environment() if env is None else env,
        capture_output=True, text=True, timeout=60,
    )


# --- the deployer's tests: a registered batch, the stand-in helm's log and environment -------------------------

def register_for_real(project, count, fake, *arguments):
    """Register devices 1..count of batch 190523 with deviceRegistrator.py against the fake platform."""
    project.mkdir(exist_ok=True)
    registered = run_registrator(project, "-b", "190523", "-n", str(count), *arguments, fake=fake)
    assert registered.returncode == 0, registered.stderr


@pytest.fixture
def project(tmp_path):
    """A project folder whose path holds a space, with devices 1-3 of batch 190523 as deviceRegistrator.py leaves
    them, written by its own config writer (no platform needed: the deployer reads configs only)."""
    folder = tmp_path / "factory floor"
    batch_folder = folder / "localDeviceRegistry" / "device" / "iotpsutil" / "190523"
    batch_folder.mkdir(parents=True)
    for number in (1, 2, 3):
        device = f"190523-{number:04d}"
        write_device_config(batch_folder, "myorg", "iotpsutil", device, f"secret-token-of-{device}")
    return folder


@pytest.fixture
def registered_project(tmp_path, fake_platform):
    """A project folder whose path holds a space, with devices 1-3 of batch 190523 registered by the real
    deviceRegistrator.py against the local fake platform."""
    folder = tmp_path / "factory floor"
    register_for_real(folder, 3, fake_platform)
    return folder


@pytest.fixture
def helm_log(tmp_path):
    folder = tmp_path / "helm calls"
    folder.mkdir()
    return folder


@pytest.fixture
def env(helm_log):
    """The environment of a run: the stand-in helm records its calls into helm_log."""
    environment = clean_environment(HELM_STANDIN_LOG=str(helm_log), LC_ALL="C")
    return {name: value for name, value in environment.items()
            if name == "HELM_STANDIN_LOG" or not name.startswith("HELM_STANDIN_")}


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


def helm_install(workdir, arguments):
    """What a recorded `helm upgrade <release> <chart> -i --values <file> [--set-file key=path]...` installs, read as
    helm reads it in `workdir` (where the script ran): (release, chart, values file as passed, values)."""
    command, release, chart_path, install, values_flag, values_path, *rest = arguments
    assert (command, install, values_flag) == ("upgrade", "-i", "--values"), arguments
    values = yaml.safe_load((workdir / values_path).read_text())
    while rest:
        flag, expression, *rest = rest
        assert flag == "--set-file", arguments
        key, _, path = expression.partition("=")
        values.update(helm_python.parse_set_file(f"{key}={workdir / path}"))  # top-level keys only, as the scripts set
    return release, chart_path, values_path, values


def check_valid_for_kubernetes(objects, version, case):
    """Fail the test unless every object is valid (strict) for Kubernetes `version`; `case` names what was rendered."""
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{case}: {obj['kind']} is not valid for Kubernetes {version}: {error.message} at {list(error.path)}")


def container_of(workload):
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


# --- a fleet pod's start-up command (files/fleet-start.sh), run for one ordinal ---------------------------------------

STANDIN_CLIENT = """\
import json, os, sys
print(json.dumps({"pid": os.getpid(), "argv": sys.argv[1:],
                  "env": {k: v for k, v in os.environ.items() if k.startswith("WIOTP_")}}))
"""


def resolve_env(container, secret):
    """The container's environment as the kubelet would set it: literals, and secretKeyRef from the Secret."""
    env = {}
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "secretKeyRef" in entry["valueFrom"] and secret is not None:
            env[entry["name"]] = base64.b64decode(secret["data"][entry["valueFrom"]["secretKeyRef"]["key"]]).decode()
    return env


def lay_out_secret(secret, directory):
    """The Secret's keys as files, as its volume shows them in the pod."""
    directory.mkdir()
    for key, value in secret["data"].items():
        (directory / key).write_bytes(base64.b64decode(value))
    return directory


def start_pod(statefulset, secret_dir, standin, ordinal, use_label):
    """Run the pod's start-up command, as the pod with `ordinal` would, with the stand-in client as its args."""
    container = container_of(statefulset)
    env = resolve_env(container, secret=None)  # a fleet pod's spec has literals and the pod-index label only
    env.update(FLEET_SECRET_DIR=str(secret_dir), PATH=os.environ["PATH"])
    env["HOSTNAME"] = f"{statefulset['metadata']['name']}-{ordinal}"
    env["FLEET_POD_INDEX"] = str(ordinal) if use_label else ""  # the label is absent before Kubernetes 1.28
    return subprocess.run(
        container["command"] + [sys.executable, str(standin), "--the-images-args"],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )


@pytest.fixture
def standin(tmp_path):
    path = tmp_path / "standin_client.py"
    path.write_text(STANDIN_CLIENT)
    return path
