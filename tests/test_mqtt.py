"""Devices really connect: the SDK's own clients, from configs the registrator wrote, log in to the fake's MQTT broker,
publish, are refused when they should be, and show up in deviceStatus.py's report; deviceRunner.py runs a batch.

How the unmodified SDK client reaches the broker: a device config names `<org>.messaging.<domain>` and port 8883
(or 443), which do not resolve to the fake on a test machine, and the broker listens on a free port. The client
process of tests/sdk_device.py answers that one name lookup with 127.0.0.1 and the broker's port (a wrapped
socket.getaddrinfo, in that process only); TLS verification against the name is untouched. deviceRunner.py gets
there the way a user does: its --resolve pin.
"""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

import paho.mqtt.client as paho
import pytest
from amqtt.contexts import Action

from conftest import (
    ROOT,
    STATUS,
    clean_environment,
    read_jsonl,
    run_decommissioner,
    run_registrator,
    run_script,
    run_status,
)
from devicefactory.addresspin import AddressPin, parse_pin
from devicefactory.fakeplatform import FakePlatform
from devicefactory.fakeplatform.mqtt import topic_allowed
from devicefactory.fakeplatform.registry import parse_timestamp
from devicefactory.localregistry import render_device_config

SDK_DEVICE = ROOT / "tests" / "sdk_device.py"
RUNNER = ROOT / "deviceRunner.py"


def mqtt_env(fake, **extra):
    return clean_environment(**fake.env(), **fake.device_env(), **extra)


def host_pin(fake, port=8883):
    """tests/sdk_device.py's name mapping: the messaging host on `port` answered by the fake's broker."""
    return f"{fake.messaging_host}:{port}:127.0.0.1:{fake.mqtt_port}"


def start_device(config, pin, class_id="Device"):
    return subprocess.Popen([sys.executable, str(SDK_DEVICE), str(config), class_id, pin], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_environment())


def expect_line(process, wanted, timeout=30):
    """Read the process's stdout until a line equal to (or starting with) `wanted`; returns that line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith(wanted):
            return line.strip()
    process.kill()
    raise AssertionError(f"no {wanted!r} from the device: {process.stderr.read()[-2000:]}")


def stop_device(process):
    process.stdin.close()
    expect_line(process, "disconnected")
    assert process.wait(10) == 0


def eventually(check, seconds=5):
    """Whether `check()` comes true within `seconds` (the broker records a publish just after acknowledging it)."""
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    return check()


def config_path(workdir, class_id, type_id, batch, number):
    return workdir / "localDeviceRegistry" / class_id.lower() / type_id / batch / f"{batch}-{number:04d}.yaml"


def with_token(config, token):
    """The config's text with another token (a device whose token is wrong)."""
    text = config.read_text()
    return re.sub(r'(?m)^  token: ".*"$', f'  token: "{token}"', text)


# -- the fake's command, a registered device, the status report ---------------------------------------------


@pytest.mark.slow
def test_a_registered_device_connects_to_the_fake_command_publishes_and_is_reported_with_its_times(tmp_path, workdir):
    fake = subprocess.Popen([sys.executable, "-m", "devicefactory.fakeplatform", "--port", "0", "--mqtt-port", "0",
                             "--state-dir", str(tmp_path / "state")], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        exports = dict(fake.stdout.readline().strip().removeprefix("export ").split("=", 1) for _ in range(6))
        resolve = next(line for line in iter(fake.stderr.readline, "") if "--resolve" in line)
        pin = resolve.rsplit("--resolve ", 1)[1].strip()  # <org>.messaging.<domain>:8883:127.0.0.1:<broker port>
        env = clean_environment(**exports)
        assert run_registrator(workdir, "-b", "19", "-n", "2", env=env).returncode == 0
        device = start_device(config_path(workdir, "Device", "iotpsutil", "19", 1), pin)
        expect_line(device, "connected")
        expect_line(device, "published")
        time.sleep(0.2)  # the broker records the publish just after acknowledging it
        status = run_status(workdir, "-b", "19", "-n", "2", env=env)
        assert status.returncode == 3, status.stderr  # device 2 never connected
        assert "1 connected, 0 disconnected, 1 with no connection recorded" in status.stdout
        connected = read_jsonl(workdir / "localDeviceRegistry/device/iotpsutil/19/status-report.jsonl")[0]
        assert connected["state"] == "connected" and connected["lastDisconnectTime"] is None
        assert connected["lastActivityTime"] >= connected["lastConnectTime"] is not None

        wrong = tmp_path / "wrong-token.yaml"
        wrong.write_text(with_token(config_path(workdir, "Device", "iotpsutil", "19", 2), "Wrong-token-4711"))
        refused = start_device(wrong, pin)
        assert "Not authorized" in expect_line(refused, "refused:")
        assert refused.wait(10) == 3

        stop_device(device)
        time.sleep(0.2)  # the broker records the disconnection as the connection ends
        status = run_status(workdir, "-b", "19", "-n", "2", env=env)
        assert "0 connected, 1 disconnected, 1 with no connection recorded" in status.stdout  # the refusal left no state
        disconnected = read_jsonl(workdir / "localDeviceRegistry/device/iotpsutil/19/status-report.jsonl")[0]
        assert disconnected["lastConnectTime"] == connected["lastConnectTime"]
        assert disconnected["lastDisconnectTime"] > disconnected["lastConnectTime"]
    finally:
        fake.send_signal(signal.SIGTERM)
        assert fake.wait(10) == 0
        log = fake.stderr.read()
        fake.stdout.close()
        fake.stderr.close()
    assert "MQTT: device iotpsutil:19-0001 connected" in log and "refused: not authorized" in log
    assert exports["WIOTP_API_TOKEN"] not in log and "Wrong-token-4711" not in log


@pytest.mark.slow
def test_a_gateway_connects_as_a_gateway(fake_platform, workdir):
    env = mqtt_env(fake_platform)
    assert run_registrator(workdir, "-b", "7", "-n", "1", "-t", "gw", "-c", "Gateway", env=env).returncode == 0
    gateway = start_device(config_path(workdir, "Gateway", "gw", "7", 1), host_pin(fake_platform), "Gateway")
    expect_line(gateway, "published")  # on iot-2/type/gw/id/7-0001/evt/status/fmt/json, as a gateway publishes
    assert eventually(lambda: fake_platform.connection_state("gw", "7-0001")["lastActivityEvent"] == "mqttPublish")
    state = fake_platform.connection_state("gw", "7-0001")
    assert state["id"] == f"g:{fake_platform.org_id}:gw:7-0001" and state["clientType"] == "gateway"
    assert state["connectionStatus"] == "connected" and state["lastActivityEvent"] == "mqttPublish"
    status = run_status(workdir, "-b", "7", "-n", "1", "-t", "gw", "-c", "Gateway", env=env)
    assert status.returncode == 0 and "1 connected" in status.stdout
    stop_device(gateway)


@pytest.mark.slow
def test_a_maximo_style_config_with_port_443_and_its_ca_file_connects(tmp_path, workdir):
    # Maximo Application Suite: MQTT on 443 only, a private CA, a domain of its own. The broker is on a free port;
    # the client process maps <org>.messaging.<domain>:443 to it (see the module docstring).
    with FakePlatform(mqtt_port=0, domain="iot.mas.example.com", state_dir=tmp_path / "mas") as fake:
        env = clean_environment(**fake.env(), WIOTP_OPTIONS_DOMAIN="iot.mas.example.com",
                                WIOTP_OPTIONS_MQTT_PORT="443", WIOTP_OPTIONS_MQTT_CAFILE=fake.ca_file)
        assert run_registrator(workdir, "-b", "5", "-n", "1", env=env).returncode == 0
        config = config_path(workdir, "Device", "iotpsutil", "5", 1)
        assert "  domain: \"iot.mas.example.com\"\n  mqtt:\n    port: 443\n    caFile:" in config.read_text()
        device = start_device(config, host_pin(fake, 443))
        expect_line(device, "published")
        assert fake.connection_state("iotpsutil", "5-0001")["connectionStatus"] == "connected"
        stop_device(device)


@pytest.mark.slow
def test_a_removed_device_is_refused_and_its_connection_ended(fake_platform, workdir, tmp_path):
    env = mqtt_env(fake_platform)
    assert run_registrator(workdir, "-b", "8", "-n", "2", env=env).returncode == 0
    kept = tmp_path / "kept.yaml"
    shutil.copy(config_path(workdir, "Device", "iotpsutil", "8", 1), kept)
    second = start_device(config_path(workdir, "Device", "iotpsutil", "8", 2), host_pin(fake_platform))
    expect_line(second, "published")
    assert run_decommissioner(workdir, "-b", "8", "-n", "2", "--yes", env=env).returncode == 0
    refused = start_device(kept, host_pin(fake_platform))
    assert "Not authorized" in expect_line(refused, "refused:")
    assert fake_platform.connection_state("iotpsutil", "8-0001") is None
    # The connected device lost its connection when it was removed; the SDK reconnects, and is refused.
    assert "Not authorized" in expect_line(second, "refused:")
    assert second.wait(10) == 3


# -- the broker's rules, with a plain MQTT client ------------------------------------------------------------


def paho_client(fake, client_id, token, user="use-token-auth"):
    client = paho.Client(client_id, clean_session=True)
    client.tls_set(ca_certs=fake.ca_file, cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.username_pw_set(user, token)
    answers = []
    client.on_connect = lambda c, u, flags, rc: answers.append(rc)
    client.connect("localhost", fake.mqtt_port, keepalive=30)  # the certificate also names localhost
    return client, answers


def run_until(client, done, seconds=5):
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        client.loop(0.05)
    return done()


@pytest.mark.parametrize("client_id, user", [
    ("d:{org}:psutil:d1", "use-token-auth"),  # the right login: the only one accepted
    ("d:{org}:psutil:d1", "someone"),  # another user name
    ("d:otherorg:psutil:d1", "use-token-auth"),  # another organisation
    ("g:{org}:psutil:d1", "use-token-auth"),  # a device posing as a gateway
    ("d:{org}:psutil:unknown", "use-token-auth"),
])
def test_only_a_device_s_own_login_is_accepted(fake_platform, client_id, user):
    token = fake_platform.preregister("psutil", ["d1"])["d1"]
    client, answers = paho_client(fake_platform, client_id.format(org=fake_platform.org_id), token, user)
    assert run_until(client, lambda: answers)
    accepted = client_id.startswith("d:{org}:psutil:d1") and user == "use-token-auth"
    assert answers[0] == (0 if accepted else 5)
    client.disconnect()
    state = fake_platform.connection_state("psutil", "d1")
    assert (state is not None) == accepted


@pytest.mark.parametrize("action", ["publish", "subscribe"])
def test_a_topic_the_device_may_not_use_ends_its_connection(fake_platform, action):
    token = fake_platform.preregister("psutil", ["d1"])["d1"]
    client, answers = paho_client(fake_platform, f"d:{fake_platform.org_id}:psutil:d1", token)
    lost = []
    client.on_disconnect = lambda c, u, rc: lost.append(rc)
    assert run_until(client, lambda: answers) and answers == [0]
    client.publish("iot-2/evt/status/fmt/json", b"{}", qos=1)
    client.subscribe("iot-2/cmd/+/fmt/+", qos=1)
    assert run_until(client, lambda: fake_platform.connection_state("psutil", "d1")["lastActivityEvent"] == "mqttPublish")
    assert not run_until(client, lambda: lost, seconds=0.3)  # allowed topics: still connected
    if action == "publish":
        client.publish("iot-2/type/psutil/id/d1/evt/status/fmt/json", b"{}")  # a gateway's topic
    else:
        client.subscribe("iot-2/evt/+/fmt/+")
    assert run_until(client, lambda: lost) and lost[0] != 0
    assert eventually(lambda: fake_platform.connection_state("psutil", "d1")["connectionStatus"] == "disconnected")


@pytest.mark.slow
def test_a_client_silent_past_its_keep_alive_is_disconnected(fake_platform):
    token = fake_platform.preregister("psutil", ["d1"])["d1"]
    client = paho.Client(f"d:{fake_platform.org_id}:psutil:d1", clean_session=True)
    client.tls_set(ca_certs=fake_platform.ca_file, cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.username_pw_set("use-token-auth", token)
    answers = []
    client.on_connect = lambda c, u, flags, rc: answers.append(rc)
    client.connect("localhost", fake_platform.mqtt_port, keepalive=1)
    assert run_until(client, lambda: answers) and answers == [0]
    # The client stops running its loop, so it sends no PINGREQ: the broker ends it after 1.5 keep-alives.
    assert eventually(lambda: fake_platform.connection_state("psutil", "d1")["connectionStatus"] == "disconnected")
    state = fake_platform.connection_state("psutil", "d1")
    assert 1.4 < parse_timestamp(state["lastDisconnectTime"]) - parse_timestamp(state["lastConnectTime"]) < 4
    client.socket().close()


def test_topic_rules():
    publish, subscribe = Action.PUBLISH, Action.SUBSCRIBE
    assert topic_allowed(False, "iot-2/evt/status/fmt/json", publish)
    assert not topic_allowed(False, "iot-2/evt/+/fmt/json", publish)
    assert not topic_allowed(False, "iot-2/cmd/reboot/fmt/json", publish)
    assert topic_allowed(False, "iot-2/cmd/+/fmt/+", subscribe)
    assert not topic_allowed(False, "iot-2/cmd/#", subscribe)
    assert not topic_allowed(False, "iot-2/evt/status/fmt/json", subscribe)
    assert topic_allowed(True, "iot-2/type/gw/id/g1/evt/status/fmt/json", publish)
    assert topic_allowed(True, "iot-2/type/+/id/+/cmd/+/fmt/+", subscribe)
    assert topic_allowed(True, "iot-2/type/gw/id/g1/notify", subscribe)
    assert not topic_allowed(True, "iot-2/evt/status/fmt/json", publish)
    assert not topic_allowed(True, "iot-2/type/gw/id/g1/evt/status/fmt/json/x", publish)


# -- deviceRunner.py -----------------------------------------------------------------------------------------


def run_runner(workdir, fake, *args, env=None):
    return run_script(RUNNER, workdir, *args, env=env or mqtt_env(fake), timeout=60)


def test_pins_are_read_as_curl_reads_them():
    assert parse_pin("Org.messaging.example.com:8883:10.0.0.5") == AddressPin("org.messaging.example.com", 8883,
                                                                             "10.0.0.5", 8883)
    assert parse_pin("h:443:127.0.0.1:18443") == AddressPin("h", 443, "127.0.0.1", 18443)
    assert parse_pin("h:8883:[::1]:9000") == AddressPin("h", 8883, "::1", 9000)
    for bad in ("h", "h:8883", "h:x:1.2.3.4", "h:8883:1.2.3.4:0", "h:8883:[::1", ":8883:1.2.3.4", "h:8883:a:1:2"):
        with pytest.raises(ValueError):
            parse_pin(bad)


@pytest.mark.slow
def test_the_runner_connects_a_batch_through_its_pin_and_reports_refusals(fake_platform, workdir):
    env = mqtt_env(fake_platform)
    assert run_registrator(workdir, "-b", "3", "-n", "3", env=env).returncode == 0
    third = config_path(workdir, "Device", "iotpsutil", "3", 3)
    token = fake_platform.device("iotpsutil", "3-0003")["authToken"]
    third.write_text(with_token(third, "Wrong-token-4711"))
    result = run_runner(workdir, fake_platform, "-b", "3", "-n", "3", "--duration", "1.5", "--interval", "0.5",
                        "--resolve", fake_platform.resolve_pin())
    assert result.returncode == 3, result.stderr
    lines = result.stdout.splitlines()
    assert "Device connected: iotpsutil:3-0001" in lines and "Device refused: iotpsutil:3-0003: not authorized" in lines
    assert re.search(r"ran 3 devices of type iotpsutil for \d+ s: 2 connected at first, 1 refused, 0 never "
                     r"connected; \d+ events published; all disconnected", result.stdout)
    for device in ("3-0001", "3-0002"):
        state = fake_platform.connection_state("iotpsutil", device)
        assert state["connectionStatus"] == "disconnected" and state["lastDisconnectTime"] > state["lastConnectTime"]
    assert fake_platform.connection_state("iotpsutil", "3-0003") is None
    for secret in (token, "Wrong-token-4711", fake_platform.device("iotpsutil", "3-0001")["authToken"]):
        assert secret not in result.stdout + result.stderr


@pytest.mark.slow
def test_without_its_pin_the_runner_cannot_reach_a_broker_whose_name_does_not_resolve(fake_platform, workdir):
    env = mqtt_env(fake_platform)
    assert run_registrator(workdir, "-b", "4", "-n", "1", env=env).returncode == 0
    result = run_runner(workdir, fake_platform, "-b", "4", "-n", "1", "--duration", "1")
    assert result.returncode == 3
    assert "never connected: iotpsutil:4-0001:" in result.stdout
    assert fake_platform.connection_state("iotpsutil", "4-0001") is None


@pytest.mark.slow
def test_a_pin_keeps_tls_verification_against_the_name(fake_platform, workdir):
    env = mqtt_env(fake_platform)
    assert run_registrator(workdir, "-b", "6", "-n", "1", env=env).returncode == 0
    # The certificate names the messaging host: a pin for a name it does not hold must fail verification.
    other = "myorg1.messaging.elsewhere.example.com"
    config = config_path(workdir, "Device", "iotpsutil", "6", 1)
    config.write_text(config.read_text().replace("options:\n", "options:\n  domain: \"elsewhere.example.com\"\n"))
    result = run_runner(workdir, fake_platform, "-b", "6", "-n", "1", "--duration", "1",
                        "--resolve", f"{other}:8883:127.0.0.1:{fake_platform.mqtt_port}")
    assert result.returncode == 3 and "CERTIFICATE_VERIFY_FAILED" in result.stdout


@pytest.mark.parametrize("damage, message", [
    ("torn", "deviceRunner.py: error: damaged config: "),
    ("foreign", "deviceRunner.py: error: damaged config: "),
    ("missing", "deviceRunner.py: error: no config for 1 device of the batch: 2-0002"),
    ("ca gone", "deviceRunner.py: error: "),
])
@pytest.mark.slow
def test_the_runner_refuses_a_damaged_missing_or_foreign_config_before_connecting(fake_platform, workdir, damage,
                                                                                    message):
    ca_file = workdir.parent / "ca.pem"
    shutil.copy(fake_platform.ca_file, ca_file)
    env = {**mqtt_env(fake_platform), "WIOTP_OPTIONS_MQTT_CAFILE": str(ca_file)}
    assert run_registrator(workdir, "-b", "2", "-n", "2", env=env).returncode == 0
    second = config_path(workdir, "Device", "iotpsutil", "2", 2)
    if damage == "ca gone":  # the CA file the configs name was moved away
        ca_file.unlink()
        message += f"localDeviceRegistry/device/iotpsutil/2/2-0001.yaml: its options.mqtt.caFile {ca_file} cannot be read"
    elif damage == "torn":
        second.write_text(second.read_text()[:60])
    elif damage == "foreign":
        second.write_text(render_device_config(fake_platform.org_id, "iotpsutil", "9-0001", "Some-token-123"))
    else:
        second.unlink()
    result = run_runner(workdir, fake_platform, "-b", "2", "-n", "2", "--resolve", fake_platform.resolve_pin())
    assert result.returncode == 1
    assert result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1
    assert result.stdout == ""
    assert fake_platform.connection_state("iotpsutil", "2-0001") is None  # nothing connected


@pytest.mark.slow
def test_sigterm_disconnects_every_device_and_exits_130_and_status_wait_saw_them_connect(fake_platform, workdir):
    env = mqtt_env(fake_platform)
    assert run_registrator(workdir, "-b", "9", "-n", "3", env=env).returncode == 0
    waiting = subprocess.Popen([sys.executable, str(STATUS), "-b", "9", "-n", "3", "--wait", "60"], cwd=workdir,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL)
    started = time.monotonic()
    runner = subprocess.Popen([sys.executable, str(RUNNER), "-b", "9", "-n", "3", "--interval", "1", "--resolve",
                               fake_platform.resolve_pin()], cwd=workdir, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        expect_line(runner, "connected now: 3 of 3")
        status_out, _ = waiting.communicate(timeout=40)
        assert waiting.returncode == 0 and "3 connected" in status_out
        assert time.monotonic() - started < 30  # it answered as they connected, not at the end of its wait
        runner.send_signal(signal.SIGTERM)
        out, errors = runner.communicate(timeout=20)
        assert runner.returncode == 130 and errors == ""
        assert out.strip().endswith("never connected; stopped by Ctrl-C or SIGTERM; all disconnected.")
        assert "Batch 9: ran 3 devices of type iotpsutil for " in out
    finally:
        for process in (runner, waiting):
            if process.poll() is None:
                process.kill()
                process.wait()
    for number in (1, 2, 3):
        state = fake_platform.connection_state("iotpsutil", f"9-000{number}")
        assert state["connectionStatus"] == "disconnected"
        assert state["lastActivityEvent"] == "mqttDisconnect"


@pytest.mark.slow
def test_sigterm_while_a_silent_broker_holds_the_handshakes_exits_at_once(fake_platform, workdir):
    env = mqtt_env(fake_platform)
    assert run_registrator(workdir, "-b", "9", "-n", "3", env=env).returncode == 0
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, then never says a word
        pin = f"{fake_platform.messaging_host}:8883:127.0.0.1:{silent.getsockname()[1]}"
        runner = subprocess.Popen([sys.executable, str(RUNNER), "-b", "9", "-n", "3", "--resolve", pin], cwd=workdir,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  stdin=subprocess.DEVNULL)
        try:
            accepted = [silent.accept()[0] for _ in range(3)]  # every handshake under way
            runner.send_signal(signal.SIGTERM)
            _, errors = runner.communicate(timeout=20)  # paho's handshake alone waits the keep-alive, 60 s
            assert runner.returncode == 130 and "Traceback" not in errors
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
            for connection in locals().get("accepted", []):
                connection.close()


def test_the_fake_keeps_connection_states_in_its_state_dir(tmp_path):
    with FakePlatform(state_dir=tmp_path, persist=True, mqtt_port=0) as fake:
        token = fake.preregister("psutil", ["d1"])["d1"]
        client, answers = paho_client(fake, f"d:{fake.org_id}:psutil:d1", token)
        assert run_until(client, lambda: answers) and answers == [0]
        client.publish("iot-2/evt/status/fmt/json", b"{}", qos=1)
        assert run_until(client, lambda: fake.connection_state("psutil", "d1")["lastActivityEvent"] == "mqttPublish")
    # Stopping the fake ends the connection: the restarted fake shows it disconnected at that moment.
    with FakePlatform(state_dir=tmp_path, mqtt_port=0) as restarted:
        state = restarted.connection_state("psutil", "d1")
        assert state["connectionStatus"] == "disconnected" and state["lastActivityEvent"] == "mqttDisconnect"
    assert os.path.exists(tmp_path / "state.json")


@pytest.mark.slow
def test_the_runner_runs_a_manifest_batch_with_its_batch_id_alone(fake_platform, workdir):
    env = mqtt_env(fake_platform)
    (workdir / "line9.jsonl").write_text('{"deviceId": "pump-B", "serialNumber": "SN-2"}\n'
                                          '{"deviceId": "pump-A", "serialNumber": "SN-1"}\n')
    registered = run_registrator(workdir, "-b", "w9", "--manifest", "line9.jsonl", env=env)
    assert registered.returncode == 0, registered.stderr
    result = run_runner(workdir, fake_platform, "-b", "w9", "--duration", "1", "--interval", "0.5",
                        "--resolve", fake_platform.resolve_pin())
    assert result.returncode == 0, result.stderr
    assert "ran 2 devices of type iotpsutil" in result.stdout
    assert fake_platform.connection_state("iotpsutil", "pump-A")["connectionStatus"] == "disconnected"
    refused = run_runner(workdir, fake_platform, "-b", "w9", "-n", "1", "--duration", "1")
    assert refused.returncode == 2 and "registered from a manifest of 2 devices, not 1" in refused.stderr
