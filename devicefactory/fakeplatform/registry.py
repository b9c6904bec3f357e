"""The fake platform's registry: device types, devices (with their tokens) and connection states, and the rules.

No HTTP here: the API module turns requests into calls and `Refusal`s into error answers. One lock
(`Registry._lock`) guards every piece of state, and every public method takes it. Stored documents are never
mutated, only replaced, so the API may serialise one after the lock is released.

Rules, and where each comes from (`SDK` is wiotp-sdk 0.x, `SDK tests` is ibm-watson-iot/iot-python's test/
folder, which ran against a real organisation; `strict` marks a choice made where the real rule is unknown):
- ids (typeId, deviceId): 1 to 36 of letters, digits, `-`, `_`, `.` (the factory's ids.py and the earlier
  fake; not re-checked against IBM's docs, so strict).
- a device type created without `classId` is a `Device` (SDK tests: conftest.py creates `{"id": typeId}`,
  test_api_registry_devicetypes.py asserts classId == "Device"); `Gateway` is the only other class.
- a device type's `description` and `metadata` are kept as sent, null included (SDK tests:
  testCreateDeviceTypeNone, testCreateDeviceMetadataNone read them back as None).
- device tokens: the platform took `NotVerySecretPassw0rd` (no symbol) and `str(uuid.uuid4())` (no capital,
  and about one in ten holds a character three times in a row) (SDK tests: test_api_registry_devices.py,
  conftest.py). So there is no symbol, capital or repetition rule. Strict: 8 to 36 characters, only letters,
  digits and `_ . ! & @ ? * + ( ) -`, at least one letter and one digit.
- `deviceInfo` holds only the SDK's DeviceInfo fields, as strings (the SDK builds `DeviceInfo(**deviceInfo)`
  from every document, so any other key would break it); an update merges it field by field and a field sent
  as null keeps its value (SDK tests: testCreateAndUpdate1Device). Strict: an update replaces `metadata`
  whole when it is not null.
- a device type that still has devices cannot be deleted (SDK tests: conftest.py, "It's only possible to
  delete a device type if there are no devices associated with it"); strict: 409.
- connection states (IBM docs, "Monitoring client connectivity",
  https://www.ibm.com/docs/en/SSQR84_cd/iot/platform/reference/connect/client_state.html): the platform
  records client activity (connects, disconnects), so a device that never connected has no state: it is
  absent from the listing and its clientId is not found (strict; the SDK's tests expect 404 for an unknown
  clientId). Removing a device removes its state.
- the listing lags when asked (`lag`): the same page says the connection status reflects changes after "a
  brief delay"; the device listings of a real organisation come from a search index and can lag behind
  registrations, while a GET of one device and bulk add's "already exists" see the truth.
- bulk remove answers each device on its own, `success` false with an `error` for one it did not remove (SDK:
  Devices.delete() hands back the answer's per-entry results). A device set aside with `keep_on_remove` is
  answered so and stays registered, as a device the platform will not remove does (strict: the reason and its
  error id are the fake's own).
"""

import bisect
import copy
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
TYPE_CREATE_FIELDS = ("id", "classId", "description", "deviceInfo", "metadata")
TYPE_UPDATE_FIELDS = ("description", "deviceInfo", "metadata")  # what DeviceTypes.update() sends
DEVICE_CREATE_FIELDS = ("deviceId", "authToken", "deviceInfo", "location", "metadata")
BULK_ENTRY_FIELDS = ("typeId",) + DEVICE_CREATE_FIELDS  # what DeviceCreateRequest holds
DEVICE_UPDATE_FIELDS = ("status", "deviceInfo", "metadata")  # what Devices.update() sends
CONNECTION_STATUSES = ("connected", "disconnected")
GENERATED_TOKEN_LENGTH = 18  # the length of IBM's example token (developer.ibm.com, "How to generate API key ...")

TOKEN_SYMBOLS = "_.!&@?*+()-"
_TOKEN = re.compile(r"[A-Za-z0-9_.!&@?*+()-]*\Z")
_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + TOKEN_SYMBOLS
_ID = re.compile(r"[A-Za-z0-9_.-]{1,36}\Z")
_RANDOM = secrets.SystemRandom()

# Error ids of the registry's refusals; the fake's own, in the platform's shape (clients act on status codes).
INVALID_TYPE_ID = "CUDRS0101E"
TYPE_MISSING = "CUDRS0102E"
INVALID_DEVICE_ID = "CUDRS0103E"
INVALID_TOKEN = "CUDRS0104E"
INVALID_FIELD = "CUDRS0105E"
DEVICE_EXISTS = "CUDRS0106E"
DEVICE_MISSING = "CUDRS0107E"
TYPE_EXISTS = "CUDRS0108E"
TYPE_IN_USE = "CUDRS0109E"
LIMIT_REACHED = "CUDRS0002E"
STATE_MISSING = "CUDRS0110E"
DEVICE_KEPT = "CUDRS0111E"


class Refusal(Exception):
    """A request the registry refuses as a whole; `kind` says why, and the API maps it to a status code."""

    INVALID, MISSING, EXISTS, IN_USE, LIMIT = "invalid", "missing", "exists", "in use", "limit"

    def __init__(self, kind, error_id, message):
        super().__init__(message)
        self.kind = kind
        self.error_id = error_id
        self.message = message


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
    if not any(c.isascii() and c.isalpha() for c in token):
        return "needs a letter"
    if not any(c.isascii() and c.isdigit() for c in token):
        return "needs a digit"
    return None


def new_token():
    """A random device token, as the platform makes one when a request gives none."""
    while True:
        token = "".join(_RANDOM.choices(_TOKEN_ALPHABET, k=GENERATED_TOKEN_LENGTH))
        if token_problem(token) is None:
            return token


def timestamp(seconds):
    """The platform's timestamp format for a time.time() value: UTC, milliseconds, 'Z'."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    if unknown:  # strict: the platform's published request models list these fields only
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
    return problem or _device_info_problem(body.get("deviceInfo")) or _object_problem(body, "metadata")


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
        self.location = location
        self.created = created  # time.time() of registration, for the lagging listing


class _Connection:
    """When a device last connected and disconnected (time.time() values), and a disconnection to come."""

    __slots__ = ("connected", "disconnected", "disconnect_due")

    def __init__(self, connected=None, disconnected=None, disconnect_due=None):
        self.connected = connected
        self.disconnected = disconnected
        self.disconnect_due = disconnect_due

    def settle(self, now):
        """Apply a due disconnection (connect(..., disconnect_after=S) is evaluated when read)."""
        if self.disconnect_due is not None and now >= self.disconnect_due:
            self.disconnected, self.disconnect_due = self.disconnect_due, None


class Registry:
    """One organisation's registry. Thread-safe: every public method holds the one lock."""

    def __init__(self, org_id, device_limit=None):
        self.org_id = org_id
        self.device_limit = device_limit
        self._lock = threading.Lock()
        self.changes = 0  # counts changes, so that a saver knows when to write
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
        self.lag = 0.0

    def clear(self):
        """Forget every type, device and connection state and every kept device; monitoring on, no lag."""
        with self._lock:
            self._clear()
            self.changes += 1

    def set_lag(self, seconds):
        with self._lock:
            self.lag = float(seconds)
            if not self.lag:
                self._removed.clear()

    def keep_on_remove(self, type_id, device_ids):
        """Bulk remove answers these devices with success false, and keeps them."""
        with self._lock:
            self._kept.update((type_id, device_id) for device_id in device_ids)

    def set_monitoring(self, enabled):
        with self._lock:
            self.monitoring = bool(enabled)
            self.changes += 1

    # -- device types --------------------------------------------------------------------------------------

    def create_type(self, body):
        problem = _type_problem(body, TYPE_CREATE_FIELDS)
        if problem is None and id_problem(body.get("id")):
            problem = f"id is invalid: it {id_problem(body.get('id'))}"
        if problem is None and body.get("classId") not in (None,) + CLASS_IDS:
            problem = f"classId must be one of {', '.join(CLASS_IDS)}"
        if problem:
            raise Refusal(Refusal.INVALID, INVALID_FIELD, f"the device type {problem}")
        type_id, class_id = body["id"], body.get("classId")
        with self._lock:
            if type_id in self._types:
                raise Refusal(Refusal.EXISTS, TYPE_EXISTS, f"device type '{type_id}' already exists")
            return self._store_type(type_id, class_id or DEFAULT_CLASS_ID, body.get("description"),
                                    body.get("deviceInfo"), body.get("metadata"), time.time())

    def get_type(self, type_id):
        with self._lock:
            return self._type(type_id)

    def update_type(self, type_id, body):
        problem = _type_problem(body, TYPE_UPDATE_FIELDS)
        if problem:
            raise Refusal(Refusal.INVALID, INVALID_FIELD, f"the update {problem}")
        with self._lock:
            document = dict(self._type(type_id))
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
                raise Refusal(Refusal.IN_USE, TYPE_IN_USE,
                              f"device type '{type_id}' still has {len(self._devices[type_id])} devices")
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
            raise Refusal(Refusal.MISSING, TYPE_MISSING, f"device type '{type_id}' does not exist")
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

        Each entry is checked on its own; a request that would pass the device limit is refused whole.
        """
        now = time.time()
        results, accepted, seen = [], {}, set()
        with self._lock:
            for entry in entries:
                type_id, device_id = entry.get("typeId"), entry.get("deviceId")
                problem = self._entry_problem(entry, seen)
                if problem:
                    results.append({"typeId": type_id, "deviceId": device_id, "success": False, "error": problem})
                    continue
                seen.add((type_id, device_id))
                token = new_token() if entry.get("authToken") is None else entry["authToken"]
                accepted.setdefault(type_id, []).append(
                    (device_id, token, entry.get("deviceInfo"), entry.get("metadata"), entry.get("location")))
                results.append({"typeId": type_id, "deviceId": device_id,
                                "clientId": self._client_id(type_id, device_id), "authToken": token,
                                "success": True})
            self._check_limit(len(seen))
            for type_id, devices in accepted.items():
                self._store_devices(type_id, devices, now)
        return results, [device_id for devices in accepted.values() for device_id, *_ in devices]

    def _entry_problem(self, entry, seen):
        """Why one bulk-add entry cannot be registered (its `error`), or None. Never quotes a token."""
        type_id, device_id = entry.get("typeId"), entry.get("deviceId")
        if id_problem(type_id):
            return f"{INVALID_TYPE_ID}: invalid typeId: {id_problem(type_id)}"
        if type_id not in self._types:
            return f"{TYPE_MISSING}: device type '{type_id}' does not exist"
        if id_problem(device_id):
            return f"{INVALID_DEVICE_ID}: invalid deviceId: {id_problem(device_id)}"
        problem = self._device_problem(entry, BULK_ENTRY_FIELDS)
        if problem:
            return problem
        if device_id in self._devices[type_id]:
            return f"{DEVICE_EXISTS}: device '{type_id}:{device_id}' already exists"
        if (type_id, device_id) in seen:
            return f"{DEVICE_EXISTS}: device '{type_id}:{device_id}' already exists (listed twice in this request)"
        return None

    @staticmethod
    def _device_problem(body, allowed):
        """Why a new device's fields (token, deviceInfo, metadata, location) are refused, or None."""
        problem = _field_problem(body, allowed)
        if problem:
            return f"{INVALID_FIELD}: the device {problem}"
        token = body.get("authToken")
        if token is not None and token_problem(token):
            return f"{INVALID_TOKEN}: authToken does not meet the rules: it {token_problem(token)}"
        problem = (_device_info_problem(body.get("deviceInfo")) or _object_problem(body, "metadata")
                   or _object_problem(body, "location"))
        return f"{INVALID_FIELD}: {problem}" if problem else None

    def create_device(self, type_id, body):
        """One device (POST /device/types/{typeId}/devices): its document and token."""
        if not isinstance(body, dict):
            raise Refusal(Refusal.INVALID, INVALID_FIELD, "the device must be a JSON object")
        device_id = body.get("deviceId")
        if id_problem(device_id):
            raise Refusal(Refusal.INVALID, INVALID_DEVICE_ID, f"invalid deviceId: {id_problem(device_id)}")
        problem = self._device_problem(body, DEVICE_CREATE_FIELDS)
        if problem:
            error_id, _, message = problem.partition(": ")
            raise Refusal(Refusal.INVALID, error_id, message)
        token = new_token() if body.get("authToken") is None else body["authToken"]
        with self._lock:
            self._type(type_id)
            if device_id in self._devices[type_id]:
                raise Refusal(Refusal.EXISTS, DEVICE_EXISTS, f"device '{type_id}:{device_id}' already exists")
            self._check_limit(1)
            self._store_devices(type_id, [(device_id, token, body.get("deviceInfo"), body.get("metadata"),
                                           body.get("location"))], time.time())
            return {**self._devices[type_id][device_id].document, "authToken": token}

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
            raise Refusal(Refusal.INVALID, INVALID_FIELD, f"the update {problem}")
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
        """Bulk remove: one result per entry, in order."""
        now = time.time()
        results = []
        with self._lock:
            for entry in entries:
                type_id, device_id = entry.get("typeId"), entry.get("deviceId")
                devices = self._devices.get(type_id) if isinstance(type_id, str) else None
                if devices is not None and isinstance(device_id, str) and device_id in devices:
                    if (type_id, device_id) in self._kept:
                        results.append({"typeId": type_id, "deviceId": device_id, "success": False,
                                        "error": f"{DEVICE_KEPT}: device '{type_id}:{device_id}' could not be removed"})
                        continue
                    self._remove(type_id, device_id, now)
                    results.append({"typeId": type_id, "deviceId": device_id, "success": True})
                else:
                    results.append({"typeId": type_id, "deviceId": device_id, "success": False,
                                    "error": f"{DEVICE_MISSING}: device '{type_id}:{device_id}' does not exist"})
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
            raise Refusal(Refusal.MISSING, DEVICE_MISSING, f"device '{type_id}:{device_id}' does not exist")
        return stored

    def _client_id(self, type_id, device_id):
        # Devices of a Gateway type are gateways, whose client ids start with g: (SDK: the gateway client's ids).
        prefix = "g" if self._types[type_id]["classId"] == "Gateway" else "d"
        return f"{prefix}:{self.org_id}:{type_id}:{device_id}"

    def _check_limit(self, adding):
        if self.device_limit is not None and self._device_count + adding > self.device_limit:
            raise Refusal(Refusal.LIMIT, LIMIT_REACHED,
                          f"the organization's limit of {self.device_limit} devices would be exceeded: "
                          f"{self._device_count} registered, {adding} more requested")

    def _store_devices(self, type_id, devices, now):
        stored = self._devices[type_id]
        registration = {"date": timestamp(now)}  # shared by the devices of one request: documents are replaced
        status = {"alert": {"enabled": False, "timestamp": timestamp(now)}}
        for device_id, token, device_info, metadata, location in devices:
            document = {"typeId": type_id, "deviceId": device_id, "clientId": self._client_id(type_id, device_id),
                        "deviceInfo": _merged_info({}, device_info), "metadata": metadata or {},
                        "registration": registration, "status": status}
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
        self._device_count -= 1
        self._sorted.pop(type_id, None)
        self._sorted.pop(None, None)
        self.changes += 1

    # -- connection states -----------------------------------------------------------------------------

    def connect(self, type_id, device_ids, disconnect_after=None, now=None):
        now = time.time() if now is None else now
        with self._lock:
            for device_id in self._known(type_id, device_ids):
                state = self._connections.setdefault((type_id, device_id), _Connection())
                state.connected = now
                state.disconnect_due = None if disconnect_after is None else now + disconnect_after
            self.changes += 1

    def disconnect(self, type_id, device_ids, now=None):
        now = time.time() if now is None else now
        with self._lock:
            device_ids = self._known(type_id, device_ids)
            never = [d for d in device_ids if (type_id, d) not in self._connections]
            if never:
                raise ValueError(f"never connected, so cannot disconnect: {', '.join(never)}")
            for device_id in device_ids:
                state = self._connections[(type_id, device_id)]
                state.disconnected, state.disconnect_due = now, None
            self.changes += 1

    def connection_state(self, type_id, device_id):
        """The state document of one device, or None when it is not registered or never connected."""
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
        raise Refusal(Refusal.MISSING, STATE_MISSING, f"no connection state for client '{client_id}'")

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
        state.settle(now)
        connected = state.disconnected is None or state.disconnected < state.connected
        document = {"id": self._client_id(type_id, device_id),
                    "connectionStatus": "connected" if connected else "disconnected",
                    "lastConnectedDateTime": timestamp(state.connected)}
        if state.disconnected is not None:
            document["lastDisconnectedDateTime"] = timestamp(state.disconnected)
        return document

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
                                 "disconnectDue": c.disconnect_due} for (t, d), c in self._connections.items()],
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
                self._connections[(state["typeId"], state["deviceId"])] = _Connection(
                    state["connected"], state["disconnected"], state["disconnectDue"])
            self.monitoring = bool(snapshot["monitoring"])


def _page(sorted_keys, limit, after):
    """(keys of the page, whether more remain) from the keys sorted, starting after the key `after`."""
    start = bisect.bisect_right(sorted_keys, after) if after is not None else 0
    return sorted_keys[start:start + limit], start + limit < len(sorted_keys)
