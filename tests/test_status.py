"""deviceStatus.py, run as a subprocess against the local fake platform over real HTTPS; states are set through
the fake's control interface."""

import os
import re
import subprocess
import sys
import threading
import time

import pytest
import requests

from conftest import (
    STATUS,
    clean_environment,
    kill_registrator_once_the_platform_applied,
    read_jsonl,
    read_terminal,
    run_decommissioner,
    run_registrator,
    run_status,
)

BATCH_DIR = "localDeviceRegistry/device/iotpsutil/19"
NO_STATE = "no connection recorded since monitoring was activated"  # what a device with no state is called


def status_requests(fake):
    return [(r["method"], r["path"]) for r in fake.requests]


def test_each_state_is_reported_with_the_grid_summary_actions_and_report(fake_platform, workdir):
    assert run_registrator(workdir, "-b", "19", "-n", "6", fake=fake_platform).returncode == 0
    fake_platform.connect("iotpsutil", ["19-0001", "19-0002", "19-0003"])
    fake_platform.disconnect("iotpsutil", ["19-0003"])
    (workdir / BATCH_DIR / "19-0004.yaml").unlink()  # on the platform, its token lost here
    # 19-0006 leaves the platform behind the factory's back; its config stays.
    requests.post(f"https://{fake_platform.address}/api/v0002/bulk/devices/remove",
                  json=[{"typeId": "iotpsutil", "deviceId": "19-0006"}], auth=(fake_platform.api_key, fake_platform.api_token),
                  verify=fake_platform.ca_file, timeout=10).raise_for_status()
    before = len(fake_platform.requests)

    result = run_status(workdir, "--batchId", "19", "--numberOfDevices", "6", fake=fake_platform)

    assert result.returncode == 3, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "=" * 49,
        "Device Connection State Report",
        "",
        "iotpsutil:19-x",
        "",
        "=" * 49,
        "connected (2): 0001-0002",
        "disconnected (1): 0003",
        "no connection recorded since monitoring was activated (2): 0004-0005",
        "not-on-platform (1): 0006",
        "no local config (1): 0004",
        "",
        "Batch 19 (6 devices of type iotpsutil, class Device): 2 connected, 1 disconnected, 2 with no connection "
        "recorded since monitoring was activated, 1 not on the platform; 5 with a local config.",
        "Needs action: 1 device on the platform without a local config, so their tokens are lost: remove them with "
        "deviceDecommissioner.py and register them again: iotpsutil:19-0004",
        "Needs action: 1 config whose device the platform does not hold: delete them and run deviceRegistrator.py "
        f"to register the devices again: {BATCH_DIR}/19-0006.yaml",
        f"Report: {BATCH_DIR}/status-report.jsonl",
    ]
    assert "\x1b" not in result.stdout  # piped: words, no escape codes
    report = read_jsonl(workdir / BATCH_DIR / "status-report.jsonl")
    assert [(r["deviceId"], r["state"], r["localConfig"]) for r in report] == [
        ("19-0001", "connected", True), ("19-0002", "connected", True), ("19-0003", "disconnected", True),
        ("19-0004", "no-connection-recorded", False), ("19-0005", "no-connection-recorded", True),
        ("19-0006", "not-on-platform", True)]
    state = fake_platform.connection_state("iotpsutil", "19-0003")
    # The platform's names and times (IBM's state document); null where it has none.
    times = ("lastConnectTime", "lastDisconnectTime", "lastActivityTime")
    assert [report[2][name] for name in times] == [state[name] for name in times]
    assert None not in [report[2][name] for name in times]
    assert report[0]["lastConnectTime"] is not None and report[0]["lastDisconnectTime"] is None
    assert [report[4][name] for name in times] == [None, None, None]
    text = (workdir / BATCH_DIR / "status-report.jsonl").read_text()
    for device in ("19-0001", "19-0005"):
        assert fake_platform.device("iotpsutil", device)["authToken"] not in text + result.stdout
    # The feature's setting, the type (its class must be the one asked for), one page of the type's devices
    # (19-0006, missing from it, is asked for on its own before it is called not on the platform; 19-0004, shown
    # with no config here, is asked for on its own before its token is called lost) and one page of the type's
    # connection states.
    assert status_requests(fake_platform)[before:] == [
        ("GET", "/api/v0002/config/clientstate"), ("GET", "/api/v0002/device/types/iotpsutil"),
        ("GET", "/api/v0002/device/types/iotpsutil/devices"), ("GET", "/api/v0002/device/types/iotpsutil/devices/19-0006"),
        ("GET", "/api/v0002/device/types/iotpsutil/devices/19-0004"),
        ("GET", "/api/v0002/clientconnectionstates")]


@pytest.mark.slow
def test_every_device_connected_exits_0(fake_platform, workdir):
    assert run_registrator(workdir, "-b", "19", "-n", "3", fake=fake_platform).returncode == 0
    fake_platform.connect("iotpsutil", ["19-0001", "19-0002", "19-0003"])
    result = run_status(workdir, "-b", "19", "-n", "3", fake=fake_platform)
    assert result.returncode == 0, result.stderr
    assert f"3 connected, 0 disconnected, 0 with {NO_STATE}, 0 not on the platform; 3 with a local config." in result.stdout


@pytest.mark.slow
def test_a_batch_whose_id_is_a_prefix_of_another_takes_in_none_of_its_devices(fake_platform, workdir):
    assert run_registrator(workdir, "-b", "190523", "-n", "12", fake=fake_platform).returncode == 0
    assert run_registrator(workdir, "-b", "19", "-n", "2", fake=fake_platform).returncode == 0
    fake_platform.connect("iotpsutil", [f"190523-{n:04d}" for n in range(1, 13)])
    fake_platform.preregister("iotpsutil", ["19-01", "19-0001x"])
    fake_platform.connect("iotpsutil", ["19-01", "19-0001x"])

    result = run_status(workdir, "-b", "19", "-n", "2", fake=fake_platform)

    assert result.returncode == 3
    assert f"0 connected, 0 disconnected, 2 with {NO_STATE}, 0 not on the platform; 2 with a local config." in result.stdout
    assert [r["deviceId"] for r in read_jsonl(workdir / BATCH_DIR / "status-report.jsonl")] == ["19-0001", "19-0002"]


@pytest.mark.slow
def test_ids_with_dashes_are_matched_exactly(fake_platform, workdir):
    args = ["-b", "eu-1", "-n", "3", "-t", "sensor-eu", "-c", "Gateway"]
    assert run_registrator(workdir, *args, fake=fake_platform).returncode == 0
    fake_platform.preregister("sensor-eu", ["eu-0001", "eu-1-00001", "eu-1-0001-0001"])
    fake_platform.connect("sensor-eu", ["eu-1-0002", "eu-0001", "eu-1-00001", "eu-1-0001-0001"])

    result = run_status(workdir, *args, fake=fake_platform)

    assert result.returncode == 3
    assert "connected (1): 0002" in result.stdout and f"{NO_STATE} (2): 0001, 0003" in result.stdout
    report = read_jsonl(workdir / "localDeviceRegistry/gateway/sensor-eu/eu-1/status-report.jsonl")
    assert [(r["deviceId"], r["state"]) for r in report] == [
        ("eu-1-0001", "no-connection-recorded"), ("eu-1-0002", "connected"), ("eu-1-0003", "no-connection-recorded")]


@pytest.mark.slow
def test_a_single_device_is_asked_for_by_its_gateway_client_id(fake_platform, workdir):
    args = ["-b", "eu-1", "-n", "1", "-t", "sensor-eu", "-c", "Gateway"]
    assert run_registrator(workdir, *args, fake=fake_platform).returncode == 0
    fake_platform.connect("sensor-eu", ["eu-1-0001"])
    before = len(fake_platform.requests)
    result = run_status(workdir, *args, fake=fake_platform)
    assert result.returncode == 0, result.stderr
    assert status_requests(fake_platform)[before:] == [
        ("GET", "/api/v0002/config/clientstate"),
        ("GET", "/api/v0002/device/types/sensor-eu"),
        ("GET", "/api/v0002/device/types/sensor-eu/devices/eu-1-0001"),
        ("GET", f"/api/v0002/clientconnectionstates/g:{fake_platform.org_id}:sensor-eu:eu-1-0001")]


@pytest.mark.parametrize("listing_when_off", [403, 200])
@pytest.mark.slow
def test_monitoring_off_gives_one_line_on_how_to_switch_it_on(fake_platform, workdir, listing_when_off):
    # Whatever /clientconnectionstates answers while the feature is off (a 403, or an empty listing), the status
    # report asks GET /config/clientstate and says how to activate the feature.
    assert run_registrator(workdir, "-b", "19", "-n", "2", fake=fake_platform).returncode == 0
    fake_platform.set_connection_monitoring(False, listing_when_off=listing_when_off)
    before = len(fake_platform.requests)
    result = run_status(workdir, "-b", "19", "-n", "2", fake=fake_platform)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("deviceStatus.py: error: the organisation's client connection state API is not active "
                           "(HTTP 403 on GET /api/v0002/config/clientstate), so the platform records no connection: "
                           "activate it with PUT /api/v0002/config/clientstate and the body {\"enabled\": true}, or on "
                           "the platform's Settings page (Activate Client Connection State API: On)")
    assert "client_state.html" in line and result.stdout == ""
    assert status_requests(fake_platform)[before:] == [("GET", "/api/v0002/config/clientstate")]  # asked once
    assert not (workdir / BATCH_DIR / "status-report.jsonl").exists()


@pytest.mark.slow
def test_a_403_on_the_states_while_monitoring_is_on_is_a_permission_of_the_key(fake_platform, workdir):
    assert run_registrator(workdir, "-b", "19", "-n", "3", fake=fake_platform).returncode == 0
    fake_platform.fail_next(1, status=403, path="/clientconnectionstates")
    result = run_status(workdir, "-b", "19", "-n", "3", fake=fake_platform)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line == ("deviceStatus.py: error: cannot list the connection states of type iotpsutil: refused (HTTP 403) "
                    "although the client connection state API is active: this API key may not read connection "
                    "states; use a key whose role may (check WIOTP_API_KEY)")


def test_a_platform_that_takes_pages_of_100_at_most_is_read_in_pages_of_100(fake_platform, workdir):
    devices = [f"19-{n:04d}" for n in range(1, 251)]
    fake_platform.preregister("iotpsutil", devices)
    fake_platform.connect("iotpsutil", devices[:200])
    fake_platform.max_page_size = 100
    result = run_status(workdir, "-b", "19", "-n", "250", fake=fake_platform)
    assert result.returncode == 3, result.stderr
    assert f"200 connected, 0 disconnected, 50 with {NO_STATE}" in result.stdout
    listings = [(r["path"], r["query"].split("_limit=")[1].split("&")[0], r["status"]) for r in fake_platform.requests
                if "_limit=" in r["query"]]
    devices_path, states_path = "/api/v0002/device/types/iotpsutil/devices", "/api/v0002/clientconnectionstates"
    # One refused page of 1000, then pages of 100 for the rest of the run: 3 of devices, 2 of states.
    assert listings == [(devices_path, "1000", 400)] + [(devices_path, "100", 200)] * 3 + [(states_path, "100", 200)] * 2
    assert "refused pages of 1000 (HTTP 400); asking for pages of 100" in result.stderr


def test_a_platform_that_takes_the_default_page_only_is_read_in_pages_of_25(fake_platform, workdir):
    devices = [f"19-{n:04d}" for n in range(1, 31)]
    fake_platform.preregister("iotpsutil", devices)
    fake_platform.connect("iotpsutil", devices)
    fake_platform.max_page_size = 25
    result = run_status(workdir, "-b", "19", "-n", "30", fake=fake_platform)
    assert "30 connected" in result.stdout
    sizes = [r["query"].split("_limit=")[1].split("&")[0] for r in fake_platform.requests if "_limit=" in r["query"]]
    assert sizes == ["1000", "100", "25", "25", "25", "25"]


@pytest.mark.slow
def test_a_lagging_listing_never_makes_a_device_not_on_the_platform(fake_platform, workdir):
    fake_platform.lag_listing(600)
    assert run_registrator(workdir, "-b", "19", "-n", "3", fake=fake_platform).returncode == 0
    fake_platform.connect("iotpsutil", ["19-0001"])
    result = run_status(workdir, "-b", "19", "-n", "3", fake=fake_platform)
    assert result.returncode == 3
    assert f"1 connected, 0 disconnected, 2 with {NO_STATE}, 0 not on the platform" in result.stdout
    singles = [r for r in fake_platform.requests if r["path"].startswith("/api/v0002/device/types/iotpsutil/devices/")]
    assert len(singles) >= 3  # the listing showed none of them: each was asked for


def test_request_counts_scale_to_thousands_of_devices(fake_platform, workdir):
    devices = [f"19-{n:04d}" for n in range(1, 2501)]
    fake_platform.preregister("iotpsutil", devices + [f"other-{n}" for n in range(300)])
    fake_platform.connect("iotpsutil", devices[:2000])
    result = run_status(workdir, "-b", "19", "-n", "2500", fake=fake_platform)
    assert result.returncode == 3
    assert f"2000 connected, 0 disconnected, 500 with {NO_STATE}, 0 not on the platform; 0 with a local config." in result.stdout
    # The type, then 2,800 devices and 2,000 states in pages of 1,000: the fewest requests the API allows.
    assert len(fake_platform.requests) == 1 + 1 + 3 + 2  # the clientstate setting first
    assert "No report written: localDeviceRegistry/device/iotpsutil/19 does not exist" in result.stdout
    assert not (workdir / "localDeviceRegistry").exists()  # status never makes the batch folder


def test_an_unsafe_batch_folder_is_refused(fake_platform, workdir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (workdir / "localDeviceRegistry/device/iotpsutil").mkdir(parents=True)
    (workdir / BATCH_DIR).symlink_to(elsewhere)
    result = run_status(workdir, "-b", "19", "-n", "2", fake=fake_platform)
    assert result.returncode == 1
    assert "refusing to keep tokens there" in result.stderr and "symbolic link" in result.stderr
    assert fake_platform.requests == [] and list(elsewhere.iterdir()) == []


def test_tls_verification_off_is_warned_about(fake_platform, workdir):
    env = clean_environment(**fake_platform.env(), WIOTP_OPTIONS_HTTP_VERIFY="false")
    result = run_status(workdir, "-b", "19", "-n", "1", env=env)
    assert "warning: TLS verification is off" in result.stderr


@pytest.mark.slow
def test_wait_polls_until_every_device_is_connected(fake_platform, workdir):
    assert run_registrator(workdir, "-b", "19", "-n", "3", fake=fake_platform).returncode == 0
    fake_platform.connect("iotpsutil", ["19-0001"])
    threading.Timer(1.0, fake_platform.connect, ("iotpsutil", ["19-0002", "19-0003"])).start()
    started = time.monotonic()
    result = run_status(workdir, "-b", "19", "-n", "3", "--wait", "30", fake=fake_platform)
    assert result.returncode == 0, result.stderr
    assert 2 <= time.monotonic() - started < 10  # the first poll after 2 s found them
    assert "Device connected: iotpsutil:19-0002\nDevice connected: iotpsutil:19-0003\n" in result.stdout
    assert "3 connected" in result.stdout


@pytest.mark.slow
def test_wait_ends_at_its_deadline(fake_platform, workdir):
    assert run_registrator(workdir, "-b", "19", "-n", "2", fake=fake_platform).returncode == 0
    fake_platform.connect("iotpsutil", ["19-0001"])
    started = time.monotonic()
    result = run_status(workdir, "-b", "19", "-n", "2", "--wait", "3", fake=fake_platform)
    elapsed = time.monotonic() - started
    assert result.returncode == 3
    assert 3 <= elapsed < 6  # polls at 2 s and 3 s (not 6 s: never past the deadline)
    states = [r for r in fake_platform.requests if r["path"] == "/api/v0002/clientconnectionstates/"
              f"d:{fake_platform.org_id}:iotpsutil:19-0002"]
    assert len(states) == 2


def test_the_grid_is_coloured_on_a_terminal(fake_platform, workdir):
    import pty

    assert run_registrator(workdir, "-b", "19", "-n", "12", fake=fake_platform).returncode == 0
    fake_platform.connect("iotpsutil", ["19-0001", "19-0002"])
    fake_platform.disconnect("iotpsutil", ["19-0002"])
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, str(STATUS), "-b", "19", "-n", "12"], cwd=workdir,
                               env=clean_environment(**fake_platform.env()), stdout=follower,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(follower)
    screen = read_terminal(leader).replace("\r\n", "\n")
    process.wait(timeout=60)
    assert process.returncode == 3
    assert f"\x1b[32mconnected\x1b[0m / \x1b[31mdisconnected\x1b[0m / {NO_STATE} / \x1b[33mnot-on-platform" in screen
    grid = [line for line in screen.splitlines() if re.match(r"(\x1b\[\d+m)?00", line)]
    assert len(grid) == 2  # ten numbers a line, as the original sample printed them
    assert grid[0].startswith("\x1b[32m0001 \x1b[0m \x1b[31m0002 \x1b[0m 0003 ")
    assert grid[1] == "0011  0012"


@pytest.mark.slow
def test_a_wrong_class_is_refused_before_it_names_another_batch(fake_platform, workdir):
    # Device and Gateway batches have their own folders here, but on the platform a device is its type and id:
    # a wrong --classId would report (and a decommission would remove) this batch's devices as having no config.
    assert run_registrator(workdir, "-b", "19", "-n", "2", fake=fake_platform).returncode == 0
    for script in (run_status, run_decommissioner):
        result = script(workdir, "-b", "19", "-n", "2", "-c", "Gateway", fake=fake_platform)
        assert result.returncode == 2
        assert result.stderr.endswith("device type iotpsutil exists on the platform with class Device, not Gateway: "
                                      "give --classId Device\n")
    assert fake_platform.devices_of("iotpsutil") == ["19-0001", "19-0002"]
    assert len(list((workdir / BATCH_DIR).glob("*.yaml"))) == 2


def test_tokens_pending_in_the_journal_are_not_called_lost(fake_platform, workdir):
    kill_registrator_once_the_platform_applied(workdir, fake_platform, "-b", "19", "-n", "3")

    result = run_status(workdir, "-b", "19", "-n", "3", fake=fake_platform)

    assert result.returncode == 3
    assert ("Needs action: 3 devices on the platform whose tokens are pending in the journal of an interrupted "
            "registration (nothing is lost): run deviceRegistrator.py again") in result.stdout
    assert "tokens are lost" not in result.stdout


@pytest.mark.slow
def test_devices_a_lagging_listing_still_shows_after_removal_are_not_called_lost(fake_platform, workdir):
    assert run_registrator(workdir, "-b", "19", "-n", "3", fake=fake_platform).returncode == 0
    fake_platform.lag_listing(120)
    assert run_decommissioner(workdir, "-b", "19", "-n", "3", "--yes", fake=fake_platform).returncode == 0

    result = run_status(workdir, "-b", "19", "-n", "3", fake=fake_platform)

    assert "0 not on the platform" not in result.stdout and "3 not on the platform" in result.stdout
    assert "tokens are lost" not in result.stdout


def test_a_wait_past_a_week_is_refused(fake_platform, workdir):
    result = run_status(workdir, "-b", "19", "-n", "1", "--wait", "1e308", fake=fake_platform)
    assert result.returncode == 2
    assert "argument --wait: '1e308' is more than 604800 seconds (a week)" in result.stderr
    assert fake_platform.requests == []
