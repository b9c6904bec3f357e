"""A batch registered from a manifest, through the real scripts against the fake platform: a plant's CSV refused
then accepted, deployed, reported by serial number, changed and updated, a row removed, and decommissioned, each
with --batchId alone. Also: -n defaults to a batch's registered size (issue 18)."""

import json

import pytest
import yaml

from conftest import (
    kill_registrator_once_the_platform_applied,
    read_jsonl,
    run_decommissioner,
    run_deployer,
    run_registrator,
    run_status,
)
from devicefactory.batch import Batch
from devicefactory.errors import FactoryError
from devicefactory.localregistry import LocalRegistry
from devicefactory.manifestfile import accept_manifest

FOLDER = "localDeviceRegistry/device/sensor/w49"
HEADER = "deviceId,serialNumber,manufacturer,model,description,fwVersion,latitude,longitude,metadata"
GOOD_ROWS = [
    'line7-a,SN-001,ACME,X1,"Pump, left",1.0,52.37,4.89,"{""line"": 7}"',
    "line7-b,SN-002,ACME,X1,,1.0,,,",
    "line7-c,SN-003,ACME,X1,,1.0,,,",
]


def write_plant_csv(path, rows):
    """As a plant's spreadsheet saves it: a byte-order mark and Windows line ends."""
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join([HEADER, *rows, ""]).encode("utf-8"))


def register(workdir, fake, *extra, manifest="line7.csv"):
    return run_registrator(workdir, "-b", "w49", "-t", "sensor", "--manifest", manifest, *extra, fake=fake)


def token_of(workdir, device):
    return yaml.safe_load((workdir / FOLDER / f"{device}.yaml").read_text())["auth"]["token"]


def test_a_bad_manifest_is_refused_whole_with_row_numbers(workdir, fake_platform):
    bad = [GOOD_ROWS[0], "line7-b,SN-001,ACME,X1,,1.0,,,", "line7-c,SN-003,ACME,X1,,1.0,95.5,4.1,",
           "line7 d,SN-004,ACME,X1,,,,,"]
    write_plant_csv(workdir / "line7.csv", bad)
    result = register(workdir, fake_platform)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "deviceRegistrator.py: error: manifest line7.csv refused (3 problems); nothing was sent or written:",
        "  line7.csv: row 3: serialNumber SN-001 is already on row 2",
        "  line7.csv: row 4: latitude is 95.5, outside -90 to 90 (WGS84 degrees)",
        "  line7.csv: row 5: deviceId 'line7 d' is no platform deviceId: it may hold only letters, digits, '-', "
        "'_' and '.'",
    ]
    assert fake_platform.requests == [] and not (workdir / "localDeviceRegistry").exists()


@pytest.mark.slow
def test_wrong_arguments_are_usage_errors(workdir, fake_platform):
    write_plant_csv(workdir / "line7.csv", GOOD_ROWS)
    (workdir / "line7.txt").write_text(HEADER)
    for args, message in [
        (["--manifest", "line7.csv", "-n", "3"], "give either -n/--numberOfDevices or --manifest"),
        (["-n", "3", "--update"], "--deviceIdFrom and --update need --manifest"),
        (["--manifest", "line7.txt"], "manifest line7.txt: its name must end in .csv or .jsonl"),
        (["--manifest", "missing.csv"], "manifest missing.csv: cannot be read (No such file or directory)"),
    ]:
        result = run_registrator(workdir, "-b", "w49", "-t", "sensor", *args, fake=fake_platform)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    assert fake_platform.requests == []


@pytest.mark.slow
def test_the_life_of_a_manifest_batch(workdir, fake_platform, tmp_path):
    write_plant_csv(workdir / "line7.csv", GOOD_ROWS)
    result = register(workdir, fake_platform)
    assert result.returncode == 0, result.stderr
    assert "Device registration success: sensor:line7-b (row 3, serialNumber SN-002)" in result.stdout
    # One bulk add carried every row's attributes; the platform keeps them as sent.
    adds = [r for r in fake_platform.requests if r["path"].endswith("/bulk/devices/add")]
    assert len(adds) == 1
    device = fake_platform.device("sensor", "line7-a")
    assert device["deviceInfo"] == {"serialNumber": "SN-001", "manufacturer": "ACME", "model": "X1",
                                    "description": "Pump, left", "fwVersion": "1.0"}
    assert device["location"]["latitude"] == 52.37 and device["location"]["longitude"] == 4.89
    assert device["metadata"]["line"] == 7 and "nonce" in device["metadata"]["deviceFactory"]
    assert fake_platform.device("sensor", "line7-b")["deviceInfo"] == {
        "serialNumber": "SN-002", "manufacturer": "ACME", "model": "X1", "fwVersion": "1.0"}
    # The batch remembers its members, and keeps no token beside them.
    stored = (workdir / FOLDER / "manifest.jsonl").read_text()
    assert [json.loads(line)["deviceId"] for line in stored.splitlines()] == ["line7-a", "line7-b", "line7-c"]
    assert token_of(workdir, "line7-a") not in stored
    report = read_jsonl(workdir / FOLDER / "registration-report.jsonl")
    assert [(r["deviceId"], r["row"], r["serialNumber"], r["outcome"]) for r in report] == [
        ("line7-a", 2, "SN-001", "registered"), ("line7-b", 3, "SN-002", "registered"),
        ("line7-c", 4, "SN-003", "registered")]

    # Deploy, status and decommission with --batchId alone; an -n that disagrees is refused.
    deployed = run_deployer(workdir, "-b", "w49", "-t", "sensor", "--helmChart", "wiotp/psutil", "--helmVersion", "3")
    assert deployed.returncode == 0, deployed.stderr
    script = (workdir / "bin/deploy-device-sensor-w49.bat").read_text()
    assert [line.split()[2] for line in script.splitlines() if line.startswith("helm upgrade")] == [
        "sensor-line7-a", "sensor-line7-b", "sensor-line7-c"]
    refused = run_deployer(workdir, "-b", "w49", "-t", "sensor", "-n", "2", "--helmChart", "wiotp/psutil")
    assert refused.returncode == 2
    assert ("argument -n/--numberOfDevices: batch w49 was registered from a manifest of 3 devices, not 2: "
            "leave -n out") in refused.stderr

    fake_platform.connect("sensor", ["line7-a", "line7-c"])
    status = run_status(workdir, "-b", "w49", "-t", "sensor", "--by", "serialNumber", fake=fake_platform)
    assert status.returncode == 3, status.stderr
    assert "connected (2): SN-001, SN-003" in status.stdout
    assert "no connection recorded since monitoring was activated (1): SN-002" in status.stdout
    records = read_jsonl(workdir / FOLDER / "status-report.jsonl")
    assert [(r["serialNumber"], r["row"], r["state"]) for r in records] == [
        ("SN-001", 2, "connected"), ("SN-002", 3, "no-connection-recorded"), ("SN-003", 4, "connected")]

    # The plant changes a row and drops another: the registrator says what differs and what left.
    changed = [GOOD_ROWS[0].replace("X1", "X2").replace("52.37", "52.4"), GOOD_ROWS[1]]
    write_plant_csv(workdir / "line7.csv", changed)
    tokens = {device: token_of(workdir, device) for device in ("line7-a", "line7-b", "line7-c")}
    before = len(fake_platform.requests)
    result = register(workdir, fake_platform)
    assert result.returncode == 3, result.stderr
    assert ("Device differs from its manifest row: sensor:line7-a (row 2, serialNumber SN-001): deviceInfo.model "
            "'X1' -> 'X2', location.latitude 52.37 -> 52.4") in result.stdout
    assert "Device no longer in the manifest: sensor:line7-c (still registered, its config kept)" in result.stdout
    assert "1 device on the platform differs from its manifest row (see the report): run again with --update" \
        in result.stdout
    report = {r["deviceId"]: r for r in read_jsonl(workdir / FOLDER / "registration-report.jsonl")}
    assert report["line7-a"]["differences"] == {
        "deviceInfo.model": {"platform": "X1", "manifest": "X2"},
        "location.latitude": {"platform": 52.37, "manifest": 52.4}}
    assert report["line7-c"]["outcome"] == "not-in-manifest" and report["line7-c"]["row"] is None
    assert fake_platform.device("sensor", "line7-a")["deviceInfo"]["model"] == "X1"  # nothing changed yet
    assert fake_platform.device("sensor", "line7-c") is not None

    result = register(workdir, fake_platform, "--update")
    assert result.returncode == 0, result.stderr
    assert "0 differ from the manifest, 1 updated" in result.stdout
    device = fake_platform.device("sensor", "line7-a")
    assert device["deviceInfo"]["model"] == "X2" and device["location"]["latitude"] == 52.4
    assert device["metadata"]["line"] == 7 and device["metadata"]["deviceFactory"]  # the nonce is kept
    # The update API only: no bulk add, no re-registration, every token as it was, on disk and on the platform.
    paths = {(r["method"], r["path"]) for r in fake_platform.requests[before:]}
    assert ("PUT", "/api/v0002/device/types/sensor/devices/line7-a") in paths
    assert ("PUT", "/api/v0002/device/types/sensor/devices/line7-a/location") in paths
    assert not any(path.endswith("/bulk/devices/add") or method == "DELETE" for method, path in paths)
    for device, token in tokens.items():
        assert token_of(workdir, device) == token == fake_platform.device("sensor", device)["authToken"]
    assert "already present, 0 differ" in register(workdir, fake_platform).stdout

    # The removed row's device is still a member: the decommissioner removes all three with --batchId alone.
    removed = run_decommissioner(workdir, "-b", "w49", "-t", "sensor", "--yes", fake=fake_platform)
    assert removed.returncode == 0, removed.stderr
    assert "3 removed, 0 already gone, 0 failed; 3 local configs deleted." in removed.stdout
    assert fake_platform.devices_of("sensor") == []
    records = read_jsonl(workdir / FOLDER / "decommission-report.jsonl")
    assert [(r["deviceId"], r["row"], r["serialNumber"]) for r in records] == [
        ("line7-a", 2, "SN-001"), ("line7-b", 3, "SN-002"), ("line7-c", None, "SN-003")]


@pytest.mark.slow
def test_ids_from_the_serial_number_column_json_lines_and_fleet_mode(workdir, fake_platform):
    lines = [{"serialNumber": f"SN{n:03d}", "model": "X1", "latitude": 10.5, "longitude": -20.25,
              "elevation": 3, "metadata": {"n": n}} for n in (7, 3, 5)]
    (workdir / "line8.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = run_registrator(workdir, "-b", "w50", "-t", "sensor", "--manifest", "line8.jsonl",
                             "--deviceIdFrom", "serialNumber", fake=fake_platform)
    assert result.returncode == 0, result.stderr
    assert fake_platform.devices_of("sensor") == ["SN003", "SN005", "SN007"]
    assert fake_platform.device("sensor", "SN005")["location"]["elevation"] == 3
    deployed = run_deployer(workdir, "-b", "w50", "-t", "sensor", "--helmChart", "wiotp/psutil", "--helmVersion",
                            "3", "--fleet", "--fleetSize", "2")
    assert deployed.returncode == 0, deployed.stderr
    folder = workdir / "localDeviceRegistry/device/sensor/w50/fleet"
    fleets = [yaml.safe_load((folder / f"sensor-w50-fleet-{n}.yaml").read_text()) for n in (1, 2)]
    # Pod ordinal i of a fleet runs devices[i]: the manifest's ids, in the manifest's order.
    assert [[d["deviceId"] for d in values["devices"]] for values in fleets] == [["SN007", "SN003"], ["SN005"]]
    assert fleets[0]["devices"][1]["token"] == fake_platform.device("sensor", "SN003")["authToken"]


@pytest.mark.slow
def test_ids_of_another_batch_and_a_numbered_batch_are_refused(workdir, fake_platform):
    write_plant_csv(workdir / "line7.csv", GOOD_ROWS)
    assert register(workdir, fake_platform).returncode == 0
    result = run_registrator(workdir, "-b", "w51", "-t", "sensor", "--manifest", "line7.csv", fake=fake_platform)
    assert result.returncode == 2
    assert "line7.csv: row 2: deviceId line7-a is already a device of batch w49 (device/sensor)" in result.stderr
    # A member of another batch's manifest belongs to it even without a config here (its registration failed).
    (workdir / FOLDER / "line7-b.yaml").unlink()
    result = run_registrator(workdir, "-b", "w51", "-t", "sensor", "--manifest", "line7.csv", fake=fake_platform)
    assert "row 3: deviceId line7-b is already a device of batch w49 (device/sensor)" in result.stderr
    assert run_registrator(workdir, "-b", "190523", "-n", "2", "-t", "sensor", fake=fake_platform).returncode == 0
    result = run_registrator(workdir, "-b", "190523", "-t", "sensor", "--manifest", "line7.csv", fake=fake_platform)
    assert result.returncode == 2 and "batch 190523 was registered without a manifest" in result.stderr
    result = run_registrator(workdir, "-b", "w49", "-t", "sensor", "-n", "3", fake=fake_platform)
    assert result.returncode == 2 and "batch w49 was registered from a manifest" in result.stderr


@pytest.mark.slow
def test_n_defaults_to_the_registered_size_of_a_numbered_batch(workdir, fake_platform):
    assert run_registrator(workdir, "-b", "190523", "-n", "3", fake=fake_platform).returncode == 0
    status = run_status(workdir, "-b", "190523", fake=fake_platform)
    assert "Batch 190523 (3 devices of type iotpsutil" in status.stdout, status.stderr
    deployed = run_deployer(workdir, "-b", "190523", "--helmChart", "wiotp/psutil", "--helmVersion", "3")
    assert "for 3 devices" in deployed.stdout, deployed.stderr
    by_serial = run_status(workdir, "-b", "190523", "--by", "serialNumber", fake=fake_platform)
    assert by_serial.returncode == 2 and "was not registered from a manifest" in by_serial.stderr
    removed = run_decommissioner(workdir, "-b", "190523", "--yes", fake=fake_platform)
    assert "3 removed" in removed.stdout, removed.stderr
    # No configs left to count: -n must be given.
    again = run_decommissioner(workdir, "-b", "190523", "--yes", fake=fake_platform)
    assert again.returncode == 2 and "argument -n/--numberOfDevices: needed" in again.stderr


def test_a_manifest_changed_after_its_check_stops_before_it_is_stored(tmp_path):
    write_plant_csv(tmp_path / "line7.csv", GOOD_ROWS)
    batch = Batch("Device", "sensor", "w49")
    accepted = accept_manifest(str(tmp_path / "line7.csv"), batch, LocalRegistry(tmp_path))
    assert [row.device_id for row in accepted.stored_rows()] == ["line7-a", "line7-b", "line7-c"]
    write_plant_csv(tmp_path / "line7.csv", [GOOD_ROWS[1], GOOD_ROWS[0]])
    with pytest.raises(FactoryError, match="changed while it was being registered"):
        list(accepted.stored_rows())


@pytest.mark.slow
def test_a_row_removed_after_a_kill_keeps_its_pending_token_and_is_settled(workdir, fake_platform):
    write_plant_csv(workdir / "line7.csv", GOOD_ROWS)
    killed = kill_registrator_once_the_platform_applied(workdir, fake_platform, "-b", "w49", "-t", "sensor",
                                                        "--manifest", "line7.csv")
    assert killed.returncode == -9 and not (workdir / FOLDER / "line7-c.yaml").exists()
    write_plant_csv(workdir / "line7.csv", GOOD_ROWS[:2])  # the plant drops a row meanwhile
    result = register(workdir, fake_platform)
    assert result.returncode == 0, result.stderr
    assert "the manifest no longer lists 1 device of the batch (first: line7-c)" in result.stderr
    # Its token, pending when the run was killed, is settled into its config: nothing is lost.
    assert token_of(workdir, "line7-c") == fake_platform.device("sensor", "line7-c")["authToken"]
    report = {r["deviceId"]: r for r in read_jsonl(workdir / FOLDER / "registration-report.jsonl")}
    assert report["line7-c"]["outcome"] == "recovered" and report["line7-c"]["row"] is None
