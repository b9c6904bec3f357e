"""One batch through the whole factory: the real registrator against the fake platform, the real deployer, the
generated scripts run by bash with a recording stand-in helm, and the charts rendered by the real Helm engine
with the very values files the scripts pass."""

import base64
import os
import subprocess
import sys

import helm_python
import yaml

from conftest import DEPLOYER, ROOT, STANDIN_HELM, helm_arguments, helm_install, run_registrator


def test_registered_devices_are_deployed_and_recalled_with_their_own_tokens(fake_platform, workdir, tmp_path):
    type_id, batch = "Psutil_Type.v2", "190523"
    registered = run_registrator(workdir, "-b", batch, "-n", "3", "-t", type_id, fake=fake_platform)
    assert registered.returncode == 0, registered.stderr

    deployer = subprocess.run(
        [sys.executable, str(DEPLOYER), "-b", batch, "-n", "3", "-t", type_id, "--helmChart", str(ROOT / "helm" / "psutil"),
         "--helmCmd", str(STANDIN_HELM), "--helmVersion", "3"],
        cwd=workdir, capture_output=True, text=True,
    )
    assert deployer.returncode == 0, deployer.stderr
    log = tmp_path / "helm-calls"
    log.mkdir()
    env = dict(os.environ, HELM_STANDIN_LOG=str(log))
    deploy = subprocess.run(["bash", f"bin/deploy-device-{type_id}-{batch}.bat"], cwd=workdir, env=env,
                            capture_output=True, text=True)
    assert deploy.returncode == 0, deploy.stderr

    calls = helm_arguments(log)
    assert [call[0] for call in calls] == ["upgrade"] * 3
    chart = helm_python.Chart.load(str(ROOT / "helm" / "psutil"))
    releases = []
    for number, call in enumerate(calls, start=1):
        device = f"{batch}-{number:04d}"
        release, chart_path, values_path, values = helm_install(workdir, call)
        assert chart_path == str(ROOT / "helm" / "psutil") and len(call) == 6
        assert values_path == f"./localDeviceRegistry/device/{type_id}/{batch}/{device}.yaml"
        helm_python.validate_release_name(release)
        releases.append(release)
        # What helm would install from this very file: the Secret holds the token the platform registered.
        manifests = chart.render(values, name=release, namespace="devices")
        documents = [doc for path, text in manifests.items() if not path.endswith("NOTES.txt")
                     for doc in yaml.safe_load_all(text) if doc]
        [secret] = [doc for doc in documents if doc["kind"] == "Secret"]
        [deployment] = [doc for doc in documents if doc["kind"] == "Deployment"]
        token = base64.b64decode(secret["data"]["token"]).decode() if "data" in secret else secret["stringData"]["token"]
        assert token == fake_platform.device(type_id, device)["authToken"]
        env_vars = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env_vars["WIOTP_IDENTITY_DEVICEID"] == device and env_vars["WIOTP_IDENTITY_TYPEID"] == type_id
        assert env_vars["WIOTP_IDENTITY_ORGID"] == fake_platform.org_id
    assert len(set(releases)) == 3

    for record in log.iterdir():
        record.unlink()
    recall = subprocess.run(["bash", f"bin/recall-device-{type_id}-{batch}.bat"], cwd=workdir, env=env,
                            capture_output=True, text=True)
    assert recall.returncode == 0, recall.stderr
    assert helm_arguments(log) == [["uninstall", release] for release in releases]
