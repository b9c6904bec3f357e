"""The manifest's rules (devicefactory/manifest.py), checked directly: formats, every row check, row numbers,
the cap on problems shown, and how a platform record is compared with its row."""

import io
import json

import pytest

from devicefactory import manifest
from devicefactory.batch import Batch
from devicefactory.manifest import ManifestError, ManifestRow, check_manifest, differences, rows
from devicefactory.releasenames import release_name, release_name_problem

HEADER = "deviceId,serialNumber,manufacturer,model,description,latitude,longitude,metadata"


def lines(text, bom=False, crlf=False):
    data = text.replace("\n", "\r\n") if crlf else text
    return io.BytesIO((b"\xef\xbb\xbf" if bom else b"") + data.encode("utf-8")).readlines()


def problems_of(text, kind="csv", **kwargs):
    with pytest.raises(ManifestError) as caught:
        check_manifest(lines(text) if isinstance(text, str) else text, kind, **kwargs)
    return caught.value


def test_a_plant_csv_with_bom_windows_line_ends_quoted_commas_and_empty_fields():
    text = (f"{HEADER}\n"
            'm-1,SN-1,ACME,X1,"Pump, left side",52.37,4.89,"{""line"": 7}"\n'
            "m-2,SN-2,ACME,X1,,,,\n"
            "\n")
    assert check_manifest(lines(text, bom=True, crlf=True), "csv") == ["m-1", "m-2"]
    first, second = rows(lines(text, bom=True, crlf=True), "csv")
    assert first == ManifestRow(2, "m-1", {"serialNumber": "SN-1", "manufacturer": "ACME", "model": "X1",
                                          "description": "Pump, left side"},
                                {"latitude": 52.37, "longitude": 4.89}, {"line": 7})
    assert second == ManifestRow(3, "m-2", {"serialNumber": "SN-2", "manufacturer": "ACME", "model": "X1"})


def test_a_quoted_line_break_keeps_the_row_number_of_the_record_start():
    text = f'{HEADER}\nm-1,SN-1,,,"two\nlines",,,\nm-2,SN-2,,,,,,\n'
    assert [row.row for row in rows(lines(text), "csv")] == [2, 4]
    assert "row 4:" in str(problems_of(f'{HEADER}\nm-1,SN-1,,,"two\nlines",,,\nm-1,SN-2,,,,,,\n'))


def test_json_lines_take_json_values_and_nulls_as_not_given():
    text = ('{"deviceId": "j-1", "serialNumber": "S1", "latitude": -33.9, "longitude": 151.2, "elevation": 58,'
            ' "metadata": {"shift": "B"}}\n'
            '{"deviceId": "j-2", "model": null}\n')
    first, second = rows(lines(text), "jsonl")
    assert first.location == {"latitude": -33.9, "longitude": 151.2, "elevation": 58.0}
    assert first.metadata == {"shift": "B"} and second.device_info == {}


@pytest.mark.parametrize(("row", "expected"), [
    ("bad id!,SN,,,,,,", "row 2: deviceId 'bad id!' is no platform deviceId: it may hold only letters"),
    ("m-1,SN,,,,91,4,", "row 2: latitude is 91, outside -90 to 90 (WGS84 degrees)"),
    ("m-1,SN,,,,52,-181,", "row 2: longitude is -181, outside -180 to 180"),
    ("m-1,SN,,,,north,4,", "row 2: latitude is 'north', not a number"),
    ("m-1,SN,,,,52,,", "row 2: a location needs latitude and longitude: longitude missing"),
    ("m-1,SN,,,,,,[1]", "row 2: metadata must be a JSON object"),
    ("m-1,SN,,,,,,{oops", "row 2: metadata is not JSON"),
    ('m-1,SN,,,,,,"{""deviceFactory"": 1}"', "row 2: metadata may not set 'deviceFactory'"),
    (f"m-1,{'x' * 257},,,,,,", "row 2: serialNumber is 257 characters long; at most 256"),
    (",SN,,,,,,", "row 2: has no deviceId"),
    ("m-1,SN", "row 2: has 2 cells; the header has 8 columns"),
])
def test_each_rule_names_the_row(row, expected):
    assert expected in str(problems_of(f"{HEADER}\n{row}\n"))


def test_unknown_columns_duplicates_and_taken_ids_are_refused():
    error = problems_of("deviceId,serial\nm-1,S\n")
    assert "row 2: unknown column serial (known: deviceId, serialNumber," in str(error)
    error = problems_of(f"{HEADER}\nm-1,SN-1,,,,,,\nm-1,SN-2,,,,,,\n")
    assert "row 3: deviceId m-1 is already on row 2" in str(error)
    error = problems_of(f"{HEADER}\nm-1,SN-1,,,,,,\nm-2,SN-1,,,,,,\n")
    assert str(error) == "row 3: serialNumber SN-1 is already on row 2"
    error = problems_of(f"{HEADER}\nm-1,SN-1,,,,,,\n", taken={"m-1": "batch w48 (device/sensor)"}.get)
    assert "row 2: deviceId m-1 is already a device of batch w48 (device/sensor) in the local registry" in str(error)


def test_device_id_from_another_column():
    text = "serialNumber,model\nSN-001,X1\nSN 002,X1\n"
    error = problems_of(text, device_id_from="serialNumber")
    assert "row 3: serialNumber 'SN 002' is no platform deviceId" in str(error)
    assert check_manifest(lines("serialNumber,model\nSN-001,X1\n"), "csv", device_id_from="serialNumber") == ["SN-001"]
    assert next(rows(lines("serialNumber\nSN-001\n"), "csv", "serialNumber")).serial_number == "SN-001"
    assert "row 2: has a deviceId, but the ids are to come from serialNumber: drop one" in str(
        problems_of("deviceId,serialNumber\na,SN-1\n", device_id_from="serialNumber"))
    assert check_manifest(lines("mac\n00-1B-63\n"), "csv", device_id_from="mac") == ["00-1B-63"]


def test_a_file_that_is_not_utf8_or_not_its_format():
    assert "row 3: is not UTF-8 text" in str(problems_of(lines(f"{HEADER}\nm-1,,,,,,,\n") + [b"m-2,\xff\xfe,,,,,,\n"]))
    assert "row 1: is not a JSON object" in str(problems_of(f"{HEADER}\nm-1,,,,,,,\n", kind="jsonl"))
    assert "row 2: is not a JSON object (a .jsonl manifest holds one object a line)" in str(
        problems_of('{"deviceId": "a"}\n[1, 2]\n', kind="jsonl"))
    assert "row 1: the file is empty" in str(problems_of(""))
    assert "row 1: holds no devices" in str(problems_of(f"{HEADER}\n"))
    assert "names column 'model' twice" in str(problems_of("deviceId,model,model\na,b,c\n"))
    assert manifest.manifest_format("Line7.CSV") == "csv" and manifest.manifest_format("x.json") is None


def test_at_most_twenty_problems_are_shown_then_a_count():
    text = HEADER + "\n" + "".join(f"m-{n},SN,,,,95,0,\n" for n in range(30))
    error = problems_of(text)
    shown = str(error).splitlines()
    assert len(shown) == 21 and shown[-1] == "... and 10 more problems"
    assert shown[0].startswith("row 2: latitude is 95") and error.total == 30


def test_stored_records_round_trip_without_empty_fields():
    row = ManifestRow(4, "m-1", {"serialNumber": "S"}, None, None, in_manifest=False)
    assert row.record() == {"row": 4, "deviceId": "m-1", "deviceInfo": {"serialNumber": "S"}, "inManifest": False}
    assert ManifestRow.from_record(json.loads(json.dumps(row.record()))) == row


def test_differences_compare_only_what_the_row_gives():
    row = ManifestRow(2, "m-1", {"serialNumber": "S", "model": "X2"}, {"latitude": 1.0, "longitude": 2.0},
                      {"line": 7})
    document = {"deviceInfo": {"serialNumber": "S", "model": "X1", "fwVersion": "1.0"},
                "location": {"latitude": 1.0, "longitude": 2.5, "updatedDateTime": "..."},
                "metadata": {"line": 7, "deviceFactory": {"nonce": "n"}}}
    assert differences(row, document) == {"deviceInfo.model": {"platform": "X1", "manifest": "X2"},
                                          "location.longitude": {"platform": 2.5, "manifest": 2.0}}
    assert differences(ManifestRow(2, "m-1"), document) == {}
    assert differences(row, {"deviceInfo": {}})["metadata"] == {"platform": {}, "manifest": {"line": 7}}


def test_a_batch_with_members_numbers_them_in_manifest_order():
    batch = Batch("Device", "sensor", "w49").with_members(["SN-9", "SN-1", "a.b_c"])
    assert list(batch.device_ids(3)) == ["SN-9", "SN-1", "a.b_c"] and batch.size == 3
    assert batch.device_number("SN-1") == 2 and batch.device_number("w49-0001") is None
    assert batch.device_id(3) == "a.b_c"
    assert batch == Batch("Device", "sensor", "w49")  # the same batch: its folder and names do not change
    with pytest.raises(ValueError):
        Batch("Device", "sensor", "w49").with_members(["a", "a"])


def test_release_names_are_valid_and_distinct_for_any_id_the_platform_allows():
    ids = ["SN-001", "sn-001", "SN_001", "SN.001", "sn.001", "-", "_", "..a", "A" * 36, "a" * 36, "a" * 35 + "B",
           "0", "x-", "-x", "X-"]
    names = [release_name("Sensor.Type_1", device) for device in ids]
    assert [release_name_problem(name) for name in names] == [None] * len(ids)
    assert len(set(names)) == len(ids)
    assert release_name("sensor", "sn-001") == "sensor-sn-001"  # a name Helm takes is kept as it is


def test_the_status_grid_names_a_manifest_batch_by_id_or_serial_number():
    from devicefactory.status import CONNECTED, NOT_ON_PLATFORM, DeviceStatus, report_lines

    batch = Batch("Device", "sensor", "w49").with_members(["m-1", "m-22"])
    statuses = [DeviceStatus("m-1", CONNECTED, True, row=ManifestRow(2, "m-1", {"serialNumber": "SN-1"})),
                DeviceStatus("m-22", NOT_ON_PLATFORM, False, row=ManifestRow(3, "m-22"))]
    grid = report_lines(batch, statuses, colour=True, by="serialNumber")
    assert grid[3] == "sensor, batch w49, by serialNumber"
    assert grid[7] == "\x1b[32mSN-1   \x1b[0m \x1b[33m(m-22)*\x1b[0m"
    assert "connected (1): m-1" in report_lines(batch, statuses, colour=False)
