"""deviceDecommissioner.py, run as a subprocess against the local fake platform over real HTTPS."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import (
    DECOMMISSIONER,
    clean_environment,
    kill_registrator_once_the_platform_applied,
    read_jsonl,
    run_decommissioner,
    run_registrator,
)
from devicefactory.pendingtokens import JOURNAL_NAME, PendingTokens

BATCH_DIR = "localDeviceRegistry/device/iotpsutil/19"


def configs(workdir, batch_dir=BATCH_DIR):
    return sorted(path.name for path in (workdir / batch_dir).glob("*.yaml"))


def removes(fake):
    return [r for r in fake.requests if r["path"] == "/api/v0002/bulk/devices/remove"]


def register(fake, workdir, count, batch="19", *extra):
    result = run_registrator(workdir, "-b", batch, "-n", str(count), *extra, fake=fake)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_removes_the_batch_and_its_configs_and_nothing_else(fake_platform, workdir):
    register(fake_platform, workdir, 4)
    register(fake_platform, workdir, 2, "190523")
    fake_platform.preregister("iotpsutil", ["19-0005", "19-01"])  # 19-0005: held, with no config here

    result = run_decommissioner(workdir, "--batchId", "19", "--numberOfDevices", "5", "--yes", fake=fake_platform)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Device removed: iotpsutil:19-0001",
        "Device removed: iotpsutil:19-0002",
        "Device removed: iotpsutil:19-0003",
        "Device removed: iotpsutil:19-0004",
        "Device removed: iotpsutil:19-0005",
        "Batch 19 (5 devices of type iotpsutil, class Device): 5 removed, 0 already gone, 0 failed; "
        "4 local configs deleted.",
        "  removed without a local config (their tokens were lost): iotpsutil:19-0005",
        f"Report: {BATCH_DIR}/decommission-report.jsonl",
    ]
    assert fake_platform.devices_of("iotpsutil") == ["19-01", "190523-0001", "190523-0002"]
    assert configs(workdir) == []
    assert configs(workdir, "localDeviceRegistry/device/iotpsutil/190523") == ["190523-0001.yaml", "190523-0002.yaml"]
    assert [(r["deviceId"], r["outcome"], r["hadConfig"]) for r in read_jsonl(workdir / BATCH_DIR / "decommission-report.jsonl")] == [
        ("19-0001", "removed", True), ("19-0002", "removed", True), ("19-0003", "removed", True),
        ("19-0004", "removed", True), ("19-0005", "removed", False)]
    [request] = removes(fake_platform)
    assert request["status"] == 202

    rerun = run_decommissioner(workdir, "-b", "19", "-n", "5", "--yes", fake=fake_platform)
    assert rerun.returncode == 0, rerun.stderr
    assert "0 removed, 5 already gone, 0 failed; 0 local configs deleted." in rerun.stdout


def test_ids_with_dashes_and_large_batches_in_requests_under_the_limit(fake_platform, workdir):
    fake_platform.preregister("sensor-eu", [f"eu-1-{n:04d}" for n in range(1, 301)] + ["eu-0001", "eu-1-00001"])
    fake_platform.max_request_bytes = 4000  # about 80 devices a request; the first is too large and split

    result = run_decommissioner(workdir, "-b", "eu-1", "-n", "300", "-t", "sensor-eu", "--yes", fake=fake_platform)

    assert result.returncode == 0, result.stderr
    assert "300 removed, 0 already gone, 0 failed; 0 local configs deleted." in result.stdout
    assert fake_platform.devices_of("sensor-eu") == ["eu-0001", "eu-1-00001"]
    # One request of the 300 is too large: 413s, then halves that fit.
    statuses = [r["status"] for r in removes(fake_platform)]
    assert statuses[0] == 413 and set(statuses) == {413, 202}
    assert all(r["bytes"] <= 4000 for r in removes(fake_platform) if r["status"] == 202)
    assert "No report written: localDeviceRegistry/device/sensor-eu/eu-1 does not exist" in result.stdout
    assert not (workdir / "localDeviceRegistry").exists()


@pytest.mark.slow
def test_5xx_and_429_are_retried_honouring_retry_after(fake_platform, workdir):
    register(fake_platform, workdir, 3)
    fake_platform.fail_next(1, status=503, path="/bulk/devices/remove", retry_after=1)
    fake_platform.fail_next(1, status=429, path="/bulk/devices/remove")
    started = time.monotonic()
    result = run_decommissioner(workdir, "-b", "19", "-n", "3", "--yes", fake=fake_platform)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 1
    assert result.stderr.count("warning: remove 3 devices: HTTP") == 2
    assert [r["status"] for r in removes(fake_platform)] == [503, 429, 202]
    assert configs(workdir) == [] and fake_platform.devices_of("iotpsutil") == []


@pytest.mark.parametrize("status", [400, 403])
def test_a_refused_request_stops_with_one_line_and_keeps_every_config(fake_platform, workdir, status):
    register(fake_platform, workdir, 3)
    fake_platform.fail_next(1, status=status, path="/bulk/devices/remove")
    result = run_decommissioner(workdir, "-b", "19", "-n", "3", "--yes", fake=fake_platform)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("deviceDecommissioner.py: error: decommission stopped: cannot remove 3 devices: ")
    assert f"(HTTP {status}" in line
    assert line.endswith("0 of 3 devices are off the platform (their configs deleted), the configs of the other 3 "
                         "are kept (3 may or may not be removed): once the cause is fixed, run the same command again "
                         "to finish")
    assert len(removes(fake_platform)) == 1
    assert configs(workdir) == ["19-0001.yaml", "19-0002.yaml", "19-0003.yaml"]
    assert {r["outcome"] for r in read_jsonl(workdir / BATCH_DIR / "decommission-report.jsonl")} == {"unconfirmed"}


@pytest.mark.parametrize("failure", [{"status": 503}, {"drop_connection": True}])
@pytest.mark.slow
def test_a_lost_answer_after_processing_ends_with_each_device_looked_up(fake_platform, workdir, failure):
    register(fake_platform, workdir, 3)
    fake_platform.fail_next(1, path="/bulk/devices/remove", after_processing=True, retry_after=0, **failure)
    result = run_decommissioner(workdir, "-b", "19", "-n", "3", "--yes", fake=fake_platform)
    assert result.returncode == 0, result.stderr
    assert "0 removed, 3 already gone, 0 failed; 3 local configs deleted." in result.stdout
    lookups = [r for r in fake_platform.requests if r["path"].startswith("/api/v0002/device/types/iotpsutil/devices/")]
    assert [r["status"] for r in lookups] == [404, 404, 404]
    assert configs(workdir) == []


@pytest.mark.slow
def test_a_device_the_platform_keeps_keeps_its_config(fake_platform, workdir):
    register(fake_platform, workdir, 3)
    fake_platform.keep_on_remove("iotpsutil", ["19-0002"])

    result = run_decommissioner(workdir, "-b", "19", "-n", "3", "--yes", fake=fake_platform)

    assert result.returncode == 3, result.stderr
    refusal = "the platform did not remove it and gave no reason (success false)"
    assert result.stdout.splitlines() == [
        "Device removed: iotpsutil:19-0001",
        "Device removed: iotpsutil:19-0003",
        f"Device removal failed: iotpsutil:19-0002: {refusal}",
        "Batch 19 (3 devices of type iotpsutil, class Device): 2 removed, 0 already gone, 1 failed; "
        "2 local configs deleted.",
        "  the configs of the devices still on the platform are kept: run again once the cause is fixed",
        f"Report: {BATCH_DIR}/decommission-report.jsonl",
    ]
    assert fake_platform.devices_of("iotpsutil") == ["19-0002"]
    assert configs(workdir) == ["19-0002.yaml"]
    assert read_jsonl(workdir / BATCH_DIR / "decommission-report.jsonl") == [
        {"deviceId": "19-0001", "typeId": "iotpsutil", "outcome": "removed", "hadConfig": True, "reason": None},
        {"deviceId": "19-0002", "typeId": "iotpsutil", "outcome": "failed", "hadConfig": True, "reason": refusal},
        {"deviceId": "19-0003", "typeId": "iotpsutil", "outcome": "removed", "hadConfig": True, "reason": None},
    ]


@pytest.mark.slow
def test_journal_tokens_of_gone_devices_go_and_of_held_devices_stay(fake_platform, workdir):
    register(fake_platform, workdir, 2)
    (workdir / BATCH_DIR / JOURNAL_NAME).write_text(
        json.dumps({"id": "19-0001", "token": "Ab1defghij", "nonce": "n"}) + "\n"
        + json.dumps({"id": "19-0009", "token": "Ab2defghij", "nonce": "n"}) + "\n")
    result = run_decommissioner(workdir, "-b", "19", "-n", "2", "--yes", fake=fake_platform)
    assert result.returncode == 0, result.stderr
    assert PendingTokens(workdir / BATCH_DIR).load() == {"19-0009": ("Ab2defghij", "n")}

    result = run_decommissioner(workdir, "-b", "19", "-n", "9", "--yes", fake=fake_platform)
    assert result.returncode == 0, result.stderr
    assert not (workdir / BATCH_DIR / JOURNAL_NAME).exists()


@pytest.mark.slow
def test_sigterm_during_a_delayed_remove_stops_cleanly_and_a_rerun_finishes(fake_platform, workdir):
    register(fake_platform, workdir, 3)
    fake_platform.delay_responses(5, path="/bulk/devices/remove")
    process = subprocess.Popen([sys.executable, str(DECOMMISSIONER), "-b", "19", "-n", "3", "--yes"], cwd=workdir,
                               env=clean_environment(**fake_platform.env()), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 30
    while fake_platform.devices_of("iotpsutil") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_platform.devices_of("iotpsutil") == []  # removed; the answer is 5 s away
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    [line] = stderr.splitlines()
    assert line == ("deviceDecommissioner.py: error: decommission stopped: interrupted; 0 of 3 devices are off the "
                    "platform (their configs deleted), the configs of the other 3 are kept (3 may or may not be "
                    "removed): run the same command again to finish")
    assert configs(workdir) == ["19-0001.yaml", "19-0002.yaml", "19-0003.yaml"]
    assert {r["outcome"] for r in read_jsonl(workdir / BATCH_DIR / "decommission-report.jsonl")} == {"unconfirmed"}

    fake_platform.delay_responses(0)
    rerun = run_decommissioner(workdir, "-b", "19", "-n", "3", "--yes", fake=fake_platform)
    assert rerun.returncode == 0, rerun.stderr
    assert "0 removed, 3 already gone, 0 failed; 3 local configs deleted." in rerun.stdout
    assert configs(workdir) == []


@pytest.mark.parametrize("answer, code", [(b"y\n", 0), (b"yes\n", 0), (b"n\n", 1), (b"\n", 1)])
@pytest.mark.slow
def test_confirmation_on_a_terminal(fake_platform, workdir, answer, code):
    import pty

    register(fake_platform, workdir, 2)
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, str(DECOMMISSIONER), "-b", "19", "-n", "2"], cwd=workdir,
                               env=clean_environment(**fake_platform.env()), stdin=follower,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(follower)
    os.write(leader, answer)
    stdout, stderr = process.communicate(timeout=60)
    os.close(leader)
    assert process.returncode == code, stderr
    assert stderr.startswith(
        "Remove 2 devices of batch 19 (classId Device, typeId iotpsutil) from the platform at "
        f"https://{fake_platform.address} (organisation {fake_platform.org_id}), and delete their local configs? [y/N] ")
    if code == 0:
        assert fake_platform.devices_of("iotpsutil") == [] and configs(workdir) == []
    else:
        assert stderr.endswith("deviceDecommissioner.py: error: cancelled: nothing was sent to the platform\n")
        assert removes(fake_platform) == [] and len(fake_platform.devices_of("iotpsutil")) == 2
        assert configs(workdir) == ["19-0001.yaml", "19-0002.yaml"]


def test_without_a_terminal_it_refuses_unless_told_yes(fake_platform, workdir):
    register(fake_platform, workdir, 2)
    result = run_decommissioner(workdir, "-b", "19", "-n", "2", fake=fake_platform)
    assert result.returncode == 2
    assert result.stderr == ("deviceDecommissioner.py: error: no terminal to confirm on: pass --yes to remove 2 devices "
                             "of batch 19 (classId Device, typeId iotpsutil) without asking\n")
    assert removes(fake_platform) == [] and configs(workdir) == ["19-0001.yaml", "19-0002.yaml"]


def test_bad_arguments_are_refused_with_usage(fake_platform, workdir):
    result = run_decommissioner(workdir, "-b", "a/b", "-n", "2", "--yes", fake=fake_platform)
    assert result.returncode == 2 and result.stderr.startswith("usage: deviceDecommissioner.py")
    assert fake_platform.requests == []


@pytest.mark.slow
def test_devices_whose_tokens_were_pending_are_not_called_lost(fake_platform, workdir):
    kill_registrator_once_the_platform_applied(workdir, fake_platform, "-b", "19", "-n", "2")

    result = run_decommissioner(workdir, "-b", "19", "-n", "2", "--yes", fake=fake_platform)

    assert result.returncode == 0, result.stderr
    assert ("removed with their tokens pending in the journal of an interrupted registration: "
            "iotpsutil:19-0001, iotpsutil:19-0002") in result.stdout
    assert "tokens were lost" not in result.stdout
    assert fake_platform.devices_of("iotpsutil") == []


@pytest.mark.slow
def test_fleet_values_files_go_with_the_last_config(fake_platform, workdir):
    from conftest import run_deployer

    register(fake_platform, workdir, 3)
    deployed = run_deployer(workdir, "-b", "19", "-n", "3", "--helmChart", "wiotp/psutil", "--helmVersion", "3",
                            "--fleet", "--fleetSize", "2")
    assert deployed.returncode == 0, deployed.stderr
    fleet = workdir / BATCH_DIR / "fleet"
    assert len(list(fleet.glob("*.yaml"))) == 2  # they hold the tokens of the batch's devices

    result = run_decommissioner(workdir, "-b", "19", "-n", "3", "--yes", fake=fake_platform)

    assert result.returncode == 0, result.stderr
    assert "2 fleet values files removed: no device of the batch is left" in result.stdout
    assert list(fleet.glob("*.yaml")) == [] and configs(workdir) == []


@pytest.mark.slow
def test_a_killed_registration_s_torn_config_goes_with_the_last_config(fake_platform, workdir):
    register(fake_platform, workdir, 2)
    config = workdir / BATCH_DIR / "19-0002.yaml"
    torn = workdir / BATCH_DIR / ".19-0002.yaml.4242.0a1b2c3d.tmp"  # kill -9 during its atomic write
    torn.write_text(config.read_text()[:300])  # holds the token

    result = run_decommissioner(workdir, "-b", "19", "-n", "2", "--yes", fake=fake_platform)

    assert result.returncode == 0, result.stderr
    assert configs(workdir) == [] and not torn.exists()
