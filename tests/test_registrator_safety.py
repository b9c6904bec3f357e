"""deviceRegistrator.py off the happy path: hostile folders, torn files, a lagging listing, a dripping server,
strict variables, signals and limits. Each test does it for real: links and folders of another user id, files
truncated on disk, a real TLS server that sends a byte at a time, real signals."""

import json
import os
import resource
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time

import pytest
import trustme
import yaml
from wiotp.sdk.device import parseConfigFile as parse_device_config_file

from conftest import clean_environment, kill_registrator_once_the_platform_applied, registrator_command, run_registrator
from devicefactory.pendingtokens import JOURNAL_NAME

BATCH_DIR = "localDeviceRegistry/device/iotpsutil/190523"
OTHER_USER = 12345  # a user id that is not ours


def batch_args(count, *extra):
    return ["--batchId", "190523", "--numberOfDevices", str(count), *extra]


def stored_tokens(workdir):
    tokens = {}
    for path in sorted((workdir / BATCH_DIR).glob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        if isinstance(config, dict):
            tokens[config["identity"]["deviceId"]] = config["auth"]["token"]
    return tokens


def platform_tokens(fake, type_id="iotpsutil"):
    return {device: fake.device(type_id, device)["authToken"] for device in fake.devices_of(type_id)}


def bulk_adds(fake):
    return [r for r in fake.requests if r["path"].endswith("/bulk/devices/add")]


@pytest.fixture
def as_root():
    if os.geteuid() != 0:
        pytest.skip("planting files owned by another user id needs root (CI runs as root)")


# Hostile folders and links ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_journal_link_planted_by_another_user_receives_no_token(fake_platform, workdir, tmp_path, as_root):
    assert run_registrator(workdir, *batch_args(1), fake=fake_platform).returncode == 0
    trap_dir = tmp_path / "attacker"
    trap_dir.mkdir()
    os.chown(trap_dir, OTHER_USER, OTHER_USER)
    stolen = trap_dir / "stolen.jsonl"
    (workdir / BATCH_DIR / JOURNAL_NAME).symlink_to(stolen)
    fake_platform.requests.clear()

    result = run_registrator(workdir, *batch_args(3), fake=fake_platform)

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line == (f"deviceRegistrator.py: error: refusing to read the pending-token journal "
                    f"{BATCH_DIR}/{JOURNAL_NAME}: it is a symbolic link; move it away and look at what it holds (it "
                    f"may hold tokens)")
    assert not stolen.exists()
    assert bulk_adds(fake_platform) == []  # no token was sent that is not on disk


@pytest.mark.slow
def test_a_config_link_is_kept_and_neither_followed_nor_replaced(fake_platform, workdir, tmp_path):
    assert run_registrator(workdir, *batch_args(1), fake=fake_platform).returncode == 0
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("untouched\n")
    link = workdir / BATCH_DIR / "190523-0002.yaml"
    link.symlink_to(elsewhere)

    result = run_registrator(workdir, *batch_args(2), fake=fake_platform)

    assert result.returncode == 3, result.stderr
    assert elsewhere.read_text() == "untouched\n"
    assert link.is_symlink()  # a file that is not the device's own config is kept as it is
    assert f"{BATCH_DIR}/190523-0002.yaml: holds a symbolic link to {elsewhere}, not a config file" in result.stdout
    assert fake_platform.devices_of("iotpsutil") == ["190523-0001"]  # its device was not sent


def test_a_batch_folder_open_to_everyone_is_made_private(fake_platform, workdir):
    folder = workdir / BATCH_DIR
    folder.mkdir(parents=True)
    for path in [folder, *folder.parents][:4]:
        os.chmod(path, 0o777)

    result = run_registrator(workdir, *batch_args(2), fake=fake_platform)

    assert result.returncode == 0, result.stderr
    assert result.stderr.count("was writable by other users: made it private (0700)") == 4
    for path in [folder, *folder.parents][:4]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_a_fresh_clones_registry_folder_is_made_private_without_a_warning(fake_platform, workdir):
    registry = workdir / "localDeviceRegistry"
    registry.mkdir(mode=0o755)  # as git checks it out (it holds .gitkeep)
    os.chmod(registry, 0o755)

    result = run_registrator(workdir, *batch_args(2), fake=fake_platform)

    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    assert stat.S_IMODE(registry.stat().st_mode) == 0o700


@pytest.mark.slow
def test_folders_and_configs_others_can_read_are_made_private(fake_platform, workdir):
    assert run_registrator(workdir, *batch_args(2), fake=fake_platform).returncode == 0
    folder = workdir / BATCH_DIR
    os.chmod(folder, 0o755)
    for config in folder.glob("*.yaml"):
        os.chmod(config, 0o644)

    rerun = run_registrator(workdir, *batch_args(2), fake=fake_platform)

    assert rerun.returncode == 0, rerun.stderr
    assert "was writable by other users" not in rerun.stderr  # a folder git checks out 0755: tightened silently
    assert f"2 configs in {BATCH_DIR} were readable by other users: made them private (0600)" in rerun.stderr
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(config.stat().st_mode) for config in folder.glob("*.yaml")} == {0o600}


def test_a_batch_folder_of_another_user_is_refused_before_anything_is_sent(fake_platform, workdir, as_root):
    folder = workdir / BATCH_DIR
    folder.mkdir(parents=True, mode=0o700)
    os.chown(folder, OTHER_USER, OTHER_USER)

    result = run_registrator(workdir, *batch_args(2), fake=fake_platform)

    assert result.returncode == 1
    assert result.stderr == (f"deviceRegistrator.py: error: refusing to keep tokens there: {BATCH_DIR} belongs to "
                             f"user id {OTHER_USER}, not to you\n")
    assert fake_platform.requests == [] and list(folder.iterdir()) == []


def test_a_batch_folder_that_is_a_link_into_a_shared_place_is_refused(fake_platform, workdir, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o1777)
    (workdir / BATCH_DIR).parent.mkdir(parents=True)
    (workdir / BATCH_DIR).symlink_to(shared)

    result = run_registrator(workdir, *batch_args(2), fake=fake_platform)

    assert result.returncode == 1
    assert "is a symbolic link; a folder that holds tokens must be a real folder" in result.stderr
    assert fake_platform.requests == [] and list(shared.iterdir()) == []


def test_a_project_folder_others_can_write_needs_the_sticky_bit(fake_platform, tmp_path):
    project = tmp_path / "open project"
    project.mkdir()
    os.chmod(project, 0o777)
    refused = run_registrator(project, *batch_args(1), fake=fake_platform)
    assert refused.returncode == 1 and "is writable by other users (and not sticky)" in refused.stderr
    assert list(project.iterdir()) == [] and fake_platform.requests == []

    os.chmod(project, 0o1777)  # as /tmp: others may not rename or delete what is ours
    assert run_registrator(project, *batch_args(1), fake=fake_platform).returncode == 0


# Torn and damaged files -------------------------------------------------------------------------------------------

def journal_line(device, token, nonce):
    return json.dumps({"id": device, "token": token, "nonce": nonce}) + "\n"


@pytest.mark.slow
def test_a_torn_or_garbage_config_is_kept_and_its_journal_token_settles_once_it_is_moved(fake_platform, workdir):
    assert run_registrator(workdir, *batch_args(3), fake=fake_platform).returncode == 0
    tokens = platform_tokens(fake_platform)
    folder = workdir / BATCH_DIR
    # What a power cut can leave: the journal still holds the tokens, the renamed configs hold nothing (or junk).
    journal = "".join(journal_line(d, tokens[d], fake_platform.device("iotpsutil", d)["metadata"]["deviceFactory"]["nonce"])
                      for d in ("190523-0002", "190523-0003"))
    (folder / JOURNAL_NAME).write_text(journal)
    (folder / "190523-0002.yaml").write_text("")
    (folder / "190523-0003.yaml").write_bytes(b"\x00\x17identity: [garbage\n")

    rerun = run_registrator(workdir, *batch_args(3), fake=fake_platform)

    # Custody: a file that does not read as its device is never written over, not even from the journal.
    assert rerun.returncode == 3, rerun.stderr
    assert rerun.stdout.count("damaged: repair it") == 4  # a line per device, and the summary's
    assert "its token is also kept in the journal" in rerun.stdout
    assert "lost" not in rerun.stdout + rerun.stderr
    assert (folder / "190523-0002.yaml").read_text() == ""
    assert (folder / JOURNAL_NAME).read_text() == journal
    assert "Needs attention: 2 config files kept as they are" in rerun.stdout

    (folder / "190523-0002.yaml").unlink()  # what the user does once they have looked at them
    (folder / "190523-0003.yaml").unlink()
    settled = run_registrator(workdir, *batch_args(3), fake=fake_platform)
    assert settled.returncode == 0, settled.stderr
    assert stored_tokens(workdir) == tokens
    assert settled.stdout.count("(recovered from an interrupted run)") == 2
    assert not (folder / JOURNAL_NAME).exists()


@pytest.mark.slow
def test_a_damaged_config_with_no_token_anywhere_is_reported_and_kept(fake_platform, workdir):
    assert run_registrator(workdir, *batch_args(2), fake=fake_platform).returncode == 0
    damaged = workdir / BATCH_DIR / "190523-0002.yaml"
    damaged.write_text("identity: {orgId: myorg1}\n")  # a hand edit gone wrong: the token is gone for good
    sent = len(removes_and_adds(fake_platform))

    rerun = run_registrator(workdir, *batch_args(2), fake=fake_platform)

    assert rerun.returncode == 3
    assert (f"Device not registered: iotpsutil:190523-0002: {BATCH_DIR}/190523-0002.yaml: damaged: repair it "
            f"(identity.typeId is missing): kept as it is; the file may hold the device's only token: repair it by "
            f"hand rather than decommission the device") in rerun.stdout
    assert "1 not registered (their config files need attention)" in rerun.stdout
    assert len(removes_and_adds(fake_platform)) == sent  # nothing was sent for it
    assert damaged.read_text() == "identity: {orgId: myorg1}\n"  # kept for the user to look at


def removes_and_adds(fake):
    return [r for r in fake.requests if r["path"].startswith("/api/v0002/bulk/")]


@pytest.mark.slow
def test_corrupt_journal_lines_are_reported_and_the_good_ones_used(fake_platform, workdir):
    kill_registrator_once_the_platform_applied(workdir, fake_platform, *batch_args(3))
    journal = workdir / BATCH_DIR / JOURNAL_NAME
    good = journal.read_text()
    journal.write_text('5\nnull\n{"id": "x"}\n' + good + '{"id": "190523-0002", "tok')  # and a torn append

    rerun = run_registrator(workdir, *batch_args(3), fake=fake_platform)

    assert rerun.returncode == 0, rerun.stderr
    assert "Traceback" not in rerun.stderr
    assert f"{JOURNAL_NAME}: skipped 3 lines that are not token records (line 1, 2, 3)" in rerun.stderr
    assert stored_tokens(workdir) == platform_tokens(fake_platform) and len(stored_tokens(workdir)) == 3


# A listing that lags ----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_lost_answer_with_a_lagging_listing_keeps_every_token(fake_platform, workdir):
    fake_platform.lag_listing(120)  # the search index shows none of the devices created in the last two minutes
    fake_platform.fail_next(1, status=503, path="/bulk/devices/add", after_processing=True)

    result = run_registrator(workdir, *batch_args(80), fake=fake_platform)

    assert result.returncode == 0, result.stderr
    assert "80 registered, 0 already present, 0 failed." in result.stdout
    assert stored_tokens(workdir) == platform_tokens(fake_platform) and len(stored_tokens(workdir)) == 80
    single = [r for r in fake_platform.requests if r["method"] == "GET" and "/devices/190523-" in r["path"]]
    assert len(single) == 80  # the listing showed none of them: each was asked for on its own


# Strict variables ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["yes", "on", "", "0", "no", "1"])
def test_tls_verification_takes_only_true_or_false(fake_platform, workdir, value):
    env = clean_environment(**{**fake_platform.env(), **dict(WIOTP_OPTIONS_HTTP_VERIFY=value)})
    result = run_registrator(workdir, *batch_args(1), env=env)
    assert result.returncode == 2
    assert result.stderr == f"deviceRegistrator.py: error: WIOTP_OPTIONS_HTTP_VERIFY must be true or false, not {value!r}\n"
    assert list(workdir.iterdir()) == [] and fake_platform.requests == []


@pytest.mark.parametrize("value, verified", [("TRUE", True), ("False", False), ("false", False)])
@pytest.mark.slow
def test_tls_verification_off_warns_on_every_run(fake_platform, workdir, value, verified):
    env = clean_environment(**{**fake_platform.env(), **dict(WIOTP_OPTIONS_HTTP_VERIFY=value)})
    for _ in range(2):
        result = run_registrator(workdir, *batch_args(1), env=env)
        assert result.returncode == 0, result.stderr
        assert ("warning: TLS verification is off" in result.stderr) is not verified


@pytest.mark.parametrize("name, value, message", [
    ("REQUESTS_CA_BUNDLE", "/no/such/ca.pem", "REQUESTS_CA_BUNDLE names '/no/such/ca.pem', which cannot be read"),
    ("REQUESTS_CA_BUNDLE", "/etc/hostname", "REQUESTS_CA_BUNDLE names '/etc/hostname', which holds no PEM certificate"),
    ("WIOTP_OPTIONS_DOMAIN", 'iot.example.com"\ninjected: 1', "WIOTP_OPTIONS_DOMAIN must be a host name"),
    ("WIOTP_OPTIONS_DOMAIN", "https://iot.example.com/", "WIOTP_OPTIONS_DOMAIN must be a host name"),
    ("WIOTP_OPTIONS_MQTT_PORT", "8883x", "WIOTP_OPTIONS_MQTT_PORT must be a port number (1 to 65535), not '8883x'"),
    ("WIOTP_OPTIONS_MQTT_PORT", "70000", "WIOTP_OPTIONS_MQTT_PORT must be a port number"),
    ("WIOTP_OPTIONS_MQTT_PORT", "12345", "WIOTP_OPTIONS_MQTT_PORT must be 8883 or 443"),  # the SDK raised
    ("WIOTP_OPTIONS_MQTT_PORT", "1883", "WIOTP_OPTIONS_MQTT_PORT must be 8883 or 443"),  # each token in clear
    ("WIOTP_OPTIONS_MQTT_CAFILE", "/no/such/mqtt-ca.pem", "WIOTP_OPTIONS_MQTT_CAFILE names '/no/such/mqtt-ca.pem'"),
])
def test_bad_variables_are_refused_naming_the_variable(fake_platform, workdir, name, value, message):
    env = clean_environment(**{**fake_platform.env(), name: value})
    result = run_registrator(workdir, *batch_args(1), env=env)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("deviceRegistrator.py: error: ") and message in line
    assert list(workdir.iterdir()) == [] and fake_platform.requests == []


def test_the_mqtt_port_and_ca_go_into_each_config_for_maximo(fake_platform, workdir):
    env = clean_environment(**{**fake_platform.env(), **dict(WIOTP_OPTIONS_MQTT_PORT="443",
                            WIOTP_OPTIONS_MQTT_CAFILE=fake_platform.ca_file,
                            WIOTP_OPTIONS_DOMAIN="iot.mas.example.com")})
    result = run_registrator(workdir, *batch_args(2), env=env)
    assert result.returncode == 0, result.stderr
    config_path = workdir / BATCH_DIR / "190523-0001.yaml"
    config = parse_device_config_file(str(config_path))  # as the device client reads it
    assert config.port == 443 and config.caFile == fake_platform.ca_file
    assert config.domain == "iot.mas.example.com"
    assert yaml.safe_load(config_path.read_text())["options"] == {
        "domain": "iot.mas.example.com", "mqtt": {"port": 443, "caFile": fake_platform.ca_file}}


# Refused before anything is sent: nothing written -----------------------------------------------------------------

def test_a_refused_connection_or_certificate_writes_nothing(fake_platform, workdir):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    env = clean_environment(**{**fake_platform.env(), **dict(WIOTP_OPTIONS_HTTP_HOST=f"127.0.0.1:{port}")})
    refused = run_registrator(workdir, *batch_args(2), "--retries", "0", env=env)
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == (
        "deviceRegistrator.py: error: registration stopped: cannot look up device type iotpsutil: connection failed "
        f"(https://127.0.0.1:{port}, 1 attempt): check the network, and that 127.0.0.1:{port} (from "
        "WIOTP_OPTIONS_HTTP_HOST) is the platform's host and is up")
    assert list(workdir.iterdir()) == []

    env = clean_environment(**fake_platform.env())
    del env["REQUESTS_CA_BUNDLE"]
    untrusted = run_registrator(workdir, *batch_args(2), env=env)
    assert untrusted.returncode == 1 and "TLS verification of https://" in untrusted.stderr
    assert list(workdir.iterdir()) == []


def test_an_unknown_api_key_writes_nothing_and_says_what_403_can_mean(fake_platform, workdir):
    env = clean_environment(**{**fake_platform.env(), **dict(WIOTP_API_KEY=f"a-{fake_platform.org_id}-zzzzzzzzzz")})
    result = run_registrator(workdir, *batch_args(2), env=env)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "refused (HTTP 403" in line and "the platform does not know this API key" in line
    assert list(workdir.iterdir()) == []


# Time and signals ------------------------------------------------------------------------------------------------

@pytest.fixture
def dripping_server(tmp_path):
    """A TLS server that answers every request with a byte every 0.2 s, forever (until the test ends)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "drip-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=drip, args=(raw,), daemon=True).start()

    def drip(raw):
        try:
            with context.wrap_socket(raw, server_side=True) as connection:
                connection.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}" * 100:
                    if stop.is_set():
                        return
                    connection.sendall(bytes([byte]))
                    time.sleep(0.2)
        except OSError:
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}", str(ca_file)
    stop.set()
    thread.join()
    listener.close()


@pytest.mark.slow
def test_timeout_bounds_the_whole_answer_of_a_server_that_drips(fake_platform, workdir, dripping_server):
    address, ca_file = dripping_server
    env = clean_environment(**{**fake_platform.env(), **dict(WIOTP_OPTIONS_HTTP_HOST=address, REQUESTS_CA_BUNDLE=ca_file)})
    started = time.monotonic()
    result = run_registrator(workdir, *batch_args(1), "--timeout", "1.5", "--retries", "1", env=env, timeout=60)
    elapsed = time.monotonic() - started

    assert result.returncode == 1
    assert "no answer in time" in result.stderr and "2 attempts" in result.stderr
    assert elapsed < 15  # two attempts of 1.5 s and a backoff, not a byte a second forever
    assert list(workdir.iterdir()) == []


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c_with_the_report_and_the_tokens_kept(fake_platform, workdir):
    fake_platform.delay_responses(1.5, path="/bulk/devices/add")
    process = subprocess.Popen(registrator_command(*batch_args(3)), cwd=workdir, text=True,
                               env=clean_environment(**fake_platform.env()),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    applied = threading.Event()
    fake_platform.on_bulk_add = lambda device_ids: applied.set()
    assert applied.wait(20)
    process.terminate()
    _, stderr = process.communicate(timeout=30)
    fake_platform.on_bulk_add = None

    assert process.returncode == 130
    [line] = stderr.splitlines()
    assert line.startswith("deviceRegistrator.py: error: registration stopped: interrupted; 3 devices may or may "
                           "not be registered")
    report = [json.loads(x) for x in (workdir / BATCH_DIR / "registration-report.jsonl").read_text().splitlines()]
    assert {entry["outcome"] for entry in report} == {"pending"}
    fake_platform.delay_responses(0, path="/bulk/devices/add")
    rerun = run_registrator(workdir, *batch_args(3), fake=fake_platform)
    assert rerun.returncode == 0, rerun.stderr
    assert stored_tokens(workdir) == platform_tokens(fake_platform) and len(stored_tokens(workdir)) == 3


# Limits ----------------------------------------------------------------------------------------------------------

def limit_memory(megabytes):
    def apply():
        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


@pytest.mark.parametrize("count", ["1000000000000", "10000000", "100001"])
def test_a_huge_batch_is_refused_at_once_under_a_memory_limit(fake_platform, workdir, count):
    result = subprocess.run(registrator_command("-b", "190523", "-n", count), cwd=workdir,
                            env=clean_environment(**fake_platform.env()), capture_output=True, text=True,
                            timeout=60, preexec_fn=limit_memory(400))
    assert result.returncode == 2
    assert f"argument -n/--numberOfDevices: {count!r} is more devices than one batch may hold (100,000)" in result.stderr
    assert list(workdir.iterdir()) == [] and fake_platform.requests == []


def peak_memory_mb(command, **kwargs):
    """Run `command` in a child of its own and return (completed process, the child's peak RSS in MB)."""
    measured = subprocess.run(
        [sys.executable, "-c", "import json, resource, subprocess, sys; "
         "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
         "print(json.dumps([done.returncode, done.stdout[-2000:], done.stderr[-2000:], "
         "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))", *command],
        capture_output=True, text=True, check=True, **kwargs)
    returncode, stdout, stderr, peak_kb = json.loads(measured.stdout)
    return subprocess.CompletedProcess(command, returncode, stdout, stderr), peak_kb / 1024


@pytest.mark.slow
def test_memory_stays_flat_in_the_batch_size(fake_platform, tmp_path):
    peaks = {}
    for count in (20_000, 100_000):
        project = tmp_path / f"project-{count}"
        project.mkdir()
        result, peaks[count] = peak_memory_mb(registrator_command(*batch_args(count)), cwd=project,
                                              env=clean_environment(**fake_platform.env()), timeout=300)
        assert result.returncode == 0, result.stderr
        assert len(list((project / BATCH_DIR).glob("*.yaml"))) == count
        fake_platform.reset()
    # Five times the devices: the tokens are streamed into requests, so memory grows far less than fivefold.
    assert peaks[100_000] < 2 * peaks[20_000], peaks
