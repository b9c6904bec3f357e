"""The fake platform's registry: device types, devices (with their tokens) and connection states, and the rules.

No HTTP here: the API module turns requests into calls and `Refusal`s into error answers. One lock
(`Registry._lock`) guards every piece of state, and every public method takes it. Stored documents are never
mutated, only replaced, so the API may serialise one after the lock is released.

Rules, and where each comes from (`SDK` is wiotp-sdk 1.0.1, `SDK tests` its registry tests (the iot-python
test/ folder, run against a real organisation), `swagger` the v0002 models of ibm-watson-iot/swagger-java,
`APIClient` iot-java's APIClient.java; `assumed` marks a choice made where no source says; docs/local-platform.md
holds the whole table):
- ids (typeId, deviceId): 1 to 36 of letters, digits, `-`, `_`, `.` (assumed: the factory's ids.py).
- a device type created without `classId` is a `Device` (SDK tests: conftest.py creates `{"id": typeId}`,
  test_api_registry_devicetypes.py asserts classId == "Device"); `Gateway` is the only other class (assumed).
- a device type's fields: swagger DeviceTypeCreationRequest (id, description, classId, deviceInfo,
  edgeConfiguration, metadata) and DeviceTypeUpdateRequest (description, deviceInfo, edgeConfiguration,
  metadata); `createdDateTime`, `updatedDateTime` as in the answer quoted in the SDK's registry/types.py.
  `description` and `metadata` are kept as sent, null included (SDK tests: testCreateDeviceTypeNone).
- a request with a key its model does not list, or a value of the wrong kind, is refused whole with 400
  (APIClient: "Invalid request (No body, invalid JSON, unexpected key, bad value)"); so is a bulk request
  with such an entry.
- device tokens: 8 to 36 characters of letters, digits and `_ . ! & @ ? * + ( ) -` (IBM docs, "Device
  authentication token" rules of the registry; SDK tests use `NotVerySecretPassw0rd` and `str(uuid4())`).
- `deviceInfo` holds only the SDK's DeviceInfo fields (swagger DeviceInfo), as strings; an update merges it
  field by field and a field sent as null keeps its value (SDK tests: testCreateAndUpdate1Device). Assumed:
  an update replaces `metadata` whole when it is not null.
- bulk add answers one result per entry with `typeId`, `deviceId`, `authToken`, `success` (swagger
  DeviceBatchResponse); bulk remove `typeId`, `deviceId`, `success` (swagger DeviceBulkDeletionResponse).
  Neither model has a reason: a failed entry says only `success: false`. Which entries fail there (a device
  that exists, or is listed twice, or whose type does not exist) is assumed.
- a device type that still has devices cannot be deleted (SDK tests: conftest.py, "It's only possible to
  delete a device type if there are no devices associated with it"); assumed: 409.
- a device's location (swagger DeviceLocation, UpdateableDeviceLocation): 404 until one is set (SDK tests:
  testDeviceLocationGetAndUpdate); a latitude outside -90..90 or longitude outside -180..180 is 400
  `CUDHT0300I` with one violation (SDK tests: testDeviceLocationInvalid).
- connection states (IBM docs, "Monitoring client connectivity",
  https://www.ibm.com/docs/en/SSQR84_cd/iot/platform/reference/connect/client_state.html, and IBM's
  developer blog of 2018-09-27 "New API for monitoring device connectivity"): a document holds `id`,
  `clientType`, `connectionStatus`, `lastConnectTime`, `lastDisconnectTime`, `lastActivityEvent`,
  `lastActivityTime`, `mqttConnectProtocol` (the blog's example). States exist only for clients active while
  the feature is on; deactivating it deletes every stored state (the docs). A client with no state is not
  in the listing and its clientId answers 404 (SDK tests: testConnectionStatusGetItemError). Removing a
  device removes its state (assumed).
- what the MQTT side records (mqtt.py): `lastActivityEvent` "mqttConnect", "mqttPublish" (the blog's example) or
  "mqttDisconnect" (assumed), `mqttConnectProtocol` "3.1.1" for an MQTT 3.1.1 client (the blog's example).
- device logins (mqtt.py asks `login`; IBM docs, "Communicating with devices (MQTT)",
  https://www.ibm.com/support/knowledgecenter/en/SSQP8H/iot/platform/devices/mqtt.html): client id
  `d:<orgId>:<typeId>:<deviceId>` (a gateway's `g:...`, SDK: wiotp/sdk/gateway/config.py), user name
  `use-token-auth`, password the device's token. Anything else is refused and leaves no trace.
- the listing lags when asked (`lag`): the same page says the connection status reflects changes after "a
  brief delay"; the device listings of a real organisation come from a search index and can lag behind
  registrations, while a GET of one device and bulk add's "already exists" see the truth.
- `keep_on_remove`: bulk remove answers those devices `success: false` and keeps them, as a device the
  platform will not remove (assumed: why the real platform would).
"""

import bisect
import copy
import hmac
import re
import secrets
import threading
import time
from datetime import UTC, datetime

CLASS_IDS = ("Device", "Gateway")
DEFAULT_CLASS_ID = "Device"
# The SDK's DeviceInfo fields (wiotp/sdk/api/registry/devices.py).
DEVICE_INFO_FIELDS = ("description", "deviceClass", "fwVersion", "hwVersion", "manufacturer", "model",
                      "serialNumber", "descriptiveLocation")
# swagger DeviceTypeCreationRequest and DeviceTypeUpdateRequest.
TYPE_CREATE_FIELDS = ("id", "classId", "description", "deviceInfo", "edgeConfiguration", "metadata")
TYPE_UPDATE_FIELDS = ("description", "deviceInfo", "edgeConfiguration", "metadata")
DEVICE_CREATE_FIELDS = ("deviceId", "authToken", "deviceInfo", "location", "metadata")
BULK_ENTRY_FIELDS = ("typeId",) + DEVICE_CREATE_FIELDS  # what DeviceCreateRequest holds
DEVICE_UPDATE_FIELDS = ("status", "deviceInfo", "metadata")  # what Devices.update() sends
CONNECTION_STATUSES = ("connected", "disconnected")
TOKEN_USER_NAME = "use-token-auth"  # the MQTT user name of every device and gateway (IBM docs, above)
MQTT_PROTOCOL = "3.1.1"  # mqttConnectProtocol of an MQTT 3.1.1 client (the blog's example)
_CLIENT_CLASSES = {"d": "Device", "g": "Gateway"}  # client id prefix -> the classId of the device's type
LOCATION_FIELDS = ("latitude", "longitude", "elevation", "accuracy", "measuredDateTime")  # UpdateableDeviceLocation
LOCATION_INVALID = "CUDHT0300I"  # SDK tests: testDeviceLocationInvalid
# What a state document holds (IBM's developer blog of 2018-09-27): the branch that records real MQTT
# connections fills the same names.
STATE_FIELDS = ("id", "clientType", "connectionStatus", "lastConnectTime", "lastDisconnectTime", "lastActivityEvent",
                "lastActivityTime", "mqttConnectProtocol")
GENERATED_TOKEN_LENGTH = 18  # the length of IBM's example token (developer.ibm.com, "How to generate API key ...")

TOKEN_SYMBOLS = "_.!&@?*+()-"
_TOKEN = re.compile(r"[A-Za-z0-9_.!&@?*+()-]*\Z")
_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + TOKEN_SYMBOLS
_ID = re.compile(r"[A-Za-z0-9_.-]{1,36}\Z")
_RANDOM = secrets.SystemRandom()

class Refusal(Exception):
    """A request the registry refuses as a whole; `kind` says why (the API maps it to a status code and an
    error id), `properties` the ids the answer names (the platform's `exception.properties`)."""

    INVALID, MISSING, EXISTS, IN_USE, LIMIT, LOCATION = "invalid", "missing", "exists", "in use", "limit", "location"

    def __init__(self, kind, message, properties=()):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.properties = [str(p) for p in properties]


def id_problem(value):
    """Why `value` is not a platform id (typeId, deviceId), or None."""
    if isinstance(value, str) and _ID.match(value):
        return None
    return "must be 1 to 36 letters, digits, '-', '_' or '.'"


def token_problem(token):
    """Why the platform would refuse `token` as a device token, or None. Never quotes the token."""
    if not isinstance(token, str):
        return "must be a string"
    if not 8 <= len(token) <= 36:
        return "must be 8 to 36 characters long"
    if not _TOKEN.match(token):
        return f"may hold only letters, digits and {TOKEN_SYMBOLS}"
    return None


def new_token():
    """A random device token, as the platform makes one when a request gives none."""
    return "".join(_RANDOM.choices(_TOKEN_ALPHABET, k=GENERATED_TOKEN_LENGTH))


def timestamp(seconds):
    """The platform's timestamp format for a time.time() value: UTC, milliseconds, 'Z'."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _maybe_timestamp(seconds):
    return None if seconds is None else timestamp(seconds)


def parse_timestamp(text):
    """time.time() seconds of an ISO-8601 date and time (UTC when it names no zone), or None if it is not one."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _field_problem(body, allowed):
    """Why a request object is malformed (not an object, unknown fields), or None."""
    if not isinstance(body, dict):
        return "must be a JSON object"
    unknown = sorted(set(body) - set(allowed))
    if unknown:  # APIClient: 400 for an "unexpected key"; the swagger request models list the fields
        return f"has unknown fields: {', '.join(unknown)}"
    return None


def _device_info_problem(device_info):
    if device_info is None:
        return None
    if not isinstance(device_info, dict):
        return "deviceInfo must be a JSON object"
    unknown = sorted(set(device_info) - set(DEVICE_INFO_FIELDS))
    if unknown:
        return f"deviceInfo has unknown fields: {', '.join(unknown)}"
    if not all(value is None or isinstance(value, str) for value in device_info.values()):
        return "deviceInfo values must be strings"
    return None


def _object_problem(body, field):
    if body.get(field) is not None and not isinstance(body[field], dict):
        return f"{field} must be a JSON object"
    return None


def _type_problem(body, allowed):
    """Why a device type's create or update body is refused (its id and class aside), or None."""
    problem = _field_problem(body, allowed)
    if problem is None and body.get("description") is not None and not isinstance(body["description"], str):
        problem = "description must be a string"
    return (problem or _device_info_problem(body.get("deviceInfo")) or _object_problem(body, "metadata")
            or _object_problem(body, "edgeConfiguration"))


def _location_problem(body):
    """Why a location update is refused: (kind, message), or None."""
    problem = _field_problem(body, LOCATION_FIELDS)
    if problem:
        return Refusal.INVALID, f"the location {problem}"
    numbers = {name: body.get(name) for name in ("latitude", "longitude", "elevation", "accuracy")}
    if not all(isinstance(numbers[name], int | float) and not isinstance(numbers[name], bool)
               for name in ("latitude", "longitude")):
        return Refusal.INVALID, "the location needs a latitude and a longitude that are numbers"
    if any(value is not None and (isinstance(value, bool) or not isinstance(value, int | float))
           for value in numbers.values()):
        return Refusal.INVALID, "the location's elevation and accuracy must be numbers"
    if body.get("measuredDateTime") is not None and parse_timestamp(body["measuredDateTime"]) is None:
        return Refusal.INVALID, "measuredDateTime must be an ISO-8601 date and time"
    if not (-90 <= numbers["latitude"] <= 90 and -180 <= numbers["longitude"] <= 180):
        return Refusal.LOCATION, "latitude must be from -90 to 90 and longitude from -180 to 180"
    return None


def _location_document(body, now):
    """A DeviceLocation as the platform stores it: what was sent, measuredDateTime (now unless sent) and
    updatedDateTime (swagger DeviceLocation)."""
    document = {name: body[name] for name in LOCATION_FIELDS if body.get(name) is not None}
    document.setdefault("measuredDateTime", timestamp(now))
    document["updatedDateTime"] = timestamp(now)
    return document


def _merged_info(stored, update):
    """deviceInfo after an update: each field sent with a value replaces, a field sent as null stays."""
    merged = dict(stored)
    merged.update({key: value for key, value in (update or {}).items() if value is not None})
    return merged


class _Device:
    """A stored device: its public document (replaced, never mutated), and what the API never shows."""

    __slots__ = ("document", "auth_token", "location", "created")

    def __init__(self, document, auth_token, location, created):
        self.document = document
        self.auth_token = auth_token
        self.location = location  # the DeviceLocation document, or None
        self.created = created  # time.time() of registration, for the lagging listing


class _Connection:
    """When a device last connected and disconnected (time.time() values), and a disconnection to come."""

    __slots__ = ("connected", "disconnected", "disconnect_due", "activity", "protocol")

    def __init__(self, connected=None, disconnected=None, disconnect_due=None, activity=None, protocol=None):
        self.connected = connected
        self.disconnected = disconnected
        self.disconnect_due = disconnect_due
        self.activity = activity  # (event name, time.time()) of the last activity, or None
        self.protocol = protocol  # the MQTT protocol level of the last connection ("3.1.1"), or None

    def settle(self, now):
        """Apply a due disconnection (connect(..., disconnect_after=S) is evaluated when read)."""
        if self.disconnect_due is not None and now >= self.disconnect_due:
            self.disconnected, self.disconnect_due = self.disconnect_due, None
            self.activity = ("mqttDisconnect", self.disconnected)


class Registry:
    """One organisation's registry. Thread-safe: every public method holds the one lock."""

    def __init__(self, org_id, device_limit=None):
        self.org_id = org_id
        self.device_limit = device_limit
        self._lock = threading.Lock()
        self.changes = 0  # counts changes, so that a saver knows when to write
        # Called (under the lock: they must not block) with (typeId, deviceId) when a device is removed, and with
        # (None, None) when the registry is cleared: the MQTT side ends the connections of such devices.
        self.removal_listeners = []
        self._clear()

    def _clear(self):
        self._types = {}  # typeId -> type document
        self._devices = {}  # typeId -> {deviceId: _Device}
        self._device_count = 0
        self._sorted = {}  # typeId -> sorted deviceIds, None -> sorted (typeId, deviceId); dropped on change
        self._removed = {}  # (typeId, deviceId) -> (document, time removed): what a lagging listing still shows
        self._connections = {}  # (typeId, deviceId) -> _Connection
        self._kept = set()  # (typeId, deviceId) that bulk remove refuses to remove (keep_on_remove)
        self.monitoring = True
        self.listing_when_off = 403  # what /clientconnectionstates answers while monitoring is off: 403 or 200
        self.lag = 0.0

    def clear(self):
        """Forget every type, device and connection state and every kept device; monitoring on, no lag."""
        with self._lock:
            self._clear()
            self.changes += 1
            for listener in self.removal_listeners:
                listener(None, None)

    def set_lag(self, seconds):
        with self._lock:
            self.lag = float(seconds)
            if not self.lag:
                self._removed.clear()

    def keep_on_remove(self, type_id, device_ids):
        """Bulk remove answers these devices with success false, and keeps them."""
        with self._lock:
            self._kept.update((type_id, device_id) for device_id in device_ids)

    def set_monitoring(self, enabled, listing_when_off=None):
        """Turn the client connection state feature on or off; off deletes every stored state (IBM docs:
        "Deactivating the feature deletes any stored client activity status documents")."""
        with self._lock:
            self.monitoring = bool(enabled)
            if not self.monitoring:
                self._connections.clear()
            if listing_when_off is not None:
                if listing_when_off not in (403, 200):
                    raise ValueError("listing_when_off must be 403 or 200")
                self.listing_when_off = listing_when_off
            self.changes += 1

    # -- device types --------------------------------------------------------------------------------------

    def create_type(self, body):
        problem = _type_problem(body, TYPE_CREATE_FIELDS)
        if problem is None and id_problem(body.get("id")):
            problem = f"id is invalid: it {id_problem(body.get('id'))}"
        if problem is None and body.get("classId") not in (None,) + CLASS_IDS:
            problem = f"classId must be one of {', '.join(CLASS_IDS)}"
        if problem:
            raise Refusal(Refusal.INVALID, f"the device type {problem}")
        type_id, class_id = body["id"], body.get("classId")
        with self._lock:
            if type_id in self._types:  # APIClient: 409 "The device type already exists"
                raise Refusal(Refusal.EXISTS, f"device type '{type_id}' already exists", [type_id])
            document = self._store_type(type_id, class_id or DEFAULT_CLASS_ID, body.get("description"),
                                        body.get("deviceInfo"), body.get("metadata"), time.time())
            if body.get("edgeConfiguration") is not None:
                document["edgeConfiguration"] = body["edgeConfiguration"]
            return document

    def get_type(self, type_id):
        with self._lock:
            return self._type(type_id)

    def update_type(self, type_id, body):
        problem = _type_problem(body, TYPE_UPDATE_FIELDS)
        if problem:
            raise Refusal(Refusal.INVALID, f"the update {problem}")
        with self._lock:
            document = dict(self._type(type_id))
            if body.get("edgeConfiguration") is not None:
                document["edgeConfiguration"] = body["edgeConfiguration"]
            # A field sent as null keeps its value (DeviceTypes.update() sends all three, unset ones as null).
            if body.get("description") is not None:
                document["description"] = body["description"]
            if body.get("metadata") is not None:
                document["metadata"] = body["metadata"]
            document["deviceInfo"] = _merged_info(document["deviceInfo"], body.get("deviceInfo"))
            document["updatedDateTime"] = timestamp(time.time())
            self._types[type_id] = document
            self.changes += 1
            return document

    def delete_type(self, type_id):
        with self._lock:
            self._type(type_id)
            if self._devices[type_id]:
                count = len(self._devices[type_id])
                raise Refusal(Refusal.IN_USE, f"device type '{type_id}' still has {count} devices", [type_id])
            del self._types[type_id], self._devices[type_id]
            self._sorted.pop(type_id, None)
            self.changes += 1

    def list_types(self, limit, after):
        """(type documents of one page sorted by id, total, whether more remain); `after` is a (typeId,) key."""
        with self._lock:
            keys = sorted((type_id,) for type_id in self._types)
            page, more = _page(keys, limit, after)
            return [self._types[type_id] for type_id, in page], len(keys), more

    def _type(self, type_id):
        document = self._types.get(type_id) if isinstance(type_id, str) else None
        if document is None:
            raise Refusal(Refusal.MISSING, f"device type '{type_id}' does not exist", [type_id])
        return document

    def _store_type(self, type_id, class_id, description, device_info, metadata, now):
        document = {"id": type_id, "classId": class_id, "description": description,
                    "deviceInfo": _merged_info({}, device_info), "metadata": metadata,
                    "createdDateTime": timestamp(now), "updatedDateTime": timestamp(now)}
        self._types[type_id] = document
        self._devices[type_id] = {}
        self.changes += 1
        return document

    # -- devices -----------------------------------------------------------------------------------------

    def add_devices(self, entries):
        """Bulk add: one result per entry, in order, and the ids of the devices added.

        A malformed entry (unknown key, bad value) refuses the whole request (APIClient's 400); so does a
        request that would pass the device limit (APIClient's 403). Otherwise each entry succeeds or fails on
        its own, and a failed one says only `success: false` (swagger DeviceBatchResponse has no reason).
        """
        for index, entry in enumerate(entries):
            problem = self._entry_problem(entry)
            if problem:
                raise Refusal(Refusal.INVALID, f"entry {index}: {problem}")
        now = time.time()
        results, accepted, seen = [], {}, set()
        with self._lock:
            for entry in entries:
                type_id, device_id = entry["typeId"], entry["deviceId"]
                if type_id not in self._types or device_id in self._devices[type_id] or (type_id, device_id) in seen:
                    results.append({"typeId": type_id, "deviceId": device_id, "success": False})
                    continue
                seen.add((type_id, device_id))
                token = new_token() if entry.get("authToken") is None else entry["authToken"]
                accepted.setdefault(type_id, []).append(
                    (device_id, token, entry.get("deviceInfo"), entry.get("metadata"), entry.get("location")))
                results.append({"typeId": type_id, "deviceId": device_id, "authToken": token, "success": True})
            self._check_limit(len(seen))
            for type_id, devices in accepted.items():
                self._store_devices(type_id, devices, now)
        return results, [device_id for devices in accepted.values() for device_id, *_ in devices]

    def _entry_problem(self, entry):
        """Why one bulk-add entry is malformed, or None. Never quotes a token."""
        problem = _field_problem(entry, BULK_ENTRY_FIELDS)
        if problem:
            return f"the device {problem}"
        if id_problem(entry.get("typeId")):
            return f"typeId is invalid: it {id_problem(entry.get('typeId'))}"
        return self._device_problem(entry, BULK_ENTRY_FIELDS)

    @staticmethod
    def _device_problem(body, allowed):
        """Why a new device's fields (id, token, deviceInfo, metadata, location) are refused, or None."""
        problem = _field_problem(body, allowed)
        if problem:
            return f"the device {problem}"
        if id_problem(body.get("deviceId")):
            return f"deviceId is invalid: it {id_problem(body.get('deviceId'))}"
        token = body.get("authToken")
        if token is not None and token_problem(token):
            return f"authToken does not meet the rules: it {token_problem(token)}"
        problem = _device_info_problem(body.get("deviceInfo")) or _object_problem(body, "metadata")
        if problem is None and body.get("location") is not None:
            problem = _object_problem(body, "location") or (_location_problem(body["location"]) or (None, None))[1]
        return problem

    def create_device(self, type_id, body):
        """One device (POST /device/types/{typeId}/devices): its document and token."""
        problem = self._device_problem(body, DEVICE_CREATE_FIELDS)
        if problem:
            raise Refusal(Refusal.INVALID, problem)
        device_id = body["deviceId"]
        token = new_token() if body.get("authToken") is None else body["authToken"]
        now = time.time()
        with self._lock:
            self._type(type_id)
            if device_id in self._devices[type_id]:
                raise Refusal(Refusal.EXISTS, f"device '{type_id}:{device_id}' already exists", [type_id, device_id])
            self._check_limit(1)
            self._store_devices(type_id, [(device_id, token, body.get("deviceInfo"), body.get("metadata"),
                                           body.get("location"))], now)
            return {**self._devices[type_id][device_id].document, "authToken": token}

    def get_location(self, type_id, device_id):
        """GET .../location: the device's location document, or a MISSING refusal when none is set."""
        with self._lock:
            location = self._device(type_id, device_id).location
            if location is None:
                raise Refusal(Refusal.MISSING, f"device '{type_id}:{device_id}' has no location", [type_id, device_id])
            return location

    def set_location(self, type_id, device_id, body):
        """PUT .../location: the stored location document (measuredDateTime defaults to now)."""
        problem = _location_problem(body)
        if problem:
            raise Refusal(problem[0], problem[1], [type_id, device_id])
        now = time.time()
        with self._lock:
            stored = self._device(type_id, device_id)
            stored.location = _location_document(body, now)
            self.changes += 1
            return stored.location

    def get_device(self, type_id, device_id):
        with self._lock:
            return self._device(type_id, device_id).document

    def update_device(self, type_id, device_id, body):
        problem = _field_problem(body, DEVICE_UPDATE_FIELDS)
        problem = problem or _device_info_problem(body.get("deviceInfo")) or _object_problem(body, "metadata")
        problem = problem or _object_problem(body, "status")
        if problem is None and body.get("status") is not None:
            alert = body["status"].get("alert")
            if set(body["status"]) - {"alert"} or not (
                    alert is None or isinstance(alert, dict) and isinstance(alert.get("enabled"), bool)):
                problem = 'status must be {"alert": {"enabled": true or false}}'
        if problem:
            raise Refusal(Refusal.INVALID, f"the update {problem}")
        with self._lock:
            stored = self._device(type_id, device_id)
            document = dict(stored.document)
            document["deviceInfo"] = _merged_info(document["deviceInfo"], body.get("deviceInfo"))
            if body.get("metadata") is not None:
                document["metadata"] = body["metadata"]
            if (body.get("status") or {}).get("alert") is not None:
                document["status"] = {"alert": {"enabled": body["status"]["alert"]["enabled"],
                                                "timestamp": timestamp(time.time())}}
            stored.document = document
            self.changes += 1
            return document

    def delete_device(self, type_id, device_id):
        with self._lock:
            self._device(type_id, device_id)
            self._remove(type_id, device_id, time.time())

    def remove_devices(self, entries):
        """Bulk remove: one result per entry, in order (swagger DeviceBulkDeletionResponse: typeId, deviceId,
        success). A malformed entry refuses the whole request (APIClient's 400)."""
        for index, entry in enumerate(entries):
            problem = _field_problem(entry, ("typeId", "deviceId"))
            if problem is None and not all(isinstance(entry.get(key), str) for key in ("typeId", "deviceId")):
                problem = "needs a typeId and a deviceId"
            if problem:
                raise Refusal(Refusal.INVALID, f"entry {index}: {problem}")
        now = time.time()
        results = []
        with self._lock:
            for entry in entries:
                type_id, device_id = entry["typeId"], entry["deviceId"]
                removed = device_id in self._devices.get(type_id, {}) and (type_id, device_id) not in self._kept
                if removed:
                    self._remove(type_id, device_id, now)
                results.append({"typeId": type_id, "deviceId": device_id, "success": removed})
        return results

    def list_devices(self, type_id, limit, after):
        """(device documents of one page, total, whether more remain), as the listing shows them.

        With `type_id` the keys are (deviceId,), else (typeId, deviceId). Lagging, the listing leaves out
        devices registered less than `lag` seconds ago and still shows those removed less than `lag` ago.
        """
        with self._lock:
            if type_id is not None:
                self._type(type_id)
            if self.lag:
                documents = self._lagging_view(type_id, time.time())
                keys = sorted(documents)
            else:
                keys = self._sorted_keys(type_id)
                documents = None
            page, more = _page(keys, limit, after)
            if documents is None:
                documents = {key: self._devices[type_id or key[0]][key[-1]].document for key in page}
            return [documents[key] for key in page], len(keys), more

    def _sorted_keys(self, type_id):
        keys = self._sorted.get(type_id)
        if keys is None:
            if type_id is None:
                keys = sorted((t, d) for t, devices in self._devices.items() for d in devices)
            else:
                keys = sorted((d,) for d in self._devices[type_id])
            self._sorted[type_id] = keys
        return keys

    def _lagging_view(self, type_id, now):
        """{key: document} of what a listing `lag` seconds behind shows."""
        horizon = now - self.lag
        self._removed = {key: gone for key, gone in self._removed.items() if gone[1] > horizon}
        view = {}
        for t, devices in self._devices.items():
            if type_id in (None, t):
                view.update({(t, d): stored.document for d, stored in devices.items() if stored.created <= horizon})
        view.update({key: document for key, (document, _) in self._removed.items() if type_id in (None, key[0])})
        return view if type_id is None else {(d,): document for (_, d), document in view.items()}

    def _device(self, type_id, device_id):
        stored = self._devices.get(type_id, {}).get(device_id) if isinstance(type_id, str) else None
        if stored is None:
            raise Refusal(Refusal.MISSING, f"device '{type_id}:{device_id}' does not exist", [type_id, device_id])
        return stored

    def _client_id(self, type_id, device_id):
        # Devices of a Gateway type are gateways, whose client ids start with g: (SDK: the gateway client's ids).
        prefix = "g" if self._types[type_id]["classId"] == "Gateway" else "d"
        return f"{prefix}:{self.org_id}:{type_id}:{device_id}"

    def _check_limit(self, adding):
        if self.device_limit is not None and self._device_count + adding > self.device_limit:
            raise Refusal(Refusal.LIMIT, f"the organization's limit of {self.device_limit} devices would be exceeded: "
                          f"{self._device_count} registered, {adding} more requested")

    def _store_devices(self, type_id, devices, now):
        stored = self._devices[type_id]
        registration = {"date": timestamp(now)}  # shared by the devices of one request: documents are replaced
        status = {"alert": {"enabled": False, "timestamp": timestamp(now)}}
        for device_id, token, device_info, metadata, location in devices:
            document = {"typeId": type_id, "deviceId": device_id, "clientId": self._client_id(type_id, device_id),
                        "deviceInfo": _merged_info({}, device_info), "metadata": metadata or {},
                        "registration": registration, "status": status}
            location = None if location is None else _location_document(location, now)
            stored[device_id] = _Device(document, token, location, now)
            self._removed.pop((type_id, device_id), None)
        self._device_count += len(devices)
        self._sorted.pop(type_id, None)
        self._sorted.pop(None, None)
        self.changes += 1

    def _remove(self, type_id, device_id, now):
        stored = self._devices[type_id].pop(device_id)
        if self.lag:
            self._removed[(type_id, device_id)] = (stored.document, now)
        self._connections.pop((type_id, device_id), None)
        for listener in self.removal_listeners:
            listener(type_id, device_id)
        self._device_count -= 1
        self._sorted.pop(type_id, None)
        self._sorted.pop(None, None)
        self.changes += 1

    # -- connection states -----------------------------------------------------------------------------

    def connect(self, type_id, device_ids, disconnect_after=None, now=None, protocol="3.1.1"):
        """Record MQTT connections (while monitoring is on: the platform records nothing while it is off)."""
        now = time.time() if now is None else now
        with self._lock:
            device_ids = self._known(type_id, device_ids)
            if not self.monitoring:
                return
            for device_id in device_ids:
                state = self._connections.setdefault((type_id, device_id), _Connection())
                state.connected, state.activity, state.protocol = now, ("mqttConnect", now), protocol
                state.disconnect_due = None if disconnect_after is None else now + disconnect_after
            self.changes += 1

    def disconnect(self, type_id, device_ids, now=None):
        now = time.time() if now is None else now
        with self._lock:
            device_ids = self._known(type_id, device_ids)
            never = [d for d in device_ids if (type_id, d) not in self._connections]
            if never:
                raise ValueError(f"no connection recorded, so cannot disconnect: {', '.join(never)}")
            for device_id in device_ids:
                state = self._connections[(type_id, device_id)]
                state.disconnected, state.disconnect_due, state.activity = now, None, ("mqttDisconnect", now)
            self.changes += 1

    # -- what MQTT clients do (mqtt.py) -------------------------------------------------------------------

    def login(self, client_id, user_name, password):
        """(typeId, deviceId) of the device or gateway a client id names, when the user name and token are its own
        (compared in constant time); else None. Changes nothing."""
        parts = client_id.split(":") if isinstance(client_id, str) else []
        if len(parts) != 4 or parts[0] not in _CLIENT_CLASSES or parts[1] != self.org_id:
            return None
        _, _, type_id, device_id = parts
        with self._lock:
            device_type = self._types.get(type_id)
            stored = self._devices.get(type_id, {}).get(device_id)
            if device_type is None or stored is None or device_type["classId"] != _CLIENT_CLASSES[parts[0]]:
                return None
            token = stored.auth_token
        if user_name != TOKEN_USER_NAME or not isinstance(password, str):
            return None
        if not hmac.compare_digest(password.encode("utf-8"), token.encode("utf-8")):
            return None
        return type_id, device_id

    def client_connected(self, type_id, device_id, now=None):
        self._record(type_id, device_id, "mqttConnect", time.time() if now is None else now)

    def client_published(self, type_id, device_id, now=None):
        self._record(type_id, device_id, "mqttPublish", time.time() if now is None else now)

    def client_disconnected(self, type_id, device_id, now=None):
        self._record(type_id, device_id, "mqttDisconnect", time.time() if now is None else now)

    def _record(self, type_id, device_id, event, now):
        """Record what a client of a registered device did, while monitoring is on. A device removed meanwhile is
        passed over, and so is a late disconnection or publish of a connection whose state was dropped (its device
        removed and registered again, or monitoring switched off and on)."""
        with self._lock:
            if not self.monitoring or device_id not in self._devices.get(type_id, {}):
                return
            if event != "mqttConnect" and (type_id, device_id) not in self._connections:
                return
            state = self._connections.setdefault((type_id, device_id), _Connection())
            if event == "mqttConnect":
                state.connected, state.disconnect_due, state.protocol = now, None, MQTT_PROTOCOL
            elif event == "mqttDisconnect":
                state.disconnected, state.disconnect_due = now, None
            state.activity = (event, now)
            self.changes += 1

    def connection_state(self, type_id, device_id):
        """The state document of one device, or None when it is not registered or has no connection recorded."""
        with self._lock:
            state = self._connections.get((type_id, device_id))
            return None if state is None else self._state_document(type_id, device_id, state, time.time())

    def state_of_client(self, client_id):
        """GET /clientconnectionstates/{clientId}: the state document, or a MISSING refusal."""
        with self._lock:
            now = time.time()
            for (type_id, device_id), state in self._connections.items():
                if self._client_id(type_id, device_id) == client_id:
                    return self._state_document(type_id, device_id, state, now)
        raise Refusal(Refusal.MISSING, f"no connection state for client '{client_id}'", [client_id])

    def list_states(self, filters, limit, after):
        """(state documents of one page sorted by clientId, total, whether more remain); keys are (clientId,).

        `filters`: deviceType, deviceId, connectionStatus, connectedAfter (seconds), as
        ConnectionStatus.find() sends them (wiotp/sdk/api/registry/connectionStatus.py).
        """
        with self._lock:
            now = time.time()
            documents = {}
            for (type_id, device_id), state in self._connections.items():
                if filters.get("deviceType") not in (None, type_id) or filters.get("deviceId") not in (None, device_id):
                    continue
                document = self._state_document(type_id, device_id, state, now)
                if filters.get("connectionStatus") not in (None, document["connectionStatus"]):
                    continue
                if filters.get("connectedAfter") is not None and not state.connected > filters["connectedAfter"]:
                    continue
                documents[(document["id"],)] = document
            keys = sorted(documents)
            page, more = _page(keys, limit, after)
            return [documents[key] for key in page], len(keys), more

    def _known(self, type_id, device_ids):
        device_ids = list(device_ids)
        missing = [d for d in device_ids if d not in self._devices.get(type_id, {})]
        if missing:
            raise ValueError(f"not registered in {type_id}: {', '.join(map(str, missing))}")
        return device_ids

    def _state_document(self, type_id, device_id, state, now):
        """The platform's state document (STATE_FIELDS; a time the platform has not seen is null: assumed)."""
        state.settle(now)
        connected = state.disconnected is None or state.disconnected < state.connected
        client_id = self._client_id(type_id, device_id)
        event, active = state.activity or (None, None)
        return {"id": client_id,
                "clientType": "gateway" if client_id.startswith("g:") else "device",
                "connectionStatus": "connected" if connected else "disconnected",
                "lastConnectTime": _maybe_timestamp(state.connected),
                "lastDisconnectTime": _maybe_timestamp(state.disconnected),
                "lastActivityEvent": event,
                "lastActivityTime": _maybe_timestamp(active),
                "mqttConnectProtocol": state.protocol}

    # -- the control interface's views and direct stores ------------------------------------------------

    def preregister(self, type_id, device_ids, class_id, token):
        """Store devices directly (no device limit), creating the type if missing; returns {deviceId: token}."""
        device_ids = list(device_ids)
        problems = [f"typeId {type_id!r} {id_problem(type_id)}"] if id_problem(type_id) else []
        problems += [f"deviceId {d!r} {id_problem(d)}" for d in device_ids if id_problem(d)]
        if class_id not in CLASS_IDS:
            problems.append(f"class_id must be one of {CLASS_IDS}")
        if token is not None and token_problem(token):
            problems.append(f"token {token_problem(token)}")
        if len(set(device_ids)) != len(device_ids):
            problems.append("device_ids holds duplicates")
        if problems:
            raise ValueError("; ".join(problems))
        now = time.time()
        with self._lock:
            if type_id not in self._types:
                self._store_type(type_id, class_id, None, None, None, now)
            existing = sorted(set(device_ids) & self._devices[type_id].keys())
            if existing:
                raise ValueError(f"already registered in {type_id}: {', '.join(existing)}")
            tokens = {device_id: token or new_token() for device_id in device_ids}
            self._store_devices(type_id, [(d, tokens[d], None, None, None) for d in device_ids], now)
        return tokens

    def device(self, type_id, device_id):
        """The stored device, with its authToken and location (which the API never shows), or None."""
        with self._lock:
            stored = self._devices.get(type_id, {}).get(device_id)
            if stored is None:
                return None
            return {**copy.deepcopy(stored.document), "authToken": stored.auth_token,
                    "location": copy.deepcopy(stored.location)}

    def devices_of(self, type_id):
        with self._lock:
            return sorted(self._devices.get(type_id, {}))

    # -- saving and loading ----------------------------------------------------------------------------

    def snapshot(self):
        """Everything the registry holds, as JSON-ready data (device tokens included: keep it private)."""
        with self._lock:
            return {
                "types": list(self._types.values()),
                "devices": [{"document": s.document, "authToken": s.auth_token, "location": s.location,
                             "created": s.created} for devices in self._devices.values() for s in devices.values()],
                "connections": [{"typeId": t, "deviceId": d, "connected": c.connected, "disconnected": c.disconnected,
                                 "disconnectDue": c.disconnect_due, "activity": c.activity, "protocol": c.protocol}
                                for (t, d), c in self._connections.items()],
                "listingWhenOff": self.listing_when_off,
                "monitoring": self.monitoring,
            }

    def restore(self, snapshot):
        """Replace the registry's content with a snapshot() (KeyError, TypeError or ValueError if malformed)."""
        with self._lock:
            self._clear()
            for document in snapshot["types"]:
                self._types[document["id"]] = document
                self._devices[document["id"]] = {}
            for device in snapshot["devices"]:
                document = device["document"]
                self._devices[document["typeId"]][document["deviceId"]] = _Device(
                    document, device["authToken"], device["location"], float(device["created"]))
                self._device_count += 1
            for state in snapshot["connections"]:
                self._device(state["typeId"], state["deviceId"])
                activity = state.get("activity")
                self._connections[(state["typeId"], state["deviceId"])] = _Connection(
                    state["connected"], state["disconnected"], state["disconnectDue"],
                    None if activity is None else (str(activity[0]), float(activity[1])), state.get("protocol"))
            self.monitoring = bool(snapshot["monitoring"])
            self.listing_when_off = 200 if snapshot.get("listingWhenOff") == 200 else 403


def _page(sorted_keys, limit, after):
    """(keys of the page, whether more remain) from the keys sorted, starting after the key `after`."""
    start = bisect.bisect_right(sorted_keys, after) if after is not None else 0
    return sorted_keys[start:start + limit], start + limit < len(sorted_keys)
