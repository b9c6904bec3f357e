"""A manifest: the devices an assembly line really built, one row each, with the attributes the platform keeps.

A manifest is CSV with a header row (UTF-8, a byte-order mark and Windows line ends allowed) or JSON lines
(`.jsonl`, one object a line). Its columns are the device's id (`deviceId`, or the column `--deviceIdFrom`
names, e.g. `serialNumber`), the platform's `deviceInfo` fields, the `location` fields, and `metadata` (a JSON
object). An empty cell (or a JSON null) is a field not given.

Everything here is pure: rows in, checked `ManifestRow`s or problems out. Each problem names the row it is on:
row N is the file's line N where that record starts (in a CSV the header is row 1, as a spreadsheet numbers it).
The platform's rules and where they come from:
- ids: devicefactory/ids.py.
- deviceInfo: the fields of the v0002 `DeviceInfo` model, all strings (ibm-watson-iot/swagger-java,
  model/DeviceInfo.java; wiotp-sdk's DeviceInfo). IBM documents no length for them: at most
  MAX_INFO_LENGTH characters each is this factory's own bound (assumed).
- location: the v0002 `DeviceLocation` model (swagger-java model/DeviceLocation.java): `latitude` and
  `longitude` required, "decimal degrees using the WGS84 system" (so -90..90 and -180..180), `elevation` and
  `accuracy` in metres, all numbers.
- metadata: "free-form metadata", a JSON object (swagger-java model/Device.java). Its `deviceFactory` key is
  the factory's own (bulkrequests.METADATA_KEY), so a manifest may not set it. IBM documents no size limit for
  it beyond the bulk request (512,000 bytes) that carries it: MAX_METADATA_BYTES per device is assumed.
"""

import csv
import json
import math
from dataclasses import dataclass, field

from .bulkrequests import METADATA_KEY
from .ids import id_problem

# The v0002 DeviceInfo model's fields, in its order (swagger-java model/DeviceInfo.java).
DEVICE_INFO_FIELDS = ("serialNumber", "manufacturer", "model", "deviceClass", "description", "fwVersion",
                      "hwVersion", "descriptiveLocation")
# The v0002 DeviceLocation model's fields a client sets, with their WGS84 ranges (None: any number).
LOCATION_RANGES = {"latitude": (-90.0, 90.0), "longitude": (-180.0, 180.0), "elevation": None, "accuracy": None}
REQUIRED_LOCATION_FIELDS = ("latitude", "longitude")
DEVICE_ID_COLUMN = "deviceId"
METADATA_COLUMN = "metadata"
COLUMNS = (DEVICE_ID_COLUMN, *DEVICE_INFO_FIELDS, *LOCATION_RANGES, METADATA_COLUMN)
MAX_INFO_LENGTH = 256  # assumed: IBM documents no length for deviceInfo strings
MAX_METADATA_BYTES = 16 * 1024  # assumed: far under the bulk request (512,000 bytes) that carries it
MOST_SHOWN = 20  # problems listed; the rest are counted
FORMATS = {".csv": "csv", ".jsonl": "jsonl"}


class ManifestError(ValueError):
    """A manifest that cannot be used: its problems, each on one line with its row, at most MOST_SHOWN shown."""

    def __init__(self, problems, total=None):
        self.problems, self.total = problems[:MOST_SHOWN], total if total is not None else len(problems)
        lines = list(self.problems)
        if self.total > len(self.problems):
            lines.append(f"... and {self.total - len(self.problems)} more problems")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class ManifestRow:
    """One accepted device: its row in the file, its id, and the attributes given (fields not given are absent)."""

    row: int
    device_id: str
    device_info: dict = field(default_factory=dict)
    location: dict | None = None
    metadata: dict | None = None
    # False for a device kept as a member after its row left the manifest (it is still registered here).
    in_manifest: bool = True

    @property
    def serial_number(self):
        return self.device_info.get("serialNumber")

    def record(self):
        """Its line in the batch's stored manifest (manifest.jsonl): no token, only what the file gave."""
        record = {"row": self.row, "deviceId": self.device_id}
        if self.device_info:
            record["deviceInfo"] = self.device_info
        if self.location is not None:
            record["location"] = self.location
        if self.metadata is not None:
            record["metadata"] = self.metadata
        if not self.in_manifest:
            record["inManifest"] = False
        return record

    @classmethod
    def from_record(cls, record):
        return cls(record["row"], record["deviceId"], record.get("deviceInfo") or {}, record.get("location"),
                   record.get("metadata"), record.get("inManifest", True))


def manifest_format(name):
    """'csv' or 'jsonl' from a file name's suffix, or None."""
    lowered = name.lower()
    return next((kind for suffix, kind in FORMATS.items() if lowered.endswith(suffix)), None)


def raw_records(byte_lines, kind):
    """(row, {column: value} or None, problem or None) for each record of a manifest given as its lines of bytes
    (a binary file). Values are as the file holds them: strings in a CSV, JSON values in JSON lines."""
    lines = _decoded_lines(byte_lines)
    if kind == "csv":
        yield from _csv_records(lines)
    else:
        yield from _jsonl_records(lines)


def _decoded_lines(byte_lines):
    """(line number, text) for each line; a line that is not UTF-8 gives (number, None)."""
    for number, line in enumerate(byte_lines, start=1):
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        try:
            yield number, line.decode("utf-8")
        except UnicodeDecodeError:
            yield number, None


class _NotUtf8(Exception):
    def __init__(self, number):
        self.number = number


def _csv_records(lines):
    current = [0]

    def texts():
        for number, text in lines:
            current[0] = number
            if text is None:
                raise _NotUtf8(number)
            yield text

    reader = csv.reader(texts(), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            yield 1, None, "the file is empty: a CSV manifest starts with a header row"
            return
        header = [name.strip() for name in header]
        problem = _header_problem(header)
        if problem:
            yield 1, None, problem
            return
        start = current[0] + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield start, None, f"not CSV ({error})"
                return
            row, start = start, current[0] + 1
            if not any(cell.strip() for cell in cells):
                continue  # a blank line, as spreadsheets leave at the end
            if len(cells) != len(header):
                yield row, None, f"has {len(cells)} cells; the header has {len(header)} columns"
                continue
            yield row, {name: cell for name, cell in zip(header, cells, strict=True) if cell.strip()}, None
    except _NotUtf8 as error:
        yield error.number, None, "is not UTF-8 text (save the manifest as UTF-8)"
    except csv.Error as error:
        yield 1, None, f"not CSV ({error})"


def _header_problem(header):
    seen = set()
    for name in header:
        if not name:
            return "the header has an empty column name"
        if name in seen:
            return f"the header names column {name!r} twice"
        seen.add(name)
    return None


def _jsonl_records(lines):
    for number, text in lines:
        if text is None:
            yield number, None, "is not UTF-8 text (save the manifest as UTF-8)"
            continue
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except ValueError as error:
            yield number, None, f"is not a JSON object ({error.args[0].split(':')[0]})"
            continue
        if not isinstance(value, dict):
            yield number, None, "is not a JSON object (a .jsonl manifest holds one object a line)"
            continue
        yield number, {key: item for key, item in value.items() if item is not None and item != ""}, None


def check_record(row, values, kind, device_id_from=DEVICE_ID_COLUMN):
    """(ManifestRow or None, [problems]) for one record; `kind` is 'csv' (values are strings to convert) or
    'jsonl' (values are JSON values, taken as they are)."""
    problems = []
    unknown = sorted(set(values) - set(COLUMNS) - {device_id_from})
    if unknown:
        problems.append(f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                        f"(known: {', '.join(COLUMNS)})")
    if device_id_from != DEVICE_ID_COLUMN and DEVICE_ID_COLUMN in values:
        problems.append(f"has a {DEVICE_ID_COLUMN}, but the ids are to come from {device_id_from}: drop one")
    device_id = values.get(device_id_from)
    if device_id is None:
        problems.append(f"has no {device_id_from}")
    elif not isinstance(device_id, str):
        problems.append(f"{device_id_from} must be a string")
    else:
        device_id = device_id.strip() if kind == "csv" else device_id
        why = id_problem(device_id)
        if why:
            problems.append(f"{device_id_from} {device_id!r} is no platform deviceId: it {why}")
    device_info = {}
    for name in DEVICE_INFO_FIELDS:
        if name in values:
            value = values[name]
            if not isinstance(value, str):
                problems.append(f"{name} must be a string")
            elif len(value) > MAX_INFO_LENGTH:
                problems.append(f"{name} is {len(value)} characters long; at most {MAX_INFO_LENGTH}")
            else:
                device_info[name] = value
    location = {}
    for name, bounds in LOCATION_RANGES.items():
        if name in values:
            number, problem = _number(values[name], kind)
            if problem is None and bounds and not bounds[0] <= number <= bounds[1]:
                problem = f"is {values[name]}, outside {bounds[0]:g} to {bounds[1]:g} (WGS84 degrees)"
            if problem:
                problems.append(f"{name} {problem}")
            else:
                location[name] = number
    if values.keys() & LOCATION_RANGES.keys():
        missing = [name for name in REQUIRED_LOCATION_FIELDS if name not in values]
        if missing:
            problems.append(f"a location needs {' and '.join(REQUIRED_LOCATION_FIELDS)}: {', '.join(missing)} missing")
    metadata = None
    if METADATA_COLUMN in values:
        metadata, problem = _metadata(values[METADATA_COLUMN], kind)
        if problem:
            problems.append(f"metadata {problem}")
    if problems:
        return None, problems
    return ManifestRow(row, device_id, device_info, location or None, metadata), []


def _number(value, kind):
    if kind == "csv":
        try:
            value = float(value.strip())
        except ValueError:
            return None, f"is {value!r}, not a number"
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, f"is {json.dumps(value)}, not a number"
    if not math.isfinite(value):
        return None, f"is {value}, not a finite number"
    return float(value), None


def _metadata(value, kind):
    if kind == "csv":
        try:
            value = json.loads(value)
        except ValueError:
            return None, "is not JSON (a CSV cell holds a JSON object, e.g. {\"\"line\"\": 3} quoted)"
    if not isinstance(value, dict):
        return None, "must be a JSON object"
    if METADATA_KEY in value:
        return None, f"may not set {METADATA_KEY!r}: the factory keeps its own record there"
    size = len(json.dumps(value).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        return None, f"is {size} bytes as JSON; at most {MAX_METADATA_BYTES}"
    return value, None


def check_manifest(byte_lines, kind, device_id_from=DEVICE_ID_COLUMN, taken=None):
    """The device ids of a manifest, in file order, after checking every row; raises ManifestError with every
    problem found (duplicate ids or serial numbers in the file: a serial number names one piece of hardware;
    and ids `taken(device_id)` names another batch of).

    Only the ids and serial numbers are kept (and the problems shown): a large manifest is read as a stream."""
    ids, first_row, serial_row, problems, total = [], {}, {}, [], 0

    def problem(row, text):
        nonlocal total
        total += 1
        if len(problems) < MOST_SHOWN:
            problems.append(f"row {row}: {text}")

    for row, values, trouble in raw_records(byte_lines, kind):
        if trouble:
            problem(row, trouble)
            continue
        checked, found = check_record(row, values, kind, device_id_from)
        for text in found:
            problem(row, text)
        if checked is None:
            continue
        device_id, serial = checked.device_id, checked.serial_number
        if serial is not None and device_id_from != "serialNumber":
            if serial in serial_row:
                problem(row, f"serialNumber {serial} is already on row {serial_row[serial]}")
            serial_row.setdefault(serial, row)
        if device_id in first_row:
            problem(row, f"deviceId {device_id} is already on row {first_row[device_id]}")
            continue
        other = taken(device_id) if taken else None
        if other:
            problem(row, f"deviceId {device_id} is already a device of {other} in the local registry")
        first_row[device_id] = row
        ids.append(device_id)
    if not ids and not total:
        problem(1, "holds no devices")
    if total:
        raise ManifestError(problems, total)
    return ids


def rows(byte_lines, kind, device_id_from=DEVICE_ID_COLUMN):
    """The ManifestRows of a manifest check_manifest accepted, in file order (a stream)."""
    for row, values, trouble in raw_records(byte_lines, kind):
        checked, found = check_record(row, values, kind, device_id_from) if trouble is None else (None, [trouble])
        if checked is None:
            raise ManifestError([f"row {row}: {found[0]}"])  # the file changed since it was checked
        yield checked


def differences(row, document):
    """{field: {"platform": value, "manifest": value}} for each attribute the row gives that the platform's
    device document holds otherwise; fields the row leaves empty are not compared (an update keeps them)."""
    found = {}
    info = document.get("deviceInfo") or {}
    for name, value in row.device_info.items():
        if info.get(name) != value:
            found[f"deviceInfo.{name}"] = {"platform": info.get(name), "manifest": value}
    if row.location is not None:
        held = document.get("location") or {}
        for name, value in row.location.items():
            if not _same_number(held.get(name), value):
                found[f"location.{name}"] = {"platform": held.get(name), "manifest": value}
    if row.metadata is not None:
        held = {key: value for key, value in (document.get("metadata") or {}).items() if key != METADATA_KEY}
        if held != row.metadata:
            found["metadata"] = {"platform": held, "manifest": row.metadata}
    return found


def _same_number(held, value):
    return isinstance(held, (int, float)) and not isinstance(held, bool) and math.isclose(held, value, rel_tol=0,
                                                                                          abs_tol=1e-9)

