"""deviceRegistrator.py, run as a subprocess against the local fake platform over real HTTPS."""

import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import threading
import time

import pytest
import requests
import yaml
from wiotp.sdk.device import parseConfigFile as parse_device_config_file
from wiotp.sdk.gateway import parseConfigFile as parse_gateway_config_file

from conftest import clean_environment, kill_registrator_once_the_platform_applied, registrator_command, run_registrator
from devicefactory.pendingtokens import JOURNAL_NAME, PendingTokens
from devicefactory.registration import REPORT_NAME

BATCH_DIR = "localDeviceRegistry/device/iotpsutil/190523"


def batch_args(count, batch="190523", *extra):
    return ["--batchId", batch, "--numberOfDevices", str(count), *extra]


def stored_tokens(workdir, batch_dir=BATCH_DIR):
    """{deviceId: token} of every config file in the batch folder, read with yaml.safe_load."""
    tokens = {}
    for path in sorted((workdir / batch_dir).glob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        tokens[config["identity"]["deviceId"]] = config["auth"]["token"]
    return tokens


def platform_tokens(fake, type_id="iotpsutil"):
    return {device: fake.device(type_id, device)["authToken"] for device in fake.devices_of(type_id)}


def device_type(fake, type_id):
    response = requests.get(f"https://{fake.address}/api/v0002/device/types/{type_id}",
                            auth=(fake.api_key, fake.api_token), verify=fake.ca_file, timeout=10)
    assert response.status_code == 200
    return response.json()


def bulk_adds(fake):
    return [r for r in fake.requests if r["method"] == "POST" and r["path"].endswith("/bulk/devices/add")]


def report(workdir, batch_dir=BATCH_DIR):
    lines = (workdir / batch_dir / REPORT_NAME).read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(params=["current listing", "lagging listing"])
def listing(request, fake_platform):
    """Each recovery test runs twice: with a device listing that is current, and with one that lags two minutes
    behind new devices, as the real platform's search index can (a single device's GET still finds it)."""
    if request.param == "lagging listing":
        fake_platform.lag_listing(120)
    return request.param


def assert_no_token_shown(fake, *texts, type_id="iotpsutil"):
    for token in platform_tokens(fake, type_id).values():
        for text in texts:
            assert token not in text


# A small batch, end to end -----------------------------------------------------------------

def test_registers_a_small_batch_and_writes_one_private_config_per_device(fake_platform, workdir):
    result = run_registrator(workdir, *batch_args(3, "190523", "--typeId", "iotpsutil", "--classId", "Device"), fake=fake_platform)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:3] == [
        "Device registration success: iotpsutil:190523-0001",
        "Device registration success: iotpsutil:190523-0002",
        "Device registration success: iotpsutil:190523-0003",
    ]
    assert "3 registered, 0 already present, 0 failed" in result.stdout
    assert result.stderr == ""
    assert stored_tokens(workdir) == platform_tokens(fake_platform)
    assert sorted(stored_tokens(workdir)) == ["190523-0001", "190523-0002", "190523-0003"]
    assert_no_token_shown(fake_platform, result.stdout, result.stderr, (workdir / BATCH_DIR / REPORT_NAME).read_text())
    # The device type was created with the class asked for.
    assert device_type(fake_platform, "iotpsutil")["classId"] == "Device"
    # Private: 0600 files in 0700 folders, and nothing half-written left behind.
    for folder in ["localDeviceRegistry/device", "localDeviceRegistry/device/iotpsutil", BATCH_DIR]:
        assert stat.S_IMODE((workdir / folder).stat().st_mode) == 0o700
    for path in (workdir / BATCH_DIR).iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert not path.name.endswith(".tmp")
    assert not (workdir / BATCH_DIR / JOURNAL_NAME).exists()
    # Only HTTPS requests through the configured host reached the fake, with the platform's paths.
    assert {r["path"].split("?")[0] for r in fake_platform.requests} == {
        "/api/v0002/device/types/iotpsutil",
        "/api/v0002/device/types",
        "/api/v0002/bulk/devices/add",
    }


def test_configs_are_what_wiotp_sdk_device_and_gateway_clients_read(fake_platform, workdir):
    env = clean_environment(**fake_platform.env(), WIOTP_OPTIONS_DOMAIN="example.com")
    result = run_registrator(workdir, *batch_args(2, "b1", "-t", "gw_type", "-c", "Gateway"), env=env)
    assert result.returncode == 0, result.stderr

    path = workdir / "localDeviceRegistry/gateway/gw_type/b1/b1-0002.yaml"
    config = parse_gateway_config_file(str(path))
    assert (config.orgId, config.typeId, config.deviceId) == (fake_platform.org_id, "gw_type", "b1-0002")
    assert config["auth"]["token"] == fake_platform.device("gw_type", "b1-0002")["authToken"]
    assert config["options"]["domain"] == "example.com"
    assert device_type(fake_platform, "gw_type")["classId"] == "Gateway"

    plain = run_registrator(workdir, *batch_args(1, "b2"), fake=fake_platform)
    assert plain.returncode == 0, plain.stderr
    device_config = parse_device_config_file(str(workdir / "localDeviceRegistry/device/iotpsutil/b2/b2-0001.yaml"))
    assert device_config.deviceId == "b2-0001"
    assert "options:" not in (workdir / "localDeviceRegistry/device/iotpsutil/b2/b2-0001.yaml").read_text()


def test_an_existing_type_of_another_class_is_refused(fake_platform, workdir):
    fake_platform.preregister("iotpsutil", [], class_id="Gateway")
    result = run_registrator(workdir, *batch_args(2), fake=fake_platform)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        "device type iotpsutil exists on the platform with class Gateway, not Device: give --classId Gateway")
    assert bulk_adds(fake_platform) == []


# Large batches stay under the request limit -------------------------------------------------------------

@pytest.mark.slow
def test_a_batch_of_20000_is_sent_in_the_fewest_requests_under_512_000_bytes(fake_platform, workdir):
    # "512 kB" read the stricter way (512,000 bytes, not 524,288): a request over it would get a 413 here.
    fake_platform.max_request_bytes = 512_000
    result = run_registrator(workdir, *batch_args(20000), fake=fake_platform, timeout=300)

    assert result.returncode == 0, result.stderr
    adds = bulk_adds(fake_platform)
    assert all(r["status"] == 201 and r["bytes"] <= 512_000 for r in adds)
    total = sum(r["bytes"] for r in adds)
    assert len(adds) <= -(-total // 512_000) + 1
    assert max(r["bytes"] for r in adds) > 500_000  # filled up to the limit, not far under it
    assert len(stored_tokens(workdir)) == 20000
    assert stored_tokens(workdir) == platform_tokens(fake_platform)
    assert "20000 registered, 0 already present, 0 failed" in result.stdout
    assert "Device registration success" not in result.stdout  # no line per device for a large batch
    assert "devices" not in result.stderr  # and no progress bar when the output is not a terminal


def test_a_413_splits_the_request_and_sends_the_halves(fake_platform, workdir):
    fake_platform.max_request_bytes = 1500  # about 10 devices per request
    result = run_registrator(workdir, *batch_args(40), fake=fake_platform)

    assert result.returncode == 0, result.stderr
    statuses = [r["status"] for r in bulk_adds(fake_platform)]
    assert statuses[0] == 413 and statuses.count(201) >= 4
    assert stored_tokens(workdir) == platform_tokens(fake_platform)
    assert len(stored_tokens(workdir)) == 40


@pytest.mark.slow
def test_two_registrations_racing_on_a_new_type_both_go_on(fake_platform, workdir):
    # Both look the type up before either creates it (the lookups are answered late): one creation gets 201, the
    # other 409 "already exists", which means the type is there: that run reads it again, checks its class and
    # goes on.
    fake_platform.delay_responses(2, path="/device/types/racetype")
    first, second = workdir / "first", workdir / "second"
    runs = []
    for folder, batch in ((first, "b1"), (second, "b2")):
        folder.mkdir()
        runs.append(subprocess.Popen(registrator_command("-b", batch, "-n", "3", "-t", "racetype"), cwd=folder,
                                     env=clean_environment(**fake_platform.env()), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True))
    results = [run.communicate(timeout=120) + (run.returncode,) for run in runs]
    assert [code for _, _, code in results] == [0, 0], results
    answers = [(r["method"], r["path"], r["status"]) for r in fake_platform.requests]
    creations = [status for method, path, status in answers if (method, path) == ("POST", "/api/v0002/device/types")]
    assert sorted(creations) == [201, 409]
    lookups = [status for method, path, status in answers if (method, path) == ("GET", "/api/v0002/device/types/racetype")]
    assert sorted(lookups) == [200, 404, 404]  # the run that got 409 read the type again
    assert device_type(fake_platform, "racetype")["classId"] == "Device"
    assert len(stored_tokens(first, "localDeviceRegistry/device/racetype/b1")) == 3
    assert len(stored_tokens(second, "localDeviceRegistry/device/racetype/b2")) == 3
    assert len(fake_platform.devices_of("racetype")) == 6


def test_a_409_on_type_creation_for_a_type_of_another_class_is_refused(fake_platform, workdir):
    # The type appears between the lookup (its 404 injected: it "did not exist yet") and the creation, as a Gateway
    # type: the 409 makes the run read it again, and the class check still applies.
    fake_platform.preregister("racetype", [], class_id="Gateway")
    fake_platform.fail_next(1, status=404, path="/device/types/racetype")
    result = run_registrator(workdir, "-b", "b1", "-n", "2", "-t", "racetype", fake=fake_platform)
    assert result.returncode == 1, result.stderr  # as when the lookup finds it at once
    assert result.stderr.strip().endswith("device type racetype exists on the platform with class Gateway, not Device: "
                                          "give --classId Gateway")
    assert [(r["method"], r["status"]) for r in fake_platform.requests] == [("GET", 404), ("POST", 409), ("GET", 200)]
    assert bulk_adds(fake_platform) == []


# No token is ever lost, even to kill -9 ------------------------------------------------------------------

@pytest.mark.slow
def test_kill_9_after_the_platform_registered_but_before_the_answer_arrives(fake_platform, workdir, listing):
    process = kill_registrator_once_the_platform_applied(workdir, fake_platform, *batch_args(30))
    assert process.returncode == -signal.SIGKILL
    assert len(fake_platform.devices_of("iotpsutil")) == 30  # registered, and the answer never read
    assert stored_tokens(workdir) == {}
    assert stat.S_IMODE((workdir / BATCH_DIR / JOURNAL_NAME).stat().st_mode) == 0o600

    rerun = run_registrator(workdir, *batch_args(30), fake=fake_platform)

    assert rerun.returncode == 0, rerun.stderr
    assert stored_tokens(workdir) == platform_tokens(fake_platform)
    assert len(stored_tokens(workdir)) == 30
    assert rerun.stdout.count("(recovered from an interrupted run)") == 30
    assert not (workdir / BATCH_DIR / JOURNAL_NAME).exists()
    assert {line["outcome"] for line in report(workdir)} == {"recovered"}


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_seconds", [0.3, 0.6, 0.9, 1.4])
def test_kill_9_at_any_moment_then_a_rerun_leaves_every_device_with_its_token(fake_platform, workdir, kill_after_seconds,
                                                                               listing):
    # Small requests (413 splits) and slow answers make a run of ~2 s with many moments to die in.
    fake_platform.max_request_bytes = 1200
    fake_platform.delay_responses(0.05)
    process = subprocess.Popen(
        registrator_command(*batch_args(120)), cwd=workdir, env=clean_environment(**fake_platform.env()),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(kill_after_seconds)
    process.kill()
    process.wait()

    # Whatever the platform holds already has its token on disk: in its config, or pending in the journal.
    on_disk = {device: token for device, (token, _) in PendingTokens(workdir / BATCH_DIR).load().items()}
    on_disk.update(stored_tokens(workdir))
    assert {d: t for d, t in on_disk.items() if d in platform_tokens(fake_platform)} == platform_tokens(fake_platform)
    fake_platform.delay_responses(0)
    rerun = run_registrator(workdir, *batch_args(120), fake=fake_platform)

    assert rerun.returncode == 0, rerun.stderr
    assert stored_tokens(workdir) == platform_tokens(fake_platform)
    assert len(stored_tokens(workdir)) == 120


@contextlib.contextmanager
def small_disk(folder, size):
    """A tmpfs of `size` mounted on `folder`: a disk that really fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=700", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.slow
def test_a_full_disk_after_registration_keeps_the_tokens_until_a_rerun_writes_them(fake_platform, workdir):
    with small_disk(workdir / "localDeviceRegistry", "64k") as registry:
        result = run_registrator(workdir, *batch_args(40), fake=fake_platform)

        assert result.returncode == 1
        error_lines = result.stderr.strip().splitlines()
        assert "the disk is full" in error_lines[-1]
        assert "run the same command again to finish" in error_lines[-1]
        assert len(fake_platform.devices_of("iotpsutil")) == 40
        assert len(stored_tokens(workdir)) < 40

        subprocess.run(["mount", "-o", "remount,size=1m", str(registry)], check=True)
        rerun = run_registrator(workdir, *batch_args(40), fake=fake_platform)

        assert rerun.returncode == 0, rerun.stderr
        assert stored_tokens(workdir) == platform_tokens(fake_platform)
        assert len(stored_tokens(workdir)) == 40


def test_a_full_disk_before_sending_sends_nothing(fake_platform, workdir):
    # Room for the folders but not for the journal of 2,000 tokens.
    with small_disk(workdir / "localDeviceRegistry", "20k"):
        result = run_registrator(workdir, *batch_args(2000), fake=fake_platform)
        assert result.returncode == 1
        assert "the disk is full" in result.stderr
        assert bulk_adds(fake_platform) == []
        assert fake_platform.devices_of("iotpsutil") == []


# Re-runs are idempotent ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_rerun_sends_nothing_again_and_leaves_the_files_untouched(fake_platform, workdir):
    assert run_registrator(workdir, *batch_args(3), fake=fake_platform).returncode == 0
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_text()) for p in (workdir / BATCH_DIR).glob("*.yaml")}
    fake_platform.requests.clear()

    rerun = run_registrator(workdir, *batch_args(5), fake=fake_platform)

    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.splitlines()[:5] == [
        "Device already registered: iotpsutil:190523-0001 (its config is kept)",
        "Device already registered: iotpsutil:190523-0002 (its config is kept)",
        "Device already registered: iotpsutil:190523-0003 (its config is kept)",
        "Device registration success: iotpsutil:190523-0004",
        "Device registration success: iotpsutil:190523-0005",
    ]
    [add] = bulk_adds(fake_platform)
    assert add["status"] == 201
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_text()) for p in (workdir / BATCH_DIR).glob("*.yaml")}
    assert {name: after[name] for name in before} == before
    assert stored_tokens(workdir) == platform_tokens(fake_platform)

    fake_platform.requests.clear()
    third = run_registrator(workdir, *batch_args(5), fake=fake_platform)
    assert third.returncode == 0 and fake_platform.requests == []


# Partial failure ----------------------------------------------------------------------------------------------

def test_devices_the_platform_refuses_are_named_reported_and_never_look_registered(fake_platform, workdir):
    fake_platform.preregister("iotpsutil", ["190523-0002"])
    result = run_registrator(workdir, *batch_args(3), fake=fake_platform)

    assert result.returncode == 3
    lines = result.stdout.splitlines()
    assert lines[0] == "Device registration success: iotpsutil:190523-0001"
    assert lines[1] == ("Device registration failed: iotpsutil:190523-0002: the platform already holds this device, "
                        "registered by someone else (its metadata does not carry this run's nonce): its token is "
                        "not ours")
    assert "2 registered, 0 already present, 1 failed" in result.stdout
    assert sorted(stored_tokens(workdir)) == ["190523-0001", "190523-0003"]
    lines = report(workdir)
    assert [(line["deviceId"], line["outcome"]) for line in lines] == [
        ("190523-0001", "registered"), ("190523-0002", "failed"), ("190523-0003", "registered")]
    assert "already holds this device" in lines[1]["reason"] and lines[0]["reason"] is None
    assert not (workdir / BATCH_DIR / JOURNAL_NAME).exists()
    assert_no_token_shown(fake_platform, result.stdout, (workdir / BATCH_DIR / REPORT_NAME).read_text())

    rerun = run_registrator(workdir, *batch_args(3), fake=fake_platform)
    assert rerun.returncode == 3
    assert [line for line in rerun.stdout.splitlines() if "0002" in line][0].startswith(
        "Device registration failed: iotpsutil:190523-0002: the platform already holds this device")
    assert "190523-0002" not in stored_tokens(workdir)


def test_failures_of_a_large_batch_are_listed_in_the_summary(fake_platform, workdir):
    fake_platform.preregister("iotpsutil", ["190523-0150", "190523-0151"])
    result = run_registrator(workdir, *batch_args(200), fake=fake_platform)
    assert result.returncode == 3
    assert "198 registered, 0 already present, 2 failed." in result.stdout
    assert "  failed: iotpsutil:190523-0150: the platform already holds this device" in result.stdout
    assert "  failed: iotpsutil:190523-0151: the platform already holds this device" in result.stdout


# Transient failures are retried, refusals are not ---------------------------------------------------------

@pytest.mark.slow
def test_5xx_and_429_are_retried_with_backoff(fake_platform, workdir):
    fake_platform.fail_next(2, status=503, path="/bulk/devices/add")
    fake_platform.fail_next(1, status=429, path="/bulk/devices/add", retry_after=1)
    started = time.monotonic()
    result = run_registrator(workdir, *batch_args(5), fake=fake_platform)

    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 1  # Retry-After was honoured
    assert [r["status"] for r in bulk_adds(fake_platform)][-1] == 201
    assert result.stderr.count("warning: register 5 devices: HTTP") == 3
    assert stored_tokens(workdir) == platform_tokens(fake_platform)


@pytest.mark.slow
@pytest.mark.parametrize("failure", [{"status": 502}, {"status": 504}, {"drop_connection": True}])
def test_a_retried_request_that_had_been_applied_loses_and_duplicates_nothing(fake_platform, workdir, failure,
                                                                               listing):
    fake_platform.fail_next(1, path="/bulk/devices/add", after_processing=True, **failure)
    result = run_registrator(workdir, *batch_args(4), fake=fake_platform)

    assert result.returncode == 0, result.stderr
    assert stored_tokens(workdir) == platform_tokens(fake_platform)
    assert len(stored_tokens(workdir)) == 4
    assert result.stdout.count("(recovered from an interrupted run)") == 4


@pytest.mark.slow
def test_a_platform_that_stops_answering_leaves_the_tokens_pending_for_a_rerun(fake_platform, workdir):
    fake_platform.delay_responses(2, path="/bulk/devices/add")
    result = run_registrator(workdir, *batch_args(4), "--timeout", "0.5", "--retries", "1", fake=fake_platform)

    assert result.returncode == 1
    assert "no answer in time" in result.stderr
    assert "4 devices may or may not be registered" in result.stderr
    assert "Traceback" not in result.stderr
    assert {line["outcome"] for line in report(workdir)} == {"pending"}

    fake_platform.delay_responses(0)
    rerun = run_registrator(workdir, *batch_args(4), fake=fake_platform)
    assert rerun.returncode == 0, rerun.stderr
    assert stored_tokens(workdir) == platform_tokens(fake_platform)
    assert len(stored_tokens(workdir)) == 4


def test_wrong_credentials_give_one_clear_line(fake_platform, workdir):
    env = clean_environment(**dict(fake_platform.env(), WIOTP_API_TOKEN="wrong-token"))
    result = run_registrator(workdir, *batch_args(2), env=env)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(
        "deviceRegistrator.py: error: registration stopped: cannot look up device type iotpsutil: "
        "authentication failed: the API token is not the one of this API key: check WIOTP_API_TOKEN (HTTP 401")
    assert list(workdir.iterdir()) == []  # refused at the first request: no folder, no lock, no report


@pytest.mark.parametrize("status, message", [
    (400, "the platform refused the request (HTTP 400: FAKE9999E"),
    (403, "refused (HTTP 403: FAKE9999E: injected failure (FakePlatform.fail_next)): the platform does not know "
          "this API key (check WIOTP_API_KEY and the organisation), its role may not do this, or the "
          "organisation's device limit is reached"),
])
def test_refusals_are_not_retried_and_give_one_clear_line(fake_platform, workdir, status, message):
    fake_platform.fail_next(1, status=status, path="/bulk/devices/add")
    result = run_registrator(workdir, *batch_args(2), fake=fake_platform)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("deviceRegistrator.py: error: registration stopped: cannot register 2 devices: " + message)
    # A definite refusal: running again as it is cannot help, so the advice is to fix the cause first.
    assert line.endswith("once the cause is fixed, run the same command again to settle them")
    assert "may or may not be registered" not in line
    assert len(bulk_adds(fake_platform)) == 1


def test_the_organisations_device_limit_gives_one_clear_line(fake_platform, workdir):
    fake_platform.device_limit = 3
    result = run_registrator(workdir, *batch_args(5), fake=fake_platform)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "the organisation's device limit is reached (HTTP 403" in line
    assert fake_platform.devices_of("iotpsutil") == []
    assert stored_tokens(workdir) == {}


def test_an_unknown_ca_is_refused_and_reported(fake_platform, workdir):
    env = clean_environment(**fake_platform.env())
    del env["REQUESTS_CA_BUNDLE"]
    result = run_registrator(workdir, *batch_args(2), env=env)
    assert result.returncode == 1
    assert "TLS verification of https://" in result.stderr and "REQUESTS_CA_BUNDLE" in result.stderr
    assert fake_platform.requests == []


# Bad input is refused before anything is sent or written ----------------------------------------------------

@pytest.mark.parametrize(
    "args, message",
    [
        (["-b", "a/b", "-n", "2"], "batchId 'a/b' may hold only letters, digits, '-', '_' and '.'"),
        (["-b", "..", "-n", "2"], "batchId '..' cannot be '.' or '..'"),
        (["-b", "x", "-n", "2", "-t", "x;rm"], "typeId 'x;rm' may hold only letters"),
        (["-b", "x", "-n", "2", "-t", "t" * 37], "typeId '" + "t" * 37 + "' is 37 characters long"),
        (["-b", "x", "-n", "0"], "'0' is not a positive whole number"),
        (["-b", "x", "-n", "2.5"], "'2.5' is not a positive whole number"),
        (["-b", "x", "-n", "2", "-c", "Thing"], "invalid choice: 'Thing'"),
        (["-b", "b" * 31, "-n", "10000"], "the last deviceId '" + "b" * 31 + "-10000' would exceed 36 characters"),
        (["-b", "x", "-n", "2", "--batchid", "y"], "unrecognized arguments: --batchid y"),
    ],
)
def test_bad_arguments_are_refused_with_usage(fake_platform, workdir, args, message):
    result = run_registrator(workdir, *args, fake=fake_platform)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: deviceRegistrator.py")
    assert message in result.stderr.splitlines()[-1]
    assert list(workdir.iterdir()) == [] and fake_platform.requests == []


@pytest.mark.parametrize(
    "drop, change, message",
    [
        (["WIOTP_API_KEY", "WIOTP_API_TOKEN"], {}, "missing credentials: set WIOTP_API_KEY and WIOTP_API_TOKEN"),
        (["WIOTP_API_TOKEN"], {}, "missing credentials: set WIOTP_API_TOKEN (an API key and its token)"),
        ([], {"WIOTP_AUTH_KEY": "a-org-1234"}, "missing credentials: set WIOTP_AUTH_TOKEN"),
        ([], {"WIOTP_API_KEY": "nokey"}, "WIOTP_API_KEY does not look like an API key"),
        ([], {"WIOTP_OPTIONS_HTTP_HOST": "https://x/"}, "WIOTP_OPTIONS_HTTP_HOST must be host[:port]"),
        ([], {"WIOTP_OPTIONS_HTTP_HOST": "localhost:99999"}, "WIOTP_OPTIONS_HTTP_HOST must be host[:port]"),
        ([], {"WIOTP_OPTIONS_LOGLEVEL": "loud"}, "WIOTP_OPTIONS_LOGLEVEL must be one of"),
    ],
)
def test_bad_environment_is_refused_naming_the_variable(fake_platform, workdir, drop, change, message):
    env = clean_environment(**fake_platform.env())
    for name in drop:
        del env[name]
    env.update(change)
    result = run_registrator(workdir, *batch_args(2), env=env)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("deviceRegistrator.py: error: ") and message in line
    assert list(workdir.iterdir()) == [] and fake_platform.requests == []


def test_auth_key_variables_are_read_as_parse_env_vars_reads_them(fake_platform, workdir):
    env = clean_environment(**fake_platform.env())
    env["WIOTP_AUTH_KEY"], env["WIOTP_AUTH_TOKEN"] = env.pop("WIOTP_API_KEY"), env.pop("WIOTP_API_TOKEN")
    result = run_registrator(workdir, *batch_args(1), env=env)
    assert result.returncode == 0, result.stderr


# Output, locking and interruption --------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_large_batch_shows_a_progress_bar_on_a_terminal(fake_platform, workdir):
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        registrator_command(*batch_args(500)), cwd=workdir, env=clean_environment(**fake_platform.env()),
        stdout=subprocess.PIPE, stderr=follower, text=True,
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    stdout, _ = process.communicate(timeout=60)
    os.close(leader)
    assert process.returncode == 0
    screen = output.decode()
    # tqdm's bar: count, rate and time left as it goes, a full bar at the end.
    assert re.search(r"\| *\d+/500 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+device/s\]", screen)
    assert re.search(r"100%\|█+\| 500/500 \[", screen)
    assert "500 registered, 0 already present, 0 failed." in stdout
    assert_no_token_shown(fake_platform, screen, stdout)


@pytest.mark.slow
def test_two_runs_on_one_batch_at_once_are_refused(fake_platform, workdir):
    fake_platform.delay_responses(1.0, path="/bulk/devices/add")
    first = subprocess.Popen(registrator_command(*batch_args(3)), cwd=workdir,
                             env=clean_environment(**fake_platform.env()), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not bulk_adds(fake_platform) and not fake_platform.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    second = run_registrator(workdir, *batch_args(3), fake=fake_platform)
    first.communicate(timeout=60)
    assert first.returncode == 0
    assert second.returncode == 1
    assert ("another deviceRegistrator.py, deviceDecommissioner.py or deviceDeployer.py is working on this batch"
            in second.stderr)


@pytest.mark.slow
def test_ctrl_c_stops_with_one_line_and_keeps_the_tokens(fake_platform, workdir, listing):
    fake_platform.delay_responses(1.5, path="/bulk/devices/add")
    process = subprocess.Popen(registrator_command(*batch_args(3)), cwd=workdir, text=True,
                               env=clean_environment(**fake_platform.env()), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    applied = threading.Event()
    fake_platform.on_bulk_add = lambda device_ids: applied.set()
    assert applied.wait(20)  # the platform holds the devices; their answer is 1.5 s away
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert stderr.splitlines()[-1].startswith("deviceRegistrator.py: error: registration stopped: interrupted; 3 devices")
    assert "Traceback" not in stderr

    fake_platform.delay_responses(0, path="/bulk/devices/add")
    rerun = run_registrator(workdir, *batch_args(3), fake=fake_platform)
    assert rerun.returncode == 0, rerun.stderr
    assert stored_tokens(workdir) == platform_tokens(fake_platform) and len(stored_tokens(workdir)) == 3


def test_a_journal_line_whose_config_was_already_written_is_settled(fake_platform, workdir):
    assert run_registrator(workdir, *batch_args(2), fake=fake_platform).returncode == 0
    tokens = stored_tokens(workdir)
    # As a crash between writing the config and removing the journal leaves it, plus a token of a larger run.
    (workdir / BATCH_DIR / JOURNAL_NAME).write_text(
        json.dumps({"id": "190523-0001", "token": tokens["190523-0001"], "nonce": "n1"}) + "\n"
        + json.dumps({"id": "190523-0009", "token": "Ab1!cdefgh", "nonce": "n1"}) + "\n")

    rerun = run_registrator(workdir, *batch_args(2), fake=fake_platform)

    assert rerun.returncode == 0
    assert "warning: pending from an earlier run: 1 token of devices beyond --numberOfDevices 2:" in rerun.stderr
    assert stored_tokens(workdir) == tokens
    assert PendingTokens(workdir / BATCH_DIR).load() == {"190523-0009": ("Ab1!cdefgh", "n1")}  # 0001's line is gone
    rerun_larger = run_registrator(workdir, *batch_args(9), fake=fake_platform)
    assert rerun_larger.returncode == 0, rerun_larger.stderr
    assert not (workdir / BATCH_DIR / JOURNAL_NAME).exists()
    assert stored_tokens(workdir)["190523-0009"] == "Ab1!cdefgh" == fake_platform.device("iotpsutil", "190523-0009")["authToken"]


def test_a_temporary_file_left_by_a_killed_write_is_removed(fake_platform, workdir):
    assert run_registrator(workdir, *batch_args(1), fake=fake_platform).returncode == 0
    stale = workdir / BATCH_DIR / ".190523-0002.yaml.4242.tmp"
    stale.write_text("identity: {}\n")
    assert run_registrator(workdir, *batch_args(2), fake=fake_platform).returncode == 0
    assert not stale.exists()
    assert sorted(p.name for p in (workdir / BATCH_DIR).iterdir()) == [
        "190523-0001.yaml", "190523-0002.yaml", "registration-report.jsonl"]


def test_many_devices_to_check_are_looked_up_by_listing_not_one_by_one(fake_platform, workdir):
    # A lost local registry: the platform holds the whole batch, and nothing here holds a token.
    fake_platform.preregister("iotpsutil", [f"190523-{n:04d}" for n in range(1, 301)])
    result = run_registrator(workdir, *batch_args(300), fake=fake_platform)

    assert result.returncode == 3
    assert "0 registered, 0 already present, 300 failed." in result.stdout
    lookups = [r for r in fake_platform.requests if r["method"] == "GET" and "/devices" in r["path"]]
    assert len(lookups) == 6  # 300 devices in pages of 50, not 300 GETs
    assert stored_tokens(workdir) == {}
    assert {line["outcome"] for line in report(workdir)} == {"failed"}


@pytest.mark.slow
def test_a_lost_answer_for_many_devices_is_recovered_through_the_listing(fake_platform, workdir, listing):
    fake_platform.preregister("iotpsutil", [f"other-{n}" for n in range(20)])  # the type holds other devices too
    fake_platform.fail_next(1, status=503, path="/bulk/devices/add", after_processing=True)
    result = run_registrator(workdir, *batch_args(120), fake=fake_platform)

    assert result.returncode == 0, result.stderr
    assert "120 registered, 0 already present, 0 failed." in result.stdout
    assert stored_tokens(workdir) == {d: t for d, t in platform_tokens(fake_platform).items() if d.startswith("190523")}
    assert len(stored_tokens(workdir)) == 120
    lookups = [r for r in fake_platform.requests if r["method"] == "GET" and "/devices" in r["path"]]
    if listing == "current listing":
        assert len(lookups) == 3  # 140 devices of the type in pages of 50
    else:  # the listing shows none of the devices made in the last two minutes: each of ours is asked for alone
        assert len(lookups) == 1 + 120


@pytest.mark.slow
def test_in_a_crowded_type_each_device_to_check_is_asked_for_on_its_own(fake_platform, workdir):
    fake_platform.preregister("iotpsutil", [f"other-{n}" for n in range(3000)])
    fake_platform.fail_next(1, status=503, path="/bulk/devices/add", after_processing=True)
    result = run_registrator(workdir, *batch_args(60), fake=fake_platform)

    assert result.returncode == 0, result.stderr
    assert len(stored_tokens(workdir)) == 60
    lookups = [r["path"] for r in fake_platform.requests if r["method"] == "GET" and "/devices" in r["path"]]
    # One page of the listing shows 3,060 devices (62 pages): 60 single GETs are cheaper.
    assert lookups[0] == "/api/v0002/device/types/iotpsutil/devices" and len(lookups) == 1 + 60
