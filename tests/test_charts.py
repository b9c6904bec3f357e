"""The Helm charts, linted and rendered by the real Helm engine (helm_python): no cluster, no helm binary.

Every device config here is written by render_device_config and read back with yaml.safe_load, as
`helm upgrade <release> <chart> -i --values <config>.yaml` would read it.
"""

import base64
import hashlib
import json
import re
from pathlib import Path

import helm_python
import pytest
import trustme
import wiotp.sdk.device
import yaml

from conftest import container_of
from devicefactory.localregistry import render_device_config

HELM = Path(__file__).resolve().parents[1] / "helm"
LIBRARY = HELM / "devicefactory-lib"  # the templates both charts share (a library chart, vendored in charts/)
RELEASE = "iotpsutil-190523-1000"
NAMESPACE = "factory"
# Every YAML indicator, quote, escape and shell metacharacter, as one token (printable ASCII, no newline).
NASTY_TOKEN = "a\"b\\c: #{}[]&*!|>'%@`$(x)` -? ,=~^;< end "
ALL_PRINTABLE_ASCII = "".join(chr(code) for code in range(0x20, 0x7F))

# What each chart must deploy, exactly.
CHARTS = {
    "psutil": {
        "image": "wiotp/psutil:latest",
        "resources": {"requests": {"cpu": "2m", "memory": "18Mi"}, "limits": {"cpu": "4m", "memory": "24Mi"}},
        "tmp_size": "8Mi",
    },
    "oshi": {
        "image": "wiotp/oshi:latest",
        "resources": {"requests": {"cpu": "10m", "memory": "80Mi"}, "limits": {"cpu": "100m", "memory": "128Mi"}},
        "tmp_size": "16Mi",
    },
}
POD_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 65534,
    "runAsGroup": 65534,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
WARNING = 2  # helm lint severities: 1 info, 2 warning, 3 error


def device_values(tmp_path, token="s3cr3t-T0ken", domain=None, device_id="190523-0001"):
    """Write a device config the way deviceRegistrator.py does, and read it back the way helm reads --values."""
    config_path = tmp_path / f"{device_id}.yaml"
    config_path.write_text(render_device_config("myorg1", "iotpsutil", device_id, token, domain=domain))
    return yaml.safe_load(config_path.read_text())


def render(chart, values, release=RELEASE):
    """The rendered manifests by kind, and the NOTES text."""
    rendered = chart.render(values, name=release, namespace=NAMESPACE)
    notes = rendered.pop(f"{chart.name}/templates/NOTES.txt")
    objects = [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]
    kinds = [obj["kind"] for obj in objects]
    assert sorted(kinds) == ["Deployment", "Secret"]
    return {obj["kind"]: obj for obj in objects}, notes


def lint_problems(report):
    """Lint messages at warning severity or worse, and errors."""
    return [m for m in report["messages"] if m["severity"] >= WARNING] + report["errors"]


# --- lint ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True])
def test_lint_is_clean_with_the_default_values(chart_name, strict):
    report = helm_python.lint(HELM / chart_name, strict=strict)
    assert report["total_charts_linted"] == 1
    assert lint_problems(report) == []


@pytest.mark.parametrize("domain", [None, "example.com"])
def test_lint_is_clean_with_a_device_config(chart_name, tmp_path, domain):
    report = helm_python.lint(HELM / chart_name, device_values(tmp_path, token=NASTY_TOKEN, domain=domain), strict=True)
    assert lint_problems(report) == []


def test_lint_checks_the_schema(chart_name, tmp_path):
    # The other side of "lint is clean": lint does validate values against values.schema.json.
    values = device_values(tmp_path)
    values["auth"]["token"] = ""
    report = helm_python.lint(HELM / chart_name, values)
    errors = [m for m in report["messages"] if m["severity"] == 3]
    assert errors and all("/auth/token" in m["error"] for m in errors)


# --- what a device config renders to ---------------------------------------------------------------------------


def expected_env(fullname, domain=None):
    env = [
        {"name": "WIOTP_IDENTITY_ORGID", "value": "myorg1"},
        {"name": "WIOTP_IDENTITY_TYPEID", "value": "iotpsutil"},
        {"name": "WIOTP_IDENTITY_DEVICEID", "value": "190523-0001"},
        {"name": "WIOTP_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": fullname, "key": "token"}}},
    ]
    if domain:
        env.append({"name": "WIOTP_OPTIONS_DOMAIN", "value": domain})
    return env


@pytest.mark.parametrize("domain", [None, "example.com"])
def test_device_config_becomes_env_vars_and_a_secret(chart, chart_name, tmp_path, domain):
    objects, _ = render(chart, device_values(tmp_path, domain=domain))
    fullname = f"{RELEASE}-{chart_name}"  # the original sample's pod names: iotpsutil-190523-1000-psutil-<hash>
    deployment, secret = objects["Deployment"], objects["Secret"]
    assert deployment["metadata"]["name"] == fullname
    assert container_of(deployment)["env"] == expected_env(fullname, domain)
    assert "s3cr3t-T0ken" not in yaml.safe_dump(deployment)
    assert secret["metadata"]["name"] == fullname
    assert secret["type"] == "Opaque"
    assert secret["data"] == {"token": base64.b64encode(b"s3cr3t-T0ken").decode()}
    assert "stringData" not in secret


@pytest.mark.parametrize("token", [NASTY_TOKEN, ALL_PRINTABLE_ASCII, "null", "true", "0x1F", "1e3", "- x", "*a"])
def test_secret_holds_the_token_exactly(chart, tmp_path, token):
    values = device_values(tmp_path, token=token)
    assert values["auth"]["token"] == token  # the config file itself keeps it exactly
    objects, _ = render(chart, values)
    assert base64.b64decode(objects["Secret"]["data"]["token"]).decode("ascii") == token
    # The rest renders the same whatever the token holds: it reaches the container only through the Secret.
    fullname = objects["Secret"]["metadata"]["name"]
    assert container_of(objects["Deployment"])["env"] == expected_env(fullname)


def test_labels(chart, chart_name, tmp_path):
    objects, _ = render(chart, device_values(tmp_path))
    selector = {"app.kubernetes.io/name": chart_name, "app.kubernetes.io/instance": RELEASE}
    labels = {
        **selector,
        "helm.sh/chart": f"{chart_name}-1.2.0",
        "app.kubernetes.io/version": "latest",
        "app.kubernetes.io/managed-by": "Helm",
    }
    deployment = objects["Deployment"]
    assert deployment["metadata"]["labels"] == labels
    assert objects["Secret"]["metadata"]["labels"] == labels
    assert deployment["spec"]["selector"] == {"matchLabels": selector}
    assert deployment["spec"]["template"]["metadata"]["labels"] == labels


def test_one_hardened_replica(chart, chart_name, tmp_path):
    objects, _ = render(chart, device_values(tmp_path))
    spec = objects["Deployment"]["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"] == POD_SECURITY_CONTEXT
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": CHARTS[chart_name]["tmp_size"]}}]
    container = container_of(objects["Deployment"])
    assert container["name"] == chart_name
    assert container["securityContext"] == CONTAINER_SECURITY_CONTEXT
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert container["resources"] == CHARTS[chart_name]["resources"]
    assert container["image"] == CHARTS[chart_name]["image"]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert "ports" not in container


def test_image_tag_can_be_pinned(chart, chart_name, tmp_path):
    values = device_values(tmp_path)
    values["image"] = {"tag": "2019-05-23"}
    objects, _ = render(chart, values)
    assert container_of(objects["Deployment"])["image"] == f"wiotp/{chart_name}:2019-05-23"


DIGEST = "sha256:" + "0123456789abcdef" * 4


def test_image_digest_pins_the_image_and_wins_over_the_tag(chart, chart_name, tmp_path):
    values = device_values(tmp_path)
    values["image"] = {"tag": "2019-05-23", "digest": DIGEST}
    objects, notes = render(chart, values)
    assert container_of(objects["Deployment"])["image"] == f"wiotp/{chart_name}@{DIGEST}"
    assert f"image:        wiotp/{chart_name}@{DIGEST}\n" in notes


@pytest.mark.parametrize("digest", ["sha256:abc", "0123456789abcdef" * 4, "sha256:" + "0123456789ABCDEF" * 4, "latest"])
def test_schema_rejects_a_malformed_digest(chart, tmp_path, digest):
    values = {**device_values(tmp_path), "image": {"digest": digest}}
    with pytest.raises(helm_python.HelmValuesError, match=re.escape("at '/image/digest'")):
        chart.validate_schema(values)


def test_secret_checksum_restarts_the_pod_when_the_token_changes(chart, chart_name, tmp_path):
    def checksum_and_secret(token):
        rendered = chart.render(device_values(tmp_path, token=token), name=RELEASE, namespace=NAMESPACE)
        deployment = yaml.safe_load(rendered[f"{chart_name}/templates/deployment.yaml"])
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/secret"], rendered[f"{chart_name}/templates/secret.yaml"]

    checksum, secret_text = checksum_and_secret("s3cr3t-T0ken")
    assert checksum == hashlib.sha256(secret_text.encode()).hexdigest()  # of the Secret exactly as rendered
    assert checksum_and_secret("s3cr3t-T0ken")[0] == checksum
    assert checksum_and_secret("n3w-T0ken-after-a-reset")[0] != checksum


def test_fullname_is_a_dns_label(chart, tmp_path):
    # Helm allows 53-character release names; a long nameOverride pushes the name past 63 characters.
    release = "r" * 53
    values = {**device_values(tmp_path), "nameOverride": "abcdefgh-ijk"}
    objects, _ = render(chart, values, release=release)
    assert objects["Deployment"]["metadata"]["name"] == release + "-abcdefgh"  # cut at 63, trailing "-" dropped


def test_notes_name_the_device_and_its_logs_but_not_its_token(chart, chart_name, tmp_path):
    _, notes = render(chart, device_values(tmp_path, domain="example.com"))
    fullname = f"{RELEASE}-{chart_name}"
    assert "organization: myorg1\n" in notes
    assert "device type:  iotpsutil\n" in notes
    assert "device ID:    190523-0001\n" in notes
    assert "domain:       example.com\n" in notes
    assert f"kubectl --namespace {NAMESPACE} logs -f deployment/{fullname}\n" in notes
    assert "s3cr3t-T0ken" not in notes


# --- configs that must not deploy -------------------------------------------------------------------------------


DROP = object()
# Each broken config: (where in the config, what to put there or DROP, the schema's message).
BROKEN_CONFIGS = {
    "no identity": (("identity",), DROP, "at '/identity': missing properties 'orgId', 'typeId', 'deviceId'"),
    "no deviceId": (("identity", "deviceId"), DROP, "at '/identity': missing property 'deviceId'"),
    "no auth": (("auth",), DROP, "at '/auth': missing property 'token'"),
    "no token": (("auth", "token"), DROP, "at '/auth': missing property 'token'"),
    "empty token": (("auth", "token"), "", "at '/auth/token': minLength: got 0, want 1"),
    "empty orgId": (("identity", "orgId"), "", "at '/identity/orgId': minLength: got 0, want 1"),
    "numeric deviceId": (("identity", "deviceId"), 1, "at '/identity/deviceId': got number, want string"),
}


@pytest.mark.parametrize("broken", sorted(BROKEN_CONFIGS))
def test_schema_rejects_an_incomplete_config(chart, tmp_path, broken):
    (*parents, key), value, message = BROKEN_CONFIGS[broken]
    values = device_values(tmp_path)
    section = values
    for parent in parents:
        section = section[parent]
    if value is DROP:
        del section[key]
    else:
        section[key] = value
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(message)):
        chart.validate_schema(values)
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(message)):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_schema_accepts_a_device_config(chart, tmp_path):
    chart.validate_schema(device_values(tmp_path, token=NASTY_TOKEN, domain="example.com"))


@pytest.mark.parametrize("values", [None, {}, {"options": {"domain": "example.com"}}, {"identity": None, "auth": None}])
def test_render_fails_without_a_device(chart, values):
    # What the schema cannot reject (these merge to the chart's defaults, which helm lint must accept),
    # `required` does: nothing gets installed.
    with pytest.raises(helm_python.HelmRenderError, match=r"auth\.token is required"):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


# --- the chart files themselves -----------------------------------------------------------------------------------


def test_chart_follows_the_v2_scaffold(chart, chart_name):
    assert chart.metadata["apiVersion"] == "v2"
    assert chart.metadata["name"] == chart_name
    assert chart.metadata["appVersion"] == "latest"
    helpers = (LIBRARY / "templates" / "_helpers.tpl").read_text()
    for helper in ("name", "fullname", "chart", "labels", "selectorLabels"):
        assert f'{{{{- define "devicefactory-lib.{helper}" -}}}}' in helpers
    assert (HELM / chart_name / ".helmignore").is_file()
    assert not any(t["name"].endswith(("service.yaml", "ingress.yaml", "serviceaccount.yaml")) for t in chart.templates)


def tree(folder):
    """{path relative to `folder`: bytes} of every file below it."""
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_the_shared_templates_live_once_in_the_library_and_each_chart_holds_an_equal_copy(chart, chart_name):
    assert yaml.safe_load((LIBRARY / "Chart.yaml").read_text())["type"] == "library"
    copy = HELM / chart_name / "charts" / LIBRARY.name
    assert tree(copy) == tree(LIBRARY), "run python3 tools/vendor_chart_library.py after changing the library"
    (dependency,) = yaml.safe_load((HELM / chart_name / "Chart.yaml").read_text())["dependencies"]
    assert dependency == {"name": LIBRARY.name, "version": yaml.safe_load((LIBRARY / "Chart.yaml").read_text())[
        "version"], "repository": f"file://../{LIBRARY.name}"}
    own = sorted(path.name for path in (HELM / chart_name / "templates").iterdir())
    assert own == (["NOTES.txt", "_truststore.tpl", "deployment.yaml", "secret.yaml", "statefulset.yaml"]
                   if chart_name == "oshi" else ["NOTES.txt", "deployment.yaml", "secret.yaml", "statefulset.yaml"])


def test_every_values_key_has_a_comment(chart_name):
    lines = (HELM / chart_name / "values.yaml").read_text().splitlines()
    uncommented = [
        line
        for previous, line in zip([""] + lines, lines, strict=False)
        if re.match(r"\s*[A-Za-z][\w.-]*:", line) and not previous.strip().startswith("#")
    ]
    assert uncommented == []


# --- Maximo IoT: MQTT on port 443 with a private CA ----------------------------------------------------------------


def maximo_values(tmp_path, device_id="190523-0001", token="s3cr3t-T0ken"):
    """A device config with options.mqtt.port and options.mqtt.caFile (wiotp-sdk's config-file format), plus what the
    deploy script's `--set-file mqttCaCert=<caFile>` adds: the values helm installs."""
    ca_file = tmp_path / "maximo-ca.pem"
    if not ca_file.exists():
        trustme.CA().cert_pem.write_to_path(str(ca_file))
    config_path = tmp_path / f"{device_id}.yaml"
    config_path.write_text(
        render_device_config("myorg1", "iotpsutil", device_id, token, domain="maximo.example.com")
        + f"  mqtt:\n    port: 443\n    caFile: {json.dumps(str(ca_file))}\n"
    )
    sdk_config = wiotp.sdk.device.parseConfigFile(str(config_path))  # the SDK reads this very file
    assert (sdk_config.port, sdk_config.caFile) == (443, str(ca_file))
    values = yaml.safe_load(config_path.read_text())
    values.update(helm_python.parse_set_file(f"mqttCaCert={ca_file}"))
    return values


def test_maximo_config_sets_the_port_and_mounts_the_ca(chart, chart_name, tmp_path):
    values = maximo_values(tmp_path)
    objects, notes = render(chart, values)
    fullname = f"{RELEASE}-{chart_name}"
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    container = container_of(objects["Deployment"])
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["WIOTP_OPTIONS_MQTT_PORT"] == "443"
    assert env["WIOTP_OPTIONS_MQTT_CAFILE"] == "/etc/wiotp/ca/mqtt-ca.pem"
    assert container["env"][:6] == expected_env(fullname, "maximo.example.com") + [
        {"name": "WIOTP_OPTIONS_MQTT_PORT", "value": "443"}
    ]
    assert {"name": "mqtt-ca", "mountPath": "/etc/wiotp/ca", "readOnly": True} in container["volumeMounts"]
    assert {"name": "mqtt-ca", "secret": {"secretName": fullname, "items": [{"key": "mqtt-ca.pem", "path": "mqtt-ca.pem"}]}} in pod["volumes"]
    secret = objects["Secret"]
    assert base64.b64decode(secret["data"]["mqtt-ca.pem"]).decode() == values["mqttCaCert"]
    assert base64.b64decode(secret["data"]["token"]).decode() == "s3cr3t-T0ken"
    # The deploying machine's path stays on the deploying machine.
    assert values["options"]["mqtt"]["caFile"] not in yaml.safe_dump(objects) + notes
    assert "MQTT port:    443\n" in notes


def test_oshi_gets_a_jvm_truststore_since_the_java_sdk_ignores_the_ca_file(tmp_path):
    with helm_python.Chart.load(HELM / "oshi") as oshi:
        objects, _ = render(oshi, maximo_values(tmp_path))
        pod = objects["Deployment"]["spec"]["template"]["spec"]
        (init,) = pod["initContainers"]
        assert init["image"] == "wiotp/oshi:latest" and init["securityContext"] == CONTAINER_SECURITY_CONTEXT
        assert "keytool -importcert" in init["command"][2]
        assert {"name": "truststore", "mountPath": "/etc/wiotp/truststore"} in init["volumeMounts"]
        container = container_of(objects["Deployment"])
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["JAVA_TOOL_OPTIONS"] == (
            "-Djavax.net.ssl.trustStore=/etc/wiotp/truststore/cacerts -Djavax.net.ssl.trustStorePassword=changeit"
        )
        assert {"name": "truststore", "mountPath": "/etc/wiotp/truststore", "readOnly": True} in container["volumeMounts"]
        # Without a CA, or with javaTrustStore off, no init container and the JVM's own truststore.
        for values in (device_values(tmp_path), {**maximo_values(tmp_path), "javaTrustStore": False}):
            objects, _ = render(oshi, values)
            assert "initContainers" not in objects["Deployment"]["spec"]["template"]["spec"]
            assert "JAVA_TOOL_OPTIONS" not in yaml.safe_dump(objects)


def test_psutil_has_no_truststore_init_container(tmp_path):
    with helm_python.Chart.load(HELM / "psutil") as psutil:
        objects, _ = render(psutil, maximo_values(tmp_path))
        assert "initContainers" not in objects["Deployment"]["spec"]["template"]["spec"]


def test_lint_is_clean_with_a_maximo_config(chart_name, tmp_path):
    report = helm_python.lint(HELM / chart_name, maximo_values(tmp_path), strict=True)
    assert lint_problems(report) == []


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("port", 0, "at '/options/mqtt/port': minimum: got 0, want 1"),
        ("port", 65536, "at '/options/mqtt/port': maximum: got 65,536, want 65,535"),
        ("port", "443", "at '/options/mqtt/port': got string, want integer"),
        ("port", 443.5, "at '/options/mqtt/port': got number, want integer"),
        ("mqttCaCert", "/home/me/maximo-ca.pem", "at '/mqttCaCert'"),  # a path passed with --set, not --set-file
    ],
)
def test_schema_rejects_a_bad_port_or_ca(chart, tmp_path, key, value, message):
    values = maximo_values(tmp_path)
    if key == "port":
        values["options"]["mqtt"]["port"] = value
    else:
        values[key] = value
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(message)):
        chart.validate_schema(values)


def test_host_aliases_pin_the_broker_s_address_as_the_runner_s_resolve_does(chart, chart_name, tmp_path):
    values = device_values(tmp_path)
    pins = [{"ip": "10.0.0.5", "hostnames": ["myorg1.messaging.internetofthings.ibmcloud.com"]}]
    objects, _ = render(chart, {**values, "hostAliases": pins})
    assert objects["Deployment"]["spec"]["template"]["spec"]["hostAliases"] == pins
    objects, _ = render(chart, values)
    assert "hostAliases" not in objects["Deployment"]["spec"]["template"]["spec"]  # none unless asked for
    for bad in ([{"ip": "10.0.0.5"}], [{"ip": "10.0.0.5", "hostnames": []}], [{"hostnames": ["a"], "ip": "x", "port": 1}]):
        with pytest.raises(helm_python.HelmValuesError, match="hostAliases"):
            chart.validate_schema({**values, "hostAliases": bad})
