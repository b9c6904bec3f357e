"""deviceDeployer.py --fleet (one release per fleet of devices, its values files) and the device options the
scripts pass on (the MQTT CA file)."""

import os
import stat

import pytest
import yaml

from conftest import (
    STANDIN_HELM,
    helm_arguments,
    run_deployer,
)
from deployerhelpers import (
    DEPLOY,
    FOLDER,
    RECALL,
    device_id,
    register,
    run_bash,
    token,
    upgrade,
    write_fleet,
    written,
)
from devicefactory.localregistry import write_device_config

# Fleet mode


def fleet_upgrade(n, folder=FOLDER, chart="wiotp/psutil", name=None):
    name = name or f"iotpsutil-190523-fleet-{n}"
    return ["upgrade", name, chart, "-i", "--values", f"./{folder}/fleet/{name}.yaml"]


def fleet_values(project, n):
    path = project / FOLDER / "fleet" / f"iotpsutil-190523-fleet-{n}.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("count, size, expected", [
    (4, "4", [[1, 2, 3, 4]]),
    (5, "4", [[1, 2, 3, 4], [5]]),
    (8, "4", [[1, 2, 3, 4], [5, 6, 7, 8]]),
    (9, "4", [[1, 2, 3, 4], [5, 6, 7, 8], [9]]),
    (3, "1", [[1], [2], [3]]),
])
@pytest.mark.slow
def test_fleet_releases_hold_up_to_k_devices_in_device_order(tmp_path, env, helm_log, count, size, expected):
    project = tmp_path / "project"
    register(project, range(1, count + 1))
    result = write_fleet(project, count, "--fleetSize", size)
    assert result.stdout.splitlines()[1] == (
        f"Wrote {DEPLOY} and {RECALL} for {count} devices in {len(expected)} fleet release"
        f"{'s' if len(expected) > 1 else ''} of up to {size} (one helm command at a time)")
    assert run_bash(project, DEPLOY, env, tmp_path).returncode == 0
    assert helm_arguments(helm_log) == [fleet_upgrade(n) for n in range(1, len(expected) + 1)]
    for n, numbers in enumerate(expected, start=1):
        assert fleet_values(project, n) == {
            "identity": {"orgId": "myorg", "typeId": "iotpsutil"},
            "devices": [{"deviceId": device_id("190523", k), "token": token(device_id("190523", k))} for k in numbers],
        }
    assert stat.S_IMODE((project / FOLDER / "fleet").stat().st_mode) == 0o700


@pytest.mark.slow
def test_fleet_values_match_the_device_configs_with_gaps_and_any_token(tmp_path, env, helm_log):
    project = tmp_path / "project"
    folder = register(project, [1, 2, 5, 10, 11])
    odd_token = 'a"b\\c: #d\n\'e\u00e9'
    write_device_config(folder, "myorg", "iotpsutil", "190523-0005", odd_token)
    write_fleet(project, 4, "--fleetSize", "2")
    configs = [yaml.safe_load((folder / f"{device_id('190523', k)}.yaml").read_text()) for k in (1, 2, 5, 10)]
    listed = fleet_values(project, 1)["devices"] + fleet_values(project, 2)["devices"]
    assert listed == [{"deviceId": c["identity"]["deviceId"], "token": c["auth"]["token"]} for c in configs]
    assert listed[2]["token"] == odd_token
    assert not (project / FOLDER / "fleet" / "iotpsutil-190523-fleet-3.yaml").exists()
    assert run_bash(project, DEPLOY, env, tmp_path).returncode == 0
    assert helm_arguments(helm_log) == [fleet_upgrade(1), fleet_upgrade(2)]


@pytest.mark.slow
def test_fleet_default_size_is_1000(tmp_path):
    project = tmp_path / "project"
    register(project, range(1, 1002))
    write_fleet(project, 1001)
    assert len(fleet_values(project, 1)["devices"]) == 1000
    assert fleet_values(project, 2)["devices"] == [{"deviceId": "190523-1001", "token": token("190523-1001")}]


@pytest.mark.parametrize("helm_version, recall", [("2", ["delete", "--purge"]), ("3", ["uninstall"])])
@pytest.mark.parametrize("parallel", ["1", "2"])
@pytest.mark.slow
def test_fleet_scripts_with_helm_2_and_3_in_parallel_or_not(tmp_path, env, helm_log, helm_version, recall, parallel):
    project = tmp_path / "project"
    register(project, range(1, 6))
    write_fleet(project, 5, "--fleetSize", "2", "--parallel", parallel, helm_version=helm_version)
    env["TMPDIR"] = str(tmp_path)
    assert run_bash(project, DEPLOY, env, tmp_path).returncode == 0
    assert sorted(helm_arguments(helm_log)) == [fleet_upgrade(n) for n in (1, 2, 3)]
    for record in helm_log.iterdir():
        record.unlink()
    assert run_bash(project, RECALL, env, tmp_path).returncode == 0
    assert sorted(helm_arguments(helm_log)) == [[*recall, f"iotpsutil-190523-fleet-{n}"] for n in (1, 2, 3)]


@pytest.mark.slow
def test_fleet_files_no_longer_used_are_removed_with_a_warning(tmp_path):
    project = tmp_path / "project"
    register(project, range(1, 6))
    write_fleet(project, 5, "--fleetSize", "2")
    result = run_deployer(project, "-b", "190523", "-n", "3", "--helmChart", "c", "--helmVersion", "3", "--fleet",
                          "--fleetSize", "2", "--replaceRecall")
    assert result.returncode == 0
    assert result.stderr == (
        "deviceDeployer.py: warning: removed the values files of fleet releases this batch no longer has:"
        " iotpsutil-190523-fleet-3; if they are deployed, recall them with helm uninstall (Helm 2: helm delete"
        " --purge)\n")
    assert sorted(os.listdir(project / FOLDER / "fleet")) == [
        "iotpsutil-190523-fleet-1.yaml", "iotpsutil-190523-fleet-2.yaml"]


def test_a_fleet_folder_others_can_read_is_refused(tmp_path):
    project = tmp_path / "project"
    register(project, [1])
    (project / FOLDER / "fleet").mkdir(mode=0o755)
    (project / FOLDER / "fleet").chmod(0o755)
    result = run_deployer(project, "-b", "190523", "-n", "1", "--helmChart", "c", "--helmVersion", "3", "--fleet")
    assert result.returncode == 1
    assert result.stderr == (
        f"deviceDeployer.py: error: refusing to write into {FOLDER}/fleet: group or others can read or write it"
        f" (mode 0755); fix: chmod go-rwx {FOLDER}/fleet\n")
    assert written(project) == []


def test_fleet_size_needs_fleet(project):
    result = run_deployer(project, "-b", "190523", "-n", "1", "--helmChart", "c", "--fleetSize", "10")
    assert result.returncode == 2 and "deviceDeployer.py: error: argument --fleetSize: needs --fleet" in result.stderr

# Options and the MQTT CA file


def write_config_with_options(folder, number, options, org_id="myorg"):
    device = f"190523-{number:04d}"
    config = {"identity": {"orgId": org_id, "typeId": "iotpsutil", "deviceId": device},
              "auth": {"token": token(device)}, "options": options}
    (folder / f"{device}.yaml").write_text(yaml.safe_dump(config))


@pytest.mark.slow
def test_a_ca_file_is_passed_with_set_file_per_device_and_per_fleet(tmp_path, env, helm_log):
    project = tmp_path / "project"
    folder = register(project, [1, 2, 3])
    (project / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (project / "other ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    options = {"domain": "example.com", "mqtt": {"port": 8883, "caFile": "ca.pem"}}
    for number in (1, 2):
        write_config_with_options(folder, number, options)
    write_config_with_options(folder, 3, {"mqtt": {"caFile": "other ca.pem"}})
    assert run_deployer(project, "-b", "190523", "-n", "3", "--helmChart", "wiotp/psutil", "--helmCmd",
                        str(STANDIN_HELM), "--helmVersion", "3").returncode == 0
    assert run_bash(project, DEPLOY, env, tmp_path).returncode == 0
    assert helm_arguments(helm_log) == [
        [*upgrade(1), "--set-file", "mqttCaCert=ca.pem"], [*upgrade(2), "--set-file", "mqttCaCert=ca.pem"],
        [*upgrade(3), "--set-file", "mqttCaCert=other ca.pem"]]
    assert "--values ./localDeviceRegistry/device/iotpsutil/190523/190523-0003.yaml --set-file 'mqttCaCert=other ca.pem'" \
        in (project / DEPLOY).read_text()

    refused = run_deployer(project, "-b", "190523", "-n", "3", "--helmChart", "c", "--helmVersion", "3", "--fleet")
    assert (refused.returncode, refused.stderr) == (1, (
        "deviceDeployer.py: error: devices 190523-0001 and 190523-0003 have different options; the devices of a fleet"
        " release share one: deploy this batch without --fleet\n"))

    for record in helm_log.iterdir():
        record.unlink()
    write_fleet(project, 2, "--replaceRecall")
    assert run_bash(project, DEPLOY, env, tmp_path).returncode == 0
    assert helm_arguments(helm_log) == [[*fleet_upgrade(1), "--set-file", "mqttCaCert=ca.pem"]]
    assert fleet_values(project, 1)["options"] == options


@pytest.mark.slow
def test_a_missing_ca_file_or_another_org_is_one_line(tmp_path):
    project = tmp_path / "project"
    folder = register(project, [1, 2])
    write_config_with_options(folder, 2, {"mqtt": {"caFile": "/no/such/ca.pem"}})
    result = run_deployer(project, "-b", "190523", "-n", "2", "--helmChart", "c", "--helmVersion", "3")
    assert (result.returncode, result.stderr) == (
        1, "deviceDeployer.py: error: device 190523-0002: options.mqtt.caFile /no/such/ca.pem does not exist\n")
    write_config_with_options(folder, 2, {}, org_id="otherorg")
    result = run_deployer(project, "-b", "190523", "-n", "2", "--helmChart", "c", "--helmVersion", "3", "--fleet")
    assert (result.returncode, result.stderr) == (1, (
        "deviceDeployer.py: error: devices 190523-0001 and 190523-0002 have different identity.orgId; the devices of"
        " a fleet release share one: deploy this batch without --fleet\n"))
    assert written(project) == []
