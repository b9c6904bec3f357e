"""What the deployer's tests share: a batch registered as deviceRegistrator.py leaves it, the names the scripts
give it, and running a generated script with bash as a user would."""

import subprocess

from conftest import ROOT, STANDIN_HELM, run_deployer
from devicefactory.batch import Batch
from devicefactory.localregistry import write_device_config

STANDINS = ROOT / "tests" / "standins"
DEPLOY = "bin/deploy-device-iotpsutil-190523.bat"
RECALL = "bin/recall-device-iotpsutil-190523.bat"
FOLDER = "localDeviceRegistry/device/iotpsutil/190523"


def token(device):
    return f"secret-token-of-{device}"


def register(project, numbers, type_id="iotpsutil", batch_id="190523", class_id="Device"):
    """Write device configs with deviceRegistrator.py's own writer, for any devices `numbers` of a batch (the
    real registrator always registers 1..N; this makes gaps and ids that are slow or odd to register)."""
    batch = Batch(class_id, type_id, batch_id)
    folder = project / batch.registry_folder
    folder.mkdir(parents=True, exist_ok=True)
    for number in numbers:
        device = batch.device_id(number)
        write_device_config(folder, "myorg", type_id, device, token(device))
    return folder


def run_bash(project, script, env, elsewhere):
    """Run a generated script with bash from another folder, as a user may."""
    return subprocess.run(["bash", str(project / script)], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=60)


def written(project):
    return sorted(path.name for path in (project / "bin").iterdir()) if (project / "bin").exists() else []


def device_id(batch_id, number):
    return Batch("Device", "iotpsutil", batch_id).device_id(number)


def upgrade(n, chart="wiotp/psutil", folder=FOLDER, batch_id="190523", type_id="iotpsutil"):
    device = device_id(batch_id, n)
    return ["upgrade", f"{type_id}-{device}", chart, "-i", "--values", f"./{folder}/{device}.yaml"]


def report(helm_version, how, count=3, pace="one helm command at a time"):
    return (
        f"Using Helm {helm_version} syntax ({how})\n"
        f"Wrote {DEPLOY} and {RECALL} for {count} devices ({pace})\n"
        f"To deploy them: bash {DEPLOY}\n"
        f"To recall them: bash {RECALL}\n"
    )


def deploy_args(*more):
    return ["-b", "190523", "-n", "3", "--helmChart", "wiotp/psutil", "--helmVersion", "3", *more]


def write_fleet(project, count, *more, helm_version="3"):
    result = run_deployer(project, "-b", "190523", "-n", str(count), "--helmChart", "wiotp/psutil",
                          "--helmCmd", str(STANDIN_HELM), "--helmVersion", helm_version, "--fleet", *more)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result
