"""Which devices the deployer's scripts take, in which order, and under which release and script names, batches
whose names would meet included."""

import re

import pytest

import deviceDeployer
from conftest import (
    STANDIN_HELM,
    helm_arguments,
    run_deployer,
)
from deployerhelpers import (
    DEPLOY,
    register,
    run_bash,
    upgrade,
    written,
)
from devicefactory import batchnames, deployer
from devicefactory.batch import Batch
from devicefactory.releasenames import release_name

# Which devices, in which order, under which names


@pytest.mark.slow
def test_the_first_n_devices_by_number(project, env, helm_log, tmp_path):
    folder = register(project, [10, 100, 1000, 9999, 10000])
    for stray in ("notes.txt", "190523-01.yaml", "190523-00010.yaml", "190524-0001.yaml", ".190523-0004.yaml.1.tmp"):
        (folder / stray).write_text("not a device config of this batch\n")
    result = run_deployer(project, "-b", "190523", "-n", "8", "--helmChart", "wiotp/psutil",
                          "--helmCmd", str(STANDIN_HELM), "--helmVersion", "3")
    assert (result.returncode, result.stderr) == (0, "")
    assert run_bash(project, DEPLOY, env, tmp_path).returncode == 0
    assert helm_arguments(helm_log) == [upgrade(n) for n in (1, 2, 3, 10, 100, 1000, 9999, 10000)]

    assert run_deployer(project, "-b", "190523", "-n", "4", "--helmChart", "wiotp/psutil",
                        "--helmVersion", "3", "--replaceRecall").returncode == 0
    assert (project / DEPLOY).read_text().count("\nhelm upgrade ") == 4
    assert "190523-0010.yaml\n\n" in (project / DEPLOY).read_text()


@pytest.mark.slow
def test_ids_helm_refuses_map_to_valid_stable_release_names(tmp_path, env, helm_log):
    project = tmp_path / "project"
    project.mkdir()
    type_id, batch_id = "IoT_PS.util", "Batch_19.05"
    long_type, long_batch = "T" * 36, "B" * 31
    register(project, [1, 2], type_id=type_id, batch_id=batch_id)
    register(project, [1], type_id=long_type, batch_id=long_batch, class_id="Gateway")
    for _ in range(2):  # the same names on every run
        assert run_deployer(project, "-b", batch_id, "-n", "2", "-t", type_id, "--helmChart", "c",
                            "--helmCmd", str(STANDIN_HELM), "--helmVersion", "3").returncode == 0
        assert run_deployer(project, "-b", long_batch, "-n", "1", "-t", long_type, "-c", "Gateway",
                            "--helmChart", "c", "--helmCmd", str(STANDIN_HELM), "--helmVersion", "3").returncode == 0
        assert run_bash(project, f"bin/deploy-device-{type_id}-{batch_id}.bat", env, tmp_path).returncode == 0
        assert run_bash(project, f"bin/deploy-gateway-{long_type}-{long_batch}.bat", env, tmp_path).returncode == 0
    names = [arguments[1] for arguments in helm_arguments(helm_log)]
    assert names == 2 * [
        "iot-ps-util-batch-19-05-0001-5cde8703",
        "iot-ps-util-batch-19-05-0002-cd467674",
        "ttttttt-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-0001-85cb949c",
    ]
    assert names[:3] == [release_name(type_id, f"{batch_id}-0001"), release_name(type_id, f"{batch_id}-0002"),
                         release_name(long_type, f"{long_batch}-0001")]
    values = f"./localDeviceRegistry/gateway/{long_type}/{long_batch}/{long_batch}-0001.yaml"
    assert helm_arguments(helm_log)[2][-1] == values


def test_two_devices_under_one_release_name_is_an_error(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    monkeypatch.setattr(deployer, "release_name", lambda *names: "one-name")
    assert deviceDeployer.main(["-b", "190523", "-n", "2", "--helmChart", "c", "--helmVersion", "3"]) == 1
    assert capsys.readouterr() == (
        "", "deviceDeployer.py: error: devices 190523-0001 and 190523-0002 would share the Helm release name one-name\n"
    )
    assert written(project) == []

# Batches whose names would meet


def deploy_batch(project, type_id, batch_id, class_id="Device", count=2, *more):
    result = run_deployer(project, "-b", batch_id, "-n", str(count), "-t", type_id, "-c", class_id,
                          "--helmChart", "c", "--helmCmd", str(STANDIN_HELM), "--helmVersion", "3", *more)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout.splitlines()[1].split()[1]  # "Wrote <deploy script> and ..."


def names_in(project, script, env, tmp_path, helm_log):
    for record in helm_log.iterdir():
        record.unlink()
    assert run_bash(project, script, env, tmp_path).returncode == 0
    return [arguments[1] for arguments in helm_arguments(helm_log)]


@pytest.mark.slow
def test_two_colliding_batches_get_their_own_scripts_and_releases(tmp_path, env, helm_log):
    project = tmp_path / "project"
    register(project, [1, 2], type_id="sensor", batch_id="eu-1")
    register(project, [1, 2], type_id="sensor-eu", batch_id="1")
    first = deploy_batch(project, "sensor", "eu-1")
    second = deploy_batch(project, "sensor-eu", "1")
    mine = batchnames.name_suffix(Batch("Device", "sensor", "eu-1"))
    theirs = batchnames.name_suffix(Batch("Device", "sensor-eu", "1"))
    assert mine != theirs and re.fullmatch(r"-[0-9a-f]{8}", mine)
    assert (first, second) == (f"bin/deploy-device-sensor-eu-1{mine}.bat", f"bin/deploy-device-sensor-eu-1{theirs}.bat")
    assert names_in(project, first, env, tmp_path, helm_log) == [f"sensor-eu-1-000{n}{mine}" for n in (1, 2)]
    assert names_in(project, second, env, tmp_path, helm_log) == [f"sensor-eu-1-000{n}{theirs}" for n in (1, 2)]
    recall = first.replace("deploy-", "recall-")
    assert names_in(project, recall, env, tmp_path, helm_log) == [f"sensor-eu-1-000{n}{mine}" for n in (1, 2)]
    # The same names whichever is deployed first, and on every run.
    assert deploy_batch(project, "sensor-eu", "1") == second and deploy_batch(project, "sensor", "eu-1") == first


@pytest.mark.slow
def test_a_batch_deployed_alone_keeps_its_names_when_a_colliding_one_comes_later(tmp_path, env, helm_log):
    project = tmp_path / "project"
    register(project, [1, 2], type_id="sensor", batch_id="eu-1")
    assert deploy_batch(project, "sensor", "eu-1") == "bin/deploy-device-sensor-eu-1.bat"
    assert "original" in (project / "localDeviceRegistry/device/sensor/eu-1/release-names").read_text()
    register(project, [1, 2], type_id="sensor-eu", batch_id="1")
    theirs = batchnames.name_suffix(Batch("Device", "sensor-eu", "1"))
    assert deploy_batch(project, "sensor-eu", "1") == f"bin/deploy-device-sensor-eu-1{theirs}.bat"
    assert deploy_batch(project, "sensor", "eu-1") == "bin/deploy-device-sensor-eu-1.bat"
    assert names_in(project, "bin/deploy-device-sensor-eu-1.bat", env, tmp_path, helm_log) == [
        "sensor-eu-1-0001", "sensor-eu-1-0002"]
    assert names_in(project, f"bin/deploy-device-sensor-eu-1{theirs}.bat", env, tmp_path, helm_log) == [
        f"sensor-eu-1-0001{theirs}", f"sensor-eu-1-0002{theirs}"]


@pytest.mark.slow
def test_device_and_gateway_batches_of_one_type_and_batch_get_their_own_releases(tmp_path, env, helm_log):
    project = tmp_path / "project"
    register(project, [1], class_id="Device")
    register(project, [1], class_id="Gateway")
    device = deploy_batch(project, "iotpsutil", "190523", "Device", 1)
    gateway = deploy_batch(project, "iotpsutil", "190523", "Gateway", 1)
    names = names_in(project, device, env, tmp_path, helm_log) + names_in(project, gateway, env, tmp_path, helm_log)
    assert names == [f"iotpsutil-190523-0001{batchnames.name_suffix(Batch(c, 'iotpsutil', '190523'))}"
                     for c in ("Device", "Gateway")]


def test_fleet_names_are_in_the_collision_check(tmp_path):
    project = tmp_path / "project"
    register(project, [1], batch_id="19")
    register(project, [1000], batch_id="19-fleet")  # device 19-fleet-1000 reads like fleet release 1000 of 19
    assert deploy_batch(project, "iotpsutil", "19", "Device", 1, "--fleet").endswith(
        f"{batchnames.name_suffix(Batch('Device', 'iotpsutil', '19'))}.bat")


def test_original_scripts_that_no_batch_records_are_refused(tmp_path):
    project = tmp_path / "project"
    register(project, [1], type_id="sensor", batch_id="eu-1")
    register(project, [1], type_id="sensor-eu", batch_id="1")
    (project / "bin").mkdir()
    (project / "bin/deploy-device-sensor-eu-1.bat").write_text("# written before names were recorded\n")
    result = run_deployer(project, "-b", "1", "-n", "1", "-t", "sensor-eu", "--helmChart", "c", "--helmVersion", "3")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "deviceDeployer.py: error: bin/deploy-device-sensor-eu-1.bat uses the release names that batches 1 (classId"
        " Device, typeId sensor-eu) and eu-1 (classId Device, typeId sensor) would share, and no batch records it as"
        " its own: recall its releases with bin/recall-device-sensor-eu-1.bat if they are deployed, delete both"
        " scripts, and run again\n")
    assert not (project / "localDeviceRegistry/device/sensor-eu/1/release-names").exists()
