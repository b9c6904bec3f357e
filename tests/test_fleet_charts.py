"""Fleet mode of the charts: a fleet values file (written by deviceDeployer.py --fleet) renders one StatefulSet pod
per device, by the real Helm engine. The pod's start-up command is run under sh for every ordinal, with the Secret's
files where the pod would see them and a stand-in client that reports what it was given; every object is validated
against the Kubernetes API schemas (kubernetes-validate) of the oldest and newest versions we support.
"""

import base64
import gzip
import json
import os
import subprocess
import sys

import helm_python
import pytest
import yaml
from test_charts import (
    ALL_PRINTABLE_ASCII,
    CHARTS,
    CONTAINER_SECURITY_CONTEXT,
    HELM,
    NAMESPACE,
    NASTY_TOKEN,
    POD_SECURITY_CONTEXT,
    lint_problems,
    maximo_values,
)

from conftest import (
    KUBERNETES_VERSIONS,
    check_valid_for_kubernetes,
    container_of,
    lay_out_secret,
    resolve_env,
    start_pod,
)
from devicefactory.tokens import new_device_token

FLEET_RELEASE = "iotpsutil-190523-fleet-1"
# Five devices of batch 190523 with a gap: 190523-0003 was never registered (or was decommissioned).
FLEET_DEVICES = ["190523-0001", "190523-0002", "190523-0004", "190523-0005", "190523-0006"]
# The fleet size the measurements assume: deviceDeployer.py's --fleetSize default.
FLEET_SIZE = 1000
SIZE_LIMIT = 512 * 1024


def token_of(device_id):
    return f"T0ken!{device_id}"


def fleet_values_text(devices, options_text=""):
    """A fleet values file, in the format deviceDeployer.py --fleet writes (JSON strings are YAML scalars)."""
    lines = ["identity:", '  orgId: "myorg1"', '  typeId: "iotpsutil"', options_text.rstrip("\n"), "devices:"]
    for device_id, token in devices:
        lines += [f"  - deviceId: {json.dumps(device_id)}", f"    token: {json.dumps(token)}"]
    return "\n".join(line for line in lines if line) + "\n"


def fleet_values(tmp_path, devices=None, options_text=""):
    devices = devices if devices is not None else [(device_id, token_of(device_id)) for device_id in FLEET_DEVICES]
    path = tmp_path / f"{FLEET_RELEASE}.yaml"
    path.write_text(fleet_values_text(devices, options_text))
    return yaml.safe_load(path.read_text())


def maximo_fleet_values(tmp_path):
    """A fleet of the same devices on Maximo IoT: the options and CA of maximo_values, as the deployer carries them."""
    one = maximo_values(tmp_path)
    values = fleet_values(tmp_path)
    values["options"] = one["options"]
    values["mqttCaCert"] = one["mqttCaCert"]
    return values


def rendered_objects(chart, values, release=FLEET_RELEASE):
    rendered = chart.render(values, name=release, namespace=NAMESPACE)
    rendered.pop(f"{chart.name}/templates/NOTES.txt")
    return [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]


def by_kind(objects):
    kinds = sorted(obj["kind"] for obj in objects)
    assert len(set(kinds)) == len(kinds)
    return {obj["kind"]: obj for obj in objects}


# --- what a fleet values file renders to ---------------------------------------------------------------------------


def test_a_fleet_is_one_statefulset_pod_per_device_and_one_secret(chart, chart_name, tmp_path):
    objects = by_kind(rendered_objects(chart, fleet_values(tmp_path)))
    assert sorted(objects) == ["Secret", "StatefulSet"]
    fullname = f"{FLEET_RELEASE}-{chart_name}"
    statefulset, secret = objects["StatefulSet"], objects["Secret"]
    assert statefulset["metadata"]["name"] == secret["metadata"]["name"] == fullname
    spec = statefulset["spec"]
    assert spec["replicas"] == len(FLEET_DEVICES)
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["selector"] == {"matchLabels": {"app.kubernetes.io/name": chart_name, "app.kubernetes.io/instance": FLEET_RELEASE}}
    pod = spec["template"]["spec"]
    assert pod["securityContext"] == POD_SECURITY_CONTEXT
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    container = container_of(statefulset)
    assert container["securityContext"] == CONTAINER_SECURITY_CONTEXT
    assert container["resources"] == CHARTS[chart_name]["resources"]
    assert container["image"] == CHARTS[chart_name]["image"]
    assert container["command"][:2] == ["/bin/sh", "-c"] and container["command"][3] == "fleet-start"
    assert {"name": "devices", "mountPath": "/etc/wiotp/fleet", "readOnly": True} in container["volumeMounts"]
    assert {"name": "devices", "secret": {"secretName": fullname}} in pod["volumes"]
    assert "checksum/secret" in spec["template"]["metadata"]["annotations"]
    # No token anywhere but in the Secret: not in an env literal, the script, the args or anywhere else.
    assert not any(token_of(device) in yaml.safe_dump(statefulset) for device in FLEET_DEVICES)
    assert "WIOTP_AUTH_TOKEN" not in [e["name"] for e in container["env"]]
    files = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert files == {
        **{f"{ordinal}.deviceId": device for ordinal, device in enumerate(FLEET_DEVICES)},
        **{f"{ordinal}.token": token_of(device) for ordinal, device in enumerate(FLEET_DEVICES)},
    }


def test_the_fleet_image_command_is_the_images_own(chart, chart_name, tmp_path):
    # Kubernetes' command replaces the image's ENTRYPOINT, so args must start the client as the image would.
    args = container_of(by_kind(rendered_objects(chart, fleet_values(tmp_path)))["StatefulSet"])["args"]
    assert args == {
        "psutil": ["python", "/opt/ibm/iotpsutil/iotpsutil.py"],
        "oshi": ["/bin/sh", "-c", "exec java -jar /opt/ibm/iotoshi/com.ibm.wiotp.samples.oshi-*-jar-with-dependencies.jar"],
    }[chart_name]


def test_fleet_notes_name_the_devices_and_not_the_tokens(chart, chart_name, tmp_path):
    notes = chart.render(fleet_values(tmp_path), name=FLEET_RELEASE, namespace=NAMESPACE)[f"{chart_name}/templates/NOTES.txt"]
    assert "Deployed a fleet of 5 Watson IoT Platform devices, one pod each:\n" in notes
    assert "device IDs:   190523-0001 .. 190523-0006" in notes
    assert f"logs -f {FLEET_RELEASE}-{chart_name}-0\n" in notes
    assert "T0ken" not in notes


def test_a_long_release_name_keeps_pod_names_dns_labels(chart, tmp_path):
    release = "r" * 53  # the longest release name Helm allows
    statefulset = by_kind(rendered_objects(chart, fleet_values(tmp_path), release=release))["StatefulSet"]
    name = statefulset["metadata"]["name"]
    assert len(name) <= 52  # <name>-<controller-revision hash> is a label value: at most 63 characters
    assert len(f"{name}-{FLEET_SIZE - 1}") <= 63


def test_both_charts_run_the_same_start_up_script():
    # Two charts cannot share a file (short of a library chart); this keeps the two copies from drifting apart.
    assert (HELM / "psutil/files/fleet-start.sh").read_bytes() == (HELM / "oshi/files/fleet-start.sh").read_bytes()


def test_lint_is_clean_with_a_fleet(chart_name, tmp_path):
    for values in (fleet_values(tmp_path), maximo_fleet_values(tmp_path)):
        assert lint_problems(helm_python.lint(HELM / chart_name, values, strict=True)) == []


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda v: v["identity"].update(deviceId="190523-0001"), "at '/identity'"),
        (lambda v: v.update(auth={"token": "x" * 10}), "at '/auth'"),
        (lambda v: v["identity"].pop("orgId"), "at '/identity': missing property 'orgId'"),
        (lambda v: v["devices"][1].pop("token"), "at '/devices/1': missing property 'token'"),
        (lambda v: v["devices"][2].update(token=""), "at '/devices/2/token': minLength: got 0, want 1"),
        (lambda v: v["devices"][0].update(name="x"), "at '/devices/0'"),
    ],
)
def test_schema_rejects_a_broken_fleet(chart, tmp_path, change, message):
    values = fleet_values(tmp_path)
    change(values)
    with pytest.raises(helm_python.HelmValuesError, match=message.replace("[", r"\[")):
        chart.validate_schema(values)


def test_a_device_listed_twice_fails_the_render(chart, tmp_path):
    values = fleet_values(tmp_path, devices=[("190523-0001", "T0ken-a1"), ("190523-0001", "T0ken-b2")])
    with pytest.raises(helm_python.HelmRenderError, match=r"devices\[1\]: device 190523-0001 is listed twice"):
        chart.render(values, name=FLEET_RELEASE, namespace=NAMESPACE)


# --- the Kubernetes API's own schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize("kubernetes", KUBERNETES_VERSIONS)
def test_every_rendered_object_is_valid_for_kubernetes(chart, tmp_path, kubernetes):
    one_device = maximo_values(tmp_path)
    cases = {
        "fleet": fleet_values(tmp_path),
        "maximo fleet": maximo_fleet_values(tmp_path),
        "maximo device": one_device,
        "device": {key: one_device[key] for key in ("identity", "auth")},
    }
    for case, values in cases.items():
        check_valid_for_kubernetes(rendered_objects(chart, values), kubernetes, case)


# --- the pod's start-up command, run for every ordinal -------------------------------------------------------------

@pytest.mark.parametrize("maximo", [False, True], ids=["default platform", "maximo"])
def test_every_pod_starts_its_own_device_as_a_one_device_release_would(chart, tmp_path, standin, maximo):
    values = maximo_fleet_values(tmp_path) if maximo else fleet_values(tmp_path)
    objects = by_kind(rendered_objects(chart, values))
    secret_dir = lay_out_secret(objects["Secret"], tmp_path / "secret")
    started = []
    for ordinal in range(objects["StatefulSet"]["spec"]["replicas"]):
        run = start_pod(objects["StatefulSet"], secret_dir, standin, ordinal, use_label=ordinal % 2 == 0)
        assert run.returncode == 0, run.stderr
        assert run.stderr == ""
        banner, report = run.stdout.splitlines()
        assert banner == f"fleet-start: pod ordinal {ordinal} runs device {FLEET_DEVICES[ordinal]}"
        report = json.loads(report)
        assert report["argv"] == ["--the-images-args"]
        started.append(report["env"])

        # The same device deployed on its own: the one-device chart's variables for it.
        device = {"identity": {**values["identity"], "deviceId": FLEET_DEVICES[ordinal]}, "auth": {"token": token_of(FLEET_DEVICES[ordinal])}}
        device.update({key: values[key] for key in ("options", "mqttCaCert") if key in values})
        one = by_kind(rendered_objects(chart, device, release=f"iotpsutil-{FLEET_DEVICES[ordinal]}"))
        one_env = {k: v for k, v in resolve_env(container_of(one["Deployment"]), one["Secret"]).items() if k.startswith("WIOTP_")}
        assert report["env"] == one_env
        # And the same CA file, mounted the same way.
        if maximo:
            assert container_of(one["Deployment"])["volumeMounts"] == [
                m for m in container_of(objects["StatefulSet"])["volumeMounts"] if m["name"] != "devices"
            ]
    assert sorted(env["WIOTP_IDENTITY_DEVICEID"] for env in started) == FLEET_DEVICES  # each exactly once
    assert [env["WIOTP_AUTH_TOKEN"] for env in started] == [token_of(device) for device in FLEET_DEVICES]


def test_the_client_replaces_the_start_up_shell(chart, tmp_path, standin):
    # exec "$@": the client is the container's main process and gets its signals (a clean disconnect on stop).
    objects = by_kind(rendered_objects(chart, fleet_values(tmp_path)))
    secret_dir = lay_out_secret(objects["Secret"], tmp_path / "secret")
    container = container_of(objects["StatefulSet"])
    env = {"FLEET_SECRET_DIR": str(secret_dir), "PATH": os.environ["PATH"], "HOSTNAME": "x-0"}
    process = subprocess.Popen(container["command"] + [sys.executable, str(standin)], env=env, stdout=subprocess.PIPE, text=True)
    output, _ = process.communicate(timeout=30)
    assert json.loads(output.splitlines()[-1])["pid"] == process.pid


@pytest.mark.parametrize("token", [NASTY_TOKEN, ALL_PRINTABLE_ASCII, "-n", "$(id)", "a b  c"])
def test_any_token_reaches_the_client_exactly(chart, tmp_path, standin, token):
    values = fleet_values(tmp_path, devices=[("190523-0001", token)])
    objects = by_kind(rendered_objects(chart, values))
    run = start_pod(objects["StatefulSet"], lay_out_secret(objects["Secret"], tmp_path / "secret"), standin, 0, use_label=False)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1])["env"]["WIOTP_AUTH_TOKEN"] == token
    assert token not in run.stdout.splitlines()[0]


@pytest.mark.parametrize("hostname, message", [
    ("iotpsutil-190523-fleet-1-psutil-5", "the release has no device for pod ordinal 5"),
    ("iotpsutil-190523-fleet-1-psutil", "cannot tell this pod's ordinal"),
    ("", "cannot tell this pod's ordinal"),
])
def test_a_pod_without_a_device_refuses_to_start(chart, tmp_path, standin, hostname, message):
    objects = by_kind(rendered_objects(chart, fleet_values(tmp_path)))
    secret_dir = lay_out_secret(objects["Secret"], tmp_path / "secret")
    env = {"FLEET_SECRET_DIR": str(secret_dir), "PATH": os.environ["PATH"], "HOSTNAME": hostname}
    run = subprocess.run(container_of(objects["StatefulSet"])["command"] + [sys.executable, str(standin)],
                         env=env, capture_output=True, text=True, timeout=30, check=False)
    assert run.returncode == 1
    assert run.stdout == ""  # the client never started
    assert run.stderr.startswith(f"fleet-start: {message}")
    assert "T0ken" not in run.stderr


# --- how big a release gets ---------------------------------------------------------------------------------------


def helm_release_record(chart, values, release, manifests):
    """What Helm 3 stores for a release (its storage driver's encodeRelease): the release as JSON, gzipped, base64.
    The JSON follows Helm's release.Release: chart (metadata, templates and files as base64 bytes, default values,
    schema), config (the user's values), manifest (each rendered template after a '# Source:' line), info."""
    def chart_file(entry):
        return {"name": entry["name"], "data": base64.b64encode(entry["data"].encode()).decode()}

    manifest = "".join(
        f"---\n# Source: {path}\n{text}\n" for path, text in sorted(manifests.items()) if not path.endswith("NOTES.txt") and text.strip()
    )
    record = {
        "name": release,
        "info": {"first_deployed": "2019-05-23T10:00:00Z", "last_deployed": "2019-05-23T10:00:00Z", "deleted": "",
                 "description": "Install complete", "status": "deployed", "notes": manifests.get(f"{chart.name}/templates/NOTES.txt", "")},
        "chart": {
            "metadata": chart.metadata,
            "lock": None,
            "templates": [chart_file(t) for t in chart.templates],
            "values": chart.values,
            "schema": base64.b64encode(json.dumps(chart.schema).encode()).decode(),
            "files": [chart_file(f) for f in chart.files],
        },
        "config": values,
        "manifest": manifest,
        "version": 1,
        "namespace": NAMESPACE,
    }
    return base64.b64encode(gzip.compress(json.dumps(record).encode(), compresslevel=9))


def release_sizes(chart, devices):
    values = yaml.safe_load(fleet_values_text(devices))
    manifests = chart.render(values, name=FLEET_RELEASE, namespace=NAMESPACE)
    secret = next(obj for obj in rendered_objects(chart, values) if obj["kind"] == "Secret")
    return len(json.dumps(secret, separators=(",", ":"))), len(helm_release_record(chart, values, FLEET_RELEASE, manifests))


@pytest.mark.slow
def test_a_fleet_of_the_default_size_fits_kubernetes_and_helm(chart):
    # Real tokens are random (incompressible): make them as deviceRegistrator.py does.
    devices = [(f"190523-{number:04d}", new_device_token()) for number in range(1, FLEET_SIZE + 1)]
    secret_size, record_size = release_sizes(chart, devices)
    assert secret_size < SIZE_LIMIT, secret_size
    assert record_size < SIZE_LIMIT, record_size
