"""A batch's whole life: registered (the real registrator), its scripts written (the real deployer) and deployed
by bash with the stand-in helm, its devices seen online (deviceStatus.py, states set on the fake as the deployed
devices would connect), recalled, and taken off the platform (deviceDecommissioner.py)."""

import pytest

from conftest import (
    DECOMMISSIONER,
    ROOT,
    STANDIN_HELM,
    STATUS,
    helm_arguments,
    run_deployer,
    run_generated_script,
    run_registrator,
    run_script,
)


@pytest.mark.slow
def test_register_deploy_status_recall_decommission(fake_platform, workdir, tmp_path):
    batch, type_id = ["-b", "eu-1", "-n", "4", "-t", "sensor-eu"], "sensor-eu"
    devices = [f"eu-1-{n:04d}" for n in range(1, 5)]
    assert run_registrator(workdir, *batch, fake=fake_platform).returncode == 0
    fake_platform.preregister(type_id, ["eu-1-00001", "eu-0001"])  # ids of other batches, never touched
    deployer = run_deployer(workdir, *batch, "--helmChart", str(ROOT / "helm" / "psutil"),
                            "--helmCmd", str(STANDIN_HELM), "--helmVersion", "3")
    assert deployer.returncode == 0, deployer.stderr
    log = tmp_path / "helm-calls"
    log.mkdir()
    deploy = run_generated_script(workdir, f"bin/deploy-device-{type_id}-eu-1.bat", log)
    assert deploy.returncode == 0, deploy.stderr
    assert [call[0] for call in helm_arguments(log)] == ["upgrade"] * 4

    # The deployed devices connect, as each pod's client would.
    fake_platform.connect(type_id, devices)
    online = run_script(STATUS, workdir, *batch, fake=fake_platform)
    assert online.returncode == 0, online.stdout + online.stderr
    assert ("4 connected, 0 disconnected, 0 with no connection recorded since monitoring was activated, 0 not on the "
            "platform; 4 with a local config.") in online.stdout
    fake_platform.disconnect(type_id, devices[2:3])
    one_down = run_script(STATUS, workdir, *batch, fake=fake_platform)
    assert one_down.returncode == 3
    assert "disconnected (1): 0003" in one_down.stdout

    for record in log.iterdir():
        record.unlink()
    recall = run_generated_script(workdir, f"bin/recall-device-{type_id}-eu-1.bat", log)
    assert recall.returncode == 0, recall.stderr
    assert [call[0] for call in helm_arguments(log)] == ["uninstall"] * 4
    fake_platform.disconnect(type_id, devices)

    gone = run_script(DECOMMISSIONER, workdir, *batch, "--yes", fake=fake_platform)
    assert gone.returncode == 0, gone.stderr
    assert fake_platform.devices_of(type_id) == ["eu-0001", "eu-1-00001"]
    folder = workdir / "localDeviceRegistry/device/sensor-eu/eu-1"
    # No device config is left; the reports stay, and so does the batch's claim on its script and release
    # names, so that a batch registered again under the same ids gets the same names.
    assert sorted(path.name for path in folder.iterdir()) == [
        "decommission-report.jsonl", "registration-report.jsonl", "release-names", "status-report.jsonl"]
    after = run_script(STATUS, workdir, *batch, fake=fake_platform)
    assert after.returncode == 3 and "not-on-platform (4): 0001-0004" in after.stdout
