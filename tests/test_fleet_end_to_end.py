"""One batch through the factory in fleet mode: the real registrator against the fake platform, the real deployer
with --fleet, the generated scripts run by bash with a recording stand-in helm, every fleet release rendered by the
real Helm engine from the very values file and --set-file arguments the script passed and validated against the
Kubernetes API's schemas, and every pod's start-up command run, so that each device starts exactly once with the
token the platform holds for it. (The size of a release of the default fleet size: test_fleet_charts.py.)"""

import base64
import json
from pathlib import Path

import helm_python
import pytest
import yaml

from conftest import (
    KUBERNETES_VERSIONS,
    ROOT,
    STANDIN_HELM,
    check_valid_for_kubernetes,
    container_of,
    helm_arguments,
    helm_install,
    lay_out_secret,
    run_deployer,
    run_generated_script,
    run_registrator,
    start_pod,
)

CHART = ROOT / "helm" / "psutil"
TYPE_ID, BATCH = "iotpsutil", "190523"
REGISTERED = 8
GAP = 3  # its config is gone (lost, or deleted by hand): the fleets skip it
FLEET_SIZE = 3
FLEETS = [[1, 2, 4], [5, 6, 7], [8]]  # the devices with a config, in device order, up to FLEET_SIZE a release
NAMESPACE = "devices"
CONTAINER_CA_FILE = "/etc/wiotp/ca/mqtt-ca.pem"  # where the chart mounts the CA in the container


def device_id(number):
    return f"{BATCH}-{number:04d}"


@pytest.mark.parametrize("maximo", [False, True], ids=["default platform", "maximo"])
@pytest.mark.slow
def test_a_batch_with_a_gap_is_deployed_as_fleets_each_device_started_once_with_its_own_token(
        fake_platform, workdir, tmp_path, standin, maximo):
    env = {**fake_platform.env()}
    if maximo:  # Maximo IoT: MQTT on 443 with a private CA, which every config then names
        env.update(WIOTP_OPTIONS_MQTT_PORT="443", WIOTP_OPTIONS_MQTT_CAFILE=fake_platform.ca_file)
    registered = run_registrator(workdir, "-b", BATCH, "-n", str(REGISTERED), "-t", TYPE_ID, env=env)
    assert registered.returncode == 0, registered.stderr
    folder = workdir / "localDeviceRegistry/device" / TYPE_ID / BATCH
    (folder / f"{device_id(GAP)}.yaml").unlink()
    expected = [device_id(n) for numbers in FLEETS for n in numbers]

    deployer = run_deployer(workdir, "-b", BATCH, "-n", str(len(expected)), "-t", TYPE_ID, "--fleet", "--fleetSize",
                            str(FLEET_SIZE), "--helmChart", str(CHART), "--helmCmd", str(STANDIN_HELM),
                            "--helmVersion", "3")
    assert deployer.returncode == 0, deployer.stderr
    log = tmp_path / "helm-calls"
    log.mkdir()
    deploy = run_generated_script(workdir, f"bin/deploy-device-{TYPE_ID}-{BATCH}.bat", log)
    assert deploy.returncode == 0, deploy.stderr

    calls = helm_arguments(log)
    releases = [f"{TYPE_ID}-{BATCH}-fleet-{n}" for n in range(1, len(FLEETS) + 1)]
    assert [call[:2] for call in calls] == [["upgrade", release] for release in releases]
    chart = helm_python.Chart.load(str(CHART))
    deployed, started = [], []
    for release, call, numbers in zip(releases, calls, FLEETS, strict=True):
        name, chart_path, values_path, values = helm_install(workdir, call)
        assert (name, chart_path) == (release, str(CHART))
        assert values_path == f"./localDeviceRegistry/device/{TYPE_ID}/{BATCH}/fleet/{release}.yaml"
        assert call[6:] == (["--set-file", f"mqttCaCert={fake_platform.ca_file}"] if maximo else [])
        helm_python.validate_release_name(release)
        members = [device["deviceId"] for device in values["devices"]]
        assert members == [device_id(n) for n in numbers]
        deployed += members

        # What helm would install from this very file and these flags.
        manifests = chart.render(values, name=release, namespace=NAMESPACE)
        notes = manifests.pop(f"{chart.name}/templates/NOTES.txt")
        objects = [doc for text in manifests.values() for doc in yaml.safe_load_all(text) if doc]
        for version in KUBERNETES_VERSIONS:
            check_valid_for_kubernetes(objects, version, release)
        [statefulset] = [obj for obj in objects if obj["kind"] == "StatefulSet"]
        [secret] = [obj for obj in objects if obj["kind"] == "Secret"]
        assert statefulset["spec"]["replicas"] == len(members)
        tokens = {device: fake_platform.device(TYPE_ID, device)["authToken"] for device in members}
        files = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
        assert files.pop("mqtt-ca.pem", None) == (Path(fake_platform.ca_file).read_text() if maximo else None)
        assert files == {
            **{f"{ordinal}.deviceId": device for ordinal, device in enumerate(members)},
            **{f"{ordinal}.token": tokens[device] for ordinal, device in enumerate(members)},
        }
        # No token anywhere but in the Secret: not in the StatefulSet, a ConfigMap, any other object or NOTES.
        elsewhere = yaml.safe_dump([obj for obj in objects if obj["kind"] != "Secret"]) + notes
        assert not [device for device, token in tokens.items() if token in elsewhere]

        # Every pod's start-up command, with the Secret's files where the pod sees them.
        secret_dir = lay_out_secret(secret, tmp_path / f"{release}-secret")
        container = container_of(statefulset)
        for ordinal in range(statefulset["spec"]["replicas"]):
            run = start_pod(statefulset, secret_dir, standin, ordinal, use_label=ordinal % 2 == 0)
            assert run.returncode == 0, run.stderr
            banner, report = run.stdout.splitlines()
            assert banner == f"fleet-start: pod ordinal {ordinal} runs device {members[ordinal]}"
            client_env = json.loads(report)["env"]
            assert client_env["WIOTP_AUTH_TOKEN"] == tokens[client_env["WIOTP_IDENTITY_DEVICEID"]]
            assert (client_env["WIOTP_IDENTITY_ORGID"], client_env["WIOTP_IDENTITY_TYPEID"]) == (
                fake_platform.org_id, TYPE_ID)
            if maximo:
                assert client_env["WIOTP_OPTIONS_MQTT_PORT"] == "443"
                # The container's own copy of the CA, mounted from the Secret; the host's path stays on the host.
                assert client_env["WIOTP_OPTIONS_MQTT_CAFILE"] == CONTAINER_CA_FILE
                assert {"name": "mqtt-ca", "mountPath": "/etc/wiotp/ca", "readOnly": True} in container["volumeMounts"]
                assert fake_platform.ca_file not in yaml.safe_dump(objects) + notes
            else:
                assert "WIOTP_OPTIONS_MQTT_PORT" not in client_env and "WIOTP_OPTIONS_MQTT_CAFILE" not in client_env
            started.append(client_env["WIOTP_IDENTITY_DEVICEID"])

    # Every device with a config is in exactly one release and starts exactly once; the gap nowhere.
    assert deployed == expected
    assert sorted(started) == expected

    for record in log.iterdir():
        record.unlink()
    recall = run_generated_script(workdir, f"bin/recall-device-{TYPE_ID}-{BATCH}.bat", log)
    assert recall.returncode == 0, recall.stderr
    assert helm_arguments(log) == [["uninstall", release] for release in releases]
