"""A local fake of the Watson IoT Platform v0002 REST API: HTTPS on loopback, state in memory, failure knobs.

Tests start a `FakePlatform` in-process; users try the factory without an IBM account with
`python -m devicefactory.fakeplatform` (see `--help`). It implements what the device factory uses: device
types, bulk device add/remove, device lookup and paged listings, with the platform's id and token rules.
Error ids (`CUDRS...E`) follow the platform's shape but are the fake's own: branch on status codes.
"""

import argparse
import base64
import bisect
import copy
import hmac
import json
import re
import secrets
import shlex
import shutil
import signal
import socket
import socketserver
import ssl
import sys
import tempfile
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import trustme

from devicefactory.errors import EXIT_ERROR, EXIT_OK

API_PREFIX = "/api/v0002/"
CLASS_IDS = ("Device", "Gateway")
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 1000
# An oversized body up to this size is read and dropped so that the client gets to read its 413;
# a larger one is refused from its Content-Length and the connection closed.
MAX_DRAIN_BYTES = 64 * 1024 * 1024
DEFAULT_STATE_DIR = ".fakeplatform"
CA_FILE_NAME = "ca.pem"

_ID = re.compile(r"[A-Za-z0-9_.-]{1,36}\Z")
_ORG_ID = re.compile(r"[a-z0-9]{1,36}\Z")
_API_KEY = re.compile(r"a-([a-z0-9]+)-([a-z0-9]{10})\Z")
_TOKEN_SYMBOLS = "_.!&@?*+()-"
_TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9_.!&@?*+()-]*\Z")
_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + _TOKEN_SYMBOLS
_TRIPLE = re.compile(r"(.)\1\1")
_KEY_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_RANDOM = secrets.SystemRandom()

# Error ids, one per kind of refusal.
BAD_REQUEST = "CUDRS0007E"  # the platform's own id for an invalid request
UNAUTHORIZED = "CUDRS0001E"
FORBIDDEN_LIMIT = "CUDRS0002E"
NOT_FOUND = "CUDRS0003E"
METHOD_NOT_ALLOWED = "CUDRS0004E"
CONFLICT = "CUDRS0005E"
TOO_LARGE = "CUDRS0006E"
LENGTH_REQUIRED = "CUDRS0008E"
INTERNAL = "CUDRS0009E"
INJECTED = "CUDRS9999E"
INVALID_TYPE_ID = "CUDRS0101E"
TYPE_MISSING = "CUDRS0102E"
INVALID_DEVICE_ID = "CUDRS0103E"
INVALID_TOKEN = "CUDRS0104E"
INVALID_FIELD = "CUDRS0105E"
DEVICE_EXISTS = "CUDRS0106E"
DEVICE_MISSING = "CUDRS0107E"


def _id_problem(value):
    """Why `value` is not a platform id (typeId, deviceId), or None."""
    if isinstance(value, str) and _ID.match(value):
        return None
    return "must be 1 to 36 letters, digits, '-', '_' or '.'"


def _token_problem(token):
    """Why `token` breaks the platform's device token rules, or None. Never quotes the token."""
    if not isinstance(token, str):
        return "must be a string"
    if not 8 <= len(token) <= 36:
        return "must be 8 to 36 characters long"
    if not _TOKEN_CHARACTERS.match(token):
        return f"may hold only letters, digits and {_TOKEN_SYMBOLS}"
    if not any("a" <= c <= "z" for c in token):
        return "needs a lowercase letter"
    if not any("A" <= c <= "Z" for c in token):
        return "needs an uppercase letter"
    if not any("0" <= c <= "9" for c in token):
        return "needs a digit"
    if not any(c in _TOKEN_SYMBOLS for c in token):
        return f"needs one of {_TOKEN_SYMBOLS}"
    if _TRIPLE.search(token):
        return "must not repeat a character more than twice in a row"
    return None


def _new_token(length=18):
    """A random device token that meets the rules, as the platform generates when none is given."""
    while True:
        token = "".join(_RANDOM.choices(_TOKEN_ALPHABET, k=length))
        if _token_problem(token) is None:
            return token


def _is_number(text):
    """Whether `text` is a whole number written in ASCII digits (str.isdigit alone accepts '²')."""
    return text.isascii() and text.isdigit()


def _now():
    """The platform's timestamp format: UTC, milliseconds, 'Z'."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _route(path):
    """(route name, path arguments) for a request path, or (None, ()) for a path the fake does not know."""
    if not path.startswith(API_PREFIX):
        return None, ()
    # rstrip: the SDK lists a type's devices at `.../devices/`, with a trailing slash.
    parts = [unquote(part) for part in path[len(API_PREFIX):].rstrip("/").split("/")]
    match parts:
        case ["device", "types"]:
            return "types", ()
        case ["device", "types", type_id]:
            return "type", (type_id,)
        case ["device", "types", type_id, "devices"]:
            return "type devices", (type_id,)
        case ["device", "types", type_id, "devices", device_id]:
            return "device", (type_id, device_id)
        case ["bulk", "devices"]:
            return "all devices", ()
        case ["bulk", "devices", "add"]:
            return "bulk add", ()
        case ["bulk", "devices", "remove"]:
            return "bulk remove", ()
    return None, ()


# Route name -> {method: FakePlatform method name}.
_ROUTES = {
    "types": {"POST": "_create_type"},
    "type": {"GET": "_get_type"},
    "type devices": {"GET": "_list_type_devices"},
    "device": {"GET": "_get_device"},
    "all devices": {"GET": "_list_all_devices"},
    "bulk add": {"POST": "_bulk_add"},
    "bulk remove": {"POST": "_bulk_remove"},
}


class _Reject(Exception):
    """A request the platform refuses as a whole: becomes an error reply."""

    def __init__(self, status, error_id, message, headers=None):
        super().__init__(message)
        self.reply = _error_reply(status, error_id, message, headers)


def _error_reply(status, error_id, message, headers=None):
    body = {"message": f"{error_id}: {message}", "exception": {"id": error_id, "properties": []}}
    return status, body, dict(headers or {})


def _json_body(body):
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise _Reject(400, BAD_REQUEST, "the request body is not JSON") from None


def _json_entries(body):
    """The non-empty JSON list of objects a bulk request carries."""
    entries = _json_body(body)
    if not isinstance(entries, list) or not entries:
        raise _Reject(400, BAD_REQUEST, "the request body must be a non-empty JSON list")
    if not all(isinstance(entry, dict) for entry in entries):
        raise _Reject(400, BAD_REQUEST, "each entry of the list must be a JSON object")
    return entries


def _page_arguments(query, key_length):
    """(_limit, the key the page starts after or None) from a listing's query."""
    limit = query.get("_limit", [""])[-1] or str(DEFAULT_PAGE_SIZE)
    if not _is_number(limit) or not 1 <= int(limit) <= MAX_PAGE_SIZE:
        raise _Reject(400, BAD_REQUEST, f"_limit must be a whole number from 1 to {MAX_PAGE_SIZE}")
    bookmark = query.get("_bookmark", [""])[-1]
    if not bookmark:
        return int(limit), None
    try:
        key = json.loads(base64.urlsafe_b64decode(bookmark.encode("ascii")))
    except ValueError:  # not base64, not UTF-8 or not JSON
        key = None
    if not (isinstance(key, list) and len(key) == key_length and all(isinstance(k, str) for k in key)):
        raise _Reject(400, BAD_REQUEST, "_bookmark is not one this listing returned")
    return int(limit), tuple(key)


def _bookmark(key):
    """An opaque bookmark: the sort key of the last result returned."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode("ascii")


def _page(sorted_keys, limit, after):
    """(keys of the page, whether more remain) from the keys sorted, starting after the key `after`."""
    start = bisect.bisect_right(sorted_keys, after) if after is not None else 0
    return sorted_keys[start:start + limit], start + limit < len(sorted_keys)


class _Failure:
    """One fail_next() rule: how many matching requests remain to fail, and how."""

    def __init__(self, count, status, path, retry_after, after_processing, drop_connection):
        self.remaining = count
        self.status = status
        self.path = path
        self.retry_after = retry_after
        self.after_processing = after_processing
        self.drop_connection = drop_connection

    def reply(self):
        headers = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        return _error_reply(self.status, INJECTED, "injected failure (FakePlatform.fail_next)", headers)


class _Device:
    """A stored device: its public document (never mutated once stored), and what the API never shows."""

    __slots__ = ("document", "auth_token", "location")

    def __init__(self, document, auth_token, location):
        self.document = document
        self.auth_token = auth_token
        self.location = location


class FakePlatform:
    """The fake platform of one organization; a context manager that serves HTTPS while entered."""

    def __init__(self, org_id="myorg1", api_key=None, api_token=None, device_limit=None,
                 max_request_bytes=512 * 1024, host="127.0.0.1", port=0, state_dir=None):
        if not isinstance(org_id, str) or not _ORG_ID.match(org_id):
            raise ValueError(f"org_id {org_id!r} must be 1 to 36 lowercase letters and digits")
        if api_key is None:
            api_key = f"a-{org_id}-" + "".join(_RANDOM.choices(_KEY_ALPHABET, k=10))
        key_match = _API_KEY.match(api_key)
        if not key_match or key_match.group(1) != org_id:
            raise ValueError(f"api_key must look like a-{org_id}-<10 lowercase letters and digits>")
        self.org_id = org_id
        self.api_key = api_key
        self.api_token = api_token or secrets.token_urlsafe(18)
        self.device_limit = self._initial_device_limit = device_limit
        self.max_request_bytes = self._initial_max_request_bytes = max_request_bytes
        self.on_bulk_add = None
        self.requests = []
        self.log_file = None  # a text stream to log one line per request to (standalone mode), or None
        self.address = None
        self.ca_file = None
        self._host = host
        self._port = port
        self._state_dir = state_dir
        self._temporary_dir = None
        self._server = None
        self._thread = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._reset_state()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self):
        """Create a throw-away CA and server certificate, write the CA file, serve in a background thread."""
        if self._server is not None or self._stopping.is_set():
            raise RuntimeError("a FakePlatform starts once")
        ca = trustme.CA()
        names = ["127.0.0.1", "localhost"] + ([self._host] if self._host not in ("127.0.0.1", "localhost") else [])
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*names).configure_cert(context)
        # Listen first: a fake that cannot get its port must not overwrite the CA file of one that did.
        self._server = _Server((self._host, self._port), self, context)
        try:
            if self._state_dir is None:
                self._temporary_dir = tempfile.mkdtemp(prefix="fakeplatform-")
                directory = Path(self._temporary_dir)
            else:
                directory = Path(self._state_dir)
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            ca_file = directory / CA_FILE_NAME
            ca.cert_pem.write_to_path(str(ca_file))
        except OSError:
            self._server.server_close()
            self._server = None
            raise
        self.ca_file = str(ca_file.resolve())
        self.address = f"{self._host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fakeplatform-{self.address}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop serving, cut open connections, and remove the temporary CA directory if the fake made one."""
        self._stopping.set()  # wakes requests sleeping in delay_responses()
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._thread.join()
        if self._temporary_dir is not None:
            shutil.rmtree(self._temporary_dir, ignore_errors=True)
            self._temporary_dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def env(self):
        """The environment a client needs to talk to this fake."""
        return {
            "WIOTP_API_KEY": self.api_key,
            "WIOTP_API_TOKEN": self.api_token,
            "WIOTP_OPTIONS_HTTP_HOST": self.address,
            "REQUESTS_CA_BUNDLE": self.ca_file,
        }

    # -- knobs for tests ---------------------------------------------------------------------

    def reset(self):
        """Forget all types, devices, injected failures, delays, the request log and the on_bulk_add hook."""
        with self._lock:
            self._reset_state()
            self.device_limit = self._initial_device_limit
            self.max_request_bytes = self._initial_max_request_bytes
            self.on_bulk_add = None
            self.requests.clear()

    def _reset_state(self):
        self._types = {}  # typeId -> type document
        self._devices = {}  # typeId -> {deviceId: _Device}
        self._device_count = 0
        self._sorted = {}  # typeId -> sorted deviceIds, None -> sorted (typeId, deviceId); dropped on change
        self._failures = []
        self._delays = {}  # path substring or None -> seconds

    def preregister(self, type_id, device_ids, class_id="Device", token=None):
        """Store devices directly (no HTTP, no device limit), creating the type if missing; returns {deviceId: token}."""
        device_ids = list(device_ids)
        problems = [f"typeId {type_id!r} {_id_problem(type_id)}"] if _id_problem(type_id) else []
        problems += [f"deviceId {d!r} {_id_problem(d)}" for d in device_ids if _id_problem(d)]
        if class_id not in CLASS_IDS:
            problems.append(f"class_id must be one of {CLASS_IDS}")
        if token is not None and _token_problem(token):
            problems.append(f"token {_token_problem(token)}")
        if len(set(device_ids)) != len(device_ids):
            problems.append("device_ids holds duplicates")
        if problems:
            raise ValueError("; ".join(problems))
        now = _now()
        with self._lock:
            if type_id not in self._types:
                self._store_type(type_id, class_id, None, None, None, now)
            existing = sorted(set(device_ids) & self._devices[type_id].keys())
            if existing:
                raise ValueError(f"already registered in {type_id}: {', '.join(existing)}")
            tokens = {device_id: token or _new_token() for device_id in device_ids}
            self._store_devices(type_id, [(d, tokens[d], None, None, None) for d in device_ids], now)
        return tokens

    def fail_next(self, count, status=503, path=None, retry_after=None, after_processing=False,
                  drop_connection=False):
        """Answer the next `count` requests whose path contains `path` (None: any) with `status`, or no answer."""
        if not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code")
        if count > 0:
            with self._lock:
                self._failures.append(
                    _Failure(count, status, path, retry_after, after_processing, drop_connection))

    def delay_responses(self, seconds, path=None):
        """Sleep `seconds` before answering requests whose path contains `path` (None: any); 0 turns it off."""
        with self._lock:
            if seconds > 0:
                self._delays[path] = seconds
            else:
                self._delays.pop(path, None)

    def device(self, type_id, device_id):
        """The stored device, with its authToken and location (which the API never shows), or None."""
        with self._lock:
            stored = self._devices.get(type_id, {}).get(device_id)
            if stored is None:
                return None
            return {**copy.deepcopy(stored.document), "authToken": stored.auth_token,
                    "location": copy.deepcopy(stored.location)}

    def devices_of(self, type_id):
        """The ids of the devices of a type, sorted."""
        with self._lock:
            return sorted(self._devices.get(type_id, {}))

    # -- what the HTTP handler calls -----------------------------------------------------------

    def _take_failure(self, path):
        """The fail_next() rule this request uses up, or None."""
        with self._lock:
            for failure in self._failures:
                if failure.path is None or failure.path in path:
                    failure.remaining -= 1
                    if failure.remaining == 0:
                        self._failures.remove(failure)
                    return failure
        return None

    def _pause(self, path):
        with self._lock:
            seconds = max((s for p, s in self._delays.items() if p is None or p in path), default=0)
        if seconds:
            self._stopping.wait(seconds)

    def _record(self, method, path, status, body_bytes):
        with self._lock:
            self.requests.append({"method": method, "path": path, "status": status, "bytes": body_bytes})
        if self.log_file is not None:
            print(f"{method} {path} -> {status if status is not None else 'dropped'} ({body_bytes} bytes)",
                  file=self.log_file, flush=True)

    def _respond(self, method, path, query, body, authorization):
        """(status, JSON payload, extra headers) for an authenticated API request."""
        try:
            self._authenticate(authorization)
            route, arguments = _route(path)
            if route is None:
                raise _Reject(404, NOT_FOUND, f"no such resource: {path}")
            methods = _ROUTES[route]
            if method not in methods:
                raise _Reject(405, METHOD_NOT_ALLOWED, f"{method} is not supported on {path}",
                              {"Allow": ", ".join(methods)})
            return getattr(self, methods[method])(*arguments, query=query, body=body)
        except _Reject as rejection:
            return rejection.reply
        except Exception as error:  # a bug in the fake or in an on_bulk_add hook: say so to the client
            return _error_reply(500, INTERNAL, f"the fake platform failed: {error!r}")

    def _authenticate(self, authorization):
        unauthorized = {"WWW-Authenticate": 'Basic realm="IBM Watson IoT Platform"'}
        scheme, _, encoded = (authorization or "").partition(" ")
        try:
            key, _, token = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except ValueError:  # not base64, or not UTF-8
            key = token = ""
        if scheme.lower() != "basic" or not key:
            raise _Reject(401, UNAUTHORIZED, "HTTP basic authentication with an API key is required", unauthorized)
        key_match = _API_KEY.match(key)
        if not key_match:
            raise _Reject(401, UNAUTHORIZED, "the API key is not a valid API key", unauthorized)
        if key_match.group(1) != self.org_id:
            raise _Reject(401, UNAUTHORIZED, f"the API key does not belong to organization {self.org_id}",
                          unauthorized)
        key_ok = hmac.compare_digest(key.encode(), self.api_key.encode())
        token_ok = hmac.compare_digest(token.encode(), self.api_token.encode())
        if not (key_ok and token_ok):
            raise _Reject(401, UNAUTHORIZED, "the API key or token is not correct", unauthorized)

    # -- routes ----------------------------------------------------------------------------------

    def _create_type(self, query, body):
        request = _json_body(body)
        if not isinstance(request, dict):
            raise _Reject(400, BAD_REQUEST, "the request body must be a JSON object")
        type_id, class_id = request.get("id"), request.get("classId")
        if _id_problem(type_id):
            raise _Reject(400, BAD_REQUEST, f"invalid device type id: {_id_problem(type_id)}")
        if class_id not in CLASS_IDS:
            raise _Reject(400, BAD_REQUEST, f"classId must be one of {', '.join(CLASS_IDS)}")
        description = request.get("description")
        if description is not None and not isinstance(description, str):
            raise _Reject(400, BAD_REQUEST, "description must be a string")
        for field in ("deviceInfo", "metadata"):
            if request.get(field) is not None and not isinstance(request[field], dict):
                raise _Reject(400, BAD_REQUEST, f"{field} must be a JSON object")
        with self._lock:
            if type_id in self._types:
                raise _Reject(409, CONFLICT, f"device type '{type_id}' already exists")
            document = self._store_type(type_id, class_id, description, request.get("deviceInfo"),
                                        request.get("metadata"), _now())
        return 201, document, {}

    def _get_type(self, type_id, query, body):
        with self._lock:
            document = self._types.get(type_id)
        if document is None:
            raise _Reject(404, NOT_FOUND, f"device type '{type_id}' does not exist")
        return 200, document, {}

    def _get_device(self, type_id, device_id, query, body):
        with self._lock:
            stored = self._devices.get(type_id, {}).get(device_id)
        if stored is None:
            raise _Reject(404, NOT_FOUND, f"device '{type_id}:{device_id}' does not exist")
        return 200, stored.document, {}

    def _list_type_devices(self, type_id, query, body):
        limit, after = _page_arguments(query, key_length=1)
        with self._lock:
            if type_id not in self._types:
                raise _Reject(404, NOT_FOUND, f"device type '{type_id}' does not exist")
            devices = self._devices[type_id]
            ids = self._sorted.get(type_id)
            if ids is None:
                ids = self._sorted[type_id] = sorted(devices)
            page, more = _page(ids, limit, after[0] if after else None)
            results = [devices[device_id].document for device_id in page]
            total = len(ids)
        return 200, self._listing(results, total, (page[-1],) if more else None), {}

    def _list_all_devices(self, query, body):
        limit, after = _page_arguments(query, key_length=2)
        with self._lock:
            keys = self._sorted.get(None)
            if keys is None:
                keys = self._sorted[None] = sorted(
                    (type_id, device_id) for type_id, devices in self._devices.items() for device_id in devices)
            page, more = _page(keys, limit, after)
            results = [self._devices[type_id][device_id].document for type_id, device_id in page]
            total = len(keys)
        return 200, self._listing(results, total, page[-1] if more else None), {}

    @staticmethod
    def _listing(results, total, last_key):
        listing = {"results": results, "meta": {"total_rows": total}}
        if last_key is not None:
            listing["bookmark"] = _bookmark(last_key)
        return listing

    def _bulk_add(self, query, body):
        entries = _json_entries(body)
        now = _now()
        results = []
        with self._lock:
            accepted = {}  # typeId -> [(deviceId, token, deviceInfo, metadata, location)]
            seen = set()
            for entry in entries:
                type_id, device_id = entry.get("typeId"), entry.get("deviceId")
                problem = self._add_problem(entry, seen)
                if problem:
                    results.append({"typeId": type_id, "deviceId": device_id, "success": False, "error": problem})
                    continue
                seen.add((type_id, device_id))
                token = entry.get("authToken")
                token = _new_token() if token is None else token
                accepted.setdefault(type_id, []).append(
                    (device_id, token, entry.get("deviceInfo"), entry.get("metadata"), entry.get("location")))
                results.append({"typeId": type_id, "deviceId": device_id,
                                "clientId": self._client_id(type_id, device_id), "authToken": token,
                                "success": True})
            if self.device_limit is not None and self._device_count + len(seen) > self.device_limit:
                raise _Reject(403, FORBIDDEN_LIMIT,
                              f"the organization's limit of {self.device_limit} devices would be exceeded: "
                              f"{self._device_count} registered, {len(seen)} more requested")
            for type_id, devices in accepted.items():
                self._store_devices(type_id, devices, now)
        hook = self.on_bulk_add
        if hook is not None:
            hook([device_id for devices in accepted.values() for device_id, *_ in devices])
        return (201 if len(seen) == len(entries) else 202), results, {}

    def _add_problem(self, entry, seen):
        """Why one bulk-add entry cannot be registered (the per-entry `error`), or None."""
        type_id, device_id = entry.get("typeId"), entry.get("deviceId")
        if _id_problem(type_id):
            return f"{INVALID_TYPE_ID}: invalid typeId: {_id_problem(type_id)}"
        if type_id not in self._types:
            return f"{TYPE_MISSING}: device type '{type_id}' does not exist"
        if _id_problem(device_id):
            return f"{INVALID_DEVICE_ID}: invalid deviceId: {_id_problem(device_id)}"
        token = entry.get("authToken")
        if token is not None and _token_problem(token):
            return f"{INVALID_TOKEN}: authToken does not meet the rules: it {_token_problem(token)}"
        for field in ("deviceInfo", "metadata", "location"):
            if entry.get(field) is not None and not isinstance(entry[field], dict):
                return f"{INVALID_FIELD}: {field} must be a JSON object"
        if device_id in self._devices[type_id]:
            return f"{DEVICE_EXISTS}: device '{type_id}:{device_id}' already exists"
        if (type_id, device_id) in seen:
            return f"{DEVICE_EXISTS}: device '{type_id}:{device_id}' already exists (listed twice in this request)"
        return None

    def _bulk_remove(self, query, body):
        entries = _json_entries(body)
        results = []
        with self._lock:
            for entry in entries:
                type_id, device_id = entry.get("typeId"), entry.get("deviceId")
                devices = self._devices.get(type_id) if isinstance(type_id, str) else None
                if devices is not None and isinstance(device_id, str) and device_id in devices:
                    del devices[device_id]
                    self._device_count -= 1
                    self._sorted.pop(type_id, None)
                    self._sorted.pop(None, None)
                    results.append({"typeId": type_id, "deviceId": device_id, "success": True})
                else:
                    results.append({"typeId": type_id, "deviceId": device_id, "success": False,
                                    "error": f"{DEVICE_MISSING}: device '{type_id}:{device_id}' does not exist"})
        return (200 if all(r["success"] for r in results) else 202), results, {}

    # -- state (callers hold self._lock) -----------------------------------------------------------

    def _client_id(self, type_id, device_id):
        prefix = "g" if self._types[type_id]["classId"] == "Gateway" else "d"
        return f"{prefix}:{self.org_id}:{type_id}:{device_id}"

    def _store_type(self, type_id, class_id, description, device_info, metadata, now):
        document = {"id": type_id, "classId": class_id, "description": description,
                    "deviceInfo": device_info or {}, "metadata": metadata or {},
                    "createdDateTime": now, "updatedDateTime": now}
        self._types[type_id] = document
        self._devices[type_id] = {}
        return document

    def _store_devices(self, type_id, devices, now):
        stored = self._devices[type_id]
        registration = {"date": now}  # shared by the devices of one request: documents are never mutated
        status = {"alert": {"enabled": False, "timestamp": now}}
        for device_id, token, device_info, metadata, location in devices:
            document = {"typeId": type_id, "deviceId": device_id, "clientId": self._client_id(type_id, device_id),
                        "deviceInfo": device_info or {}, "metadata": metadata or {},
                        "registration": registration, "status": status}
            stored[device_id] = _Device(document, token, location)
        self._device_count += len(devices)
        self._sorted.pop(type_id, None)
        self._sorted.pop(None, None)


class _Server(ThreadingHTTPServer):
    """A threading HTTPS server whose TLS handshakes happen in the request threads, not the accept loop."""

    daemon_threads = True

    def __init__(self, address, platform, ssl_context):
        self.platform = platform
        self.ssl_context = ssl_context
        self._connections = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self):
        # HTTPServer.server_bind looks the host up with getfqdn(), which can stall for seconds without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        raw, client_address = self.socket.accept()
        # Without this, Nagle's algorithm meets the client's delayed ACK: ~40 ms per response.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = self.ssl_context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        with self._connections_lock:
            self._connections.add(connection)
        return connection, client_address

    def shutdown_request(self, request):
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self):
        """Cut kept-alive connections, so that a stopped fake answers nothing more."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                socket.socket.shutdown(connection, socket.SHUT_RDWR)  # the TCP socket, under the TLS layer
            except OSError:
                pass

    def handle_error(self, request, client_address):
        # A client that hung up, timed out or refused our certificate; only worth a line when logging.
        if self.platform.log_file is not None:
            print(f"connection from {client_address[0]} failed: {sys.exc_info()[1]!r}",
                  file=self.platform.log_file, flush=True)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, asks the platform for the reply, and applies the failure knobs around it."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeWatsonIoTPlatform/1"
    sys_version = ""
    timeout = 60  # a client that stalls mid-request is dropped, not waited for forever

    def setup(self):
        super().setup()
        self.connection.do_handshake()

    def log_message(self, format, *args):
        pass  # quiet: the platform records each request itself

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")

    def do_PATCH(self):
        self._serve("PATCH")

    def do_DELETE(self):
        self._serve("DELETE")

    def _serve(self, method):
        platform = self.server.platform
        url = urlsplit(self.path)
        path = url.path
        declared = self.headers.get("Content-Length")
        # Each request is logged before it is answered, so a client that has its answer finds it in the log.
        if declared is None and "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            # Read the body first: closing on a client still sending would reset the connection under it.
            drained = self._drain_chunked()
            platform._record(method, path, 411, 0)
            self._send(_error_reply(411, LENGTH_REQUIRED, "send the body with a Content-Length"), close=True)
            if not drained:
                self.close_connection = True
            return
        if declared is not None and not _is_number(declared):
            platform._record(method, path, 400, 0)
            self._send(_error_reply(400, BAD_REQUEST, "Content-Length is not a number"), close=True)
            return
        length = int(declared or 0)
        oversized = length > platform.max_request_bytes
        close = False
        if oversized:
            body = None
            close = not self._drain(length)
        else:
            body = self.rfile.read(length)
            if len(body) < length:  # the client hung up mid-body: nobody to answer
                self.close_connection = True
                platform._record(method, path, None, length)
                return
        failure = platform._take_failure(path)
        if failure is not None and not failure.after_processing:
            reply = failure.reply()
        elif oversized:
            reply = _error_reply(413, TOO_LARGE, f"the request body is {length} bytes; at most "
                                                 f"{platform.max_request_bytes} are accepted")
        else:
            reply = platform._respond(method, path, parse_qs(url.query, keep_blank_values=True), body,
                                      self.headers.get("Authorization"))
        platform._pause(path)
        if failure is not None:
            if failure.drop_connection:
                self.close_connection = True  # end the connection without writing a byte
                platform._record(method, path, None, length)
                return
            reply = failure.reply()
        platform._record(method, path, reply[0], length)
        self._send(reply, close)

    def _drain(self, length):
        """Read and drop a body the fake refuses; False when it is too big to bother (then close instead)."""
        if length > MAX_DRAIN_BYTES:
            return False
        while length > 0:
            chunk = self.rfile.read(min(length, 64 * 1024))
            if not chunk:
                return False
            length -= len(chunk)
        return True

    def _drain_chunked(self):
        """Read and drop a chunked body; False when it is malformed or too big to bother."""
        remaining = MAX_DRAIN_BYTES
        while remaining > 0:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                return False
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return True
            remaining -= size
            if remaining < 0 or len(self.rfile.read(size + 2)) < size + 2:
                return False
        return False

    def _send(self, reply, close=False):
        status, payload, headers = reply
        data = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)


# -- standalone ------------------------------------------------------------------------------------


def _org_id_argument(value):
    if not _ORG_ID.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not an org id: use 1 to 36 lowercase letters and digits")
    return value


def _port_argument(value):
    if not _is_number(value) or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a TCP port (0 to 65535)")
    return int(value)


def _limit_argument(value):
    if not _is_number(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a device count (0 or more)")
    return int(value)


class _Terminated(Exception):
    """Raised in the main thread by the SIGTERM handler."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m devicefactory.fakeplatform",
        description="Serve a local fake of the Watson IoT Platform v0002 REST API over HTTPS on 127.0.0.1, "
                    "to try the device factory without an IBM account. Devices live in memory and are "
                    "forgotten when it stops. It prints the `export` lines that point the factory at it.",
        epilog="Stop it with Ctrl-C or SIGTERM.",
    )
    parser.add_argument("--port", type=_port_argument, default=0,
                        help="TCP port to listen on (default: 0, any free port)")
    parser.add_argument("--org", type=_org_id_argument, default="myorg1",
                        help="organization id the fake plays (default: myorg1)")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                        help=f"folder for the throw-away CA certificate, {CA_FILE_NAME} "
                             f"(created mode 0700; default: ./{DEFAULT_STATE_DIR})")
    parser.add_argument("--device-limit", type=_limit_argument, default=None,
                        help="refuse (403) bulk adds that would take the organization past this many devices "
                             "(default: no limit)")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    platform = FakePlatform(org_id=args.org, port=args.port, state_dir=args.state_dir,
                            device_limit=args.device_limit)
    platform.log_file = sys.stderr
    previous_handler = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        try:
            platform.start()
        except OSError as error:
            print(f"fakeplatform: cannot serve on 127.0.0.1:{args.port}: {error.strerror or error}",
                  file=sys.stderr)
            return EXIT_ERROR
        print(f"# Fake Watson IoT Platform for org {platform.org_id} at https://{platform.address}/api/v0002 "
              "- run these exports in the shell that runs the factory; Ctrl-C stops the fake.",
              file=sys.stderr, flush=True)
        for name, value in platform.env().items():
            print(f"export {name}={shlex.quote(value)}", flush=True)
        threading.Event().wait()  # until Ctrl-C or SIGTERM interrupts it
    except (KeyboardInterrupt, _Terminated):
        pass
    finally:
        platform.stop()
        signal.signal(signal.SIGTERM, previous_handler)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
