"""The fake platform's REST API: routes, authentication, paging and error answers, over a `Registry`.

`Api.handle()` turns one request (method, path, query, Authorization header, body) into (status, JSON payload
or None, extra headers). It knows nothing of sockets or TLS (see server.py) and keeps no state but the
credentials and the on_bulk_add hook; the registry holds the rules.

Shapes and rules, and their sources (the same names as in registry.py; docs/local-platform.md holds the table):
- routes and answer shapes: what the SDK's registry sends and parses (wiotp/sdk/api/registry/devices.py,
  types.py, connectionStatus.py) and the swagger models. Status codes: bulk add 201, or 202 when some entries
  failed (APIClient: 202 "Some devices registered successfully"); bulk remove 202 (assumed: APIClient takes
  201 or 202); a type or device delete 204 (APIClient: deleteDeviceType expects 204); create 201 (APIClient:
  addDeviceType, registerDevice); update 200.
- errors `{"message": "<id>: ...", "exception": {"id", "properties"}}` (swagger ErrorMessage,
  ErrorMessageException; the SDK's exceptions.py quotes one). `CUDRS0007E` (a request that is not valid) is
  the platform's id (the SDK's exceptions.py quotes it; SDK tests: test_api_registry_devices_diag.py);
  `CUDHT0300I` a location out of range (SDK tests). Every other id is the fake's own, spelt `FAKE....E` so
  that no client mistakes it for one of IBM's: clients act on status codes. `properties` names the ids the
  answer is about (SDK tests: the commented-out testGetClientConnectionState expects ["fakeId"] for a 404).
- authentication (IBM docs, "APIs": HTTP basic with API key and token): no or unreadable credentials 401;
  an API key the platform does not know 403 (APIClient: "The authentication method is invalid or the API key
  used does not exist"); a known key with a wrong token 401 (APIClient: "The authentication token is empty
  or invalid").
- paging (SDK: wiotp/sdk/api/common.py IterableList; swagger DeviceListResponse): `_limit` and `_bookmark`
  in, `results`, `meta.total_rows` and `bookmark` (only while more remain) out; `_limit` defaults to 25
  (swagger: "default to 25"). No largest page is documented: `max_page_size` (a knob, default 1000, assumed)
  is the largest `_limit` taken, and a larger one is 400, as is a bookmark the listing did not issue
  (assumed). `_sort` is ignored (results are always in id order).
- the client connection state feature (IBM docs, "Monitoring client connectivity",
  https://www.ibm.com/docs/en/SSQR84_cd/iot/platform/reference/connect/client_state.html):
  `GET /config/clientstate` answers 403 while the feature is not active ("If a 403 response is returned, the
  feature is not active") and `{"enabled": true}` while it is (assumed body); `PUT /config/clientstate` with
  `{"enabled": true|false}` ("Set the enabled parameter to true") turns it on or off and answers 200 with
  the same body (assumed). What /clientconnectionstates answers while the feature is off is not documented:
  403 or an empty listing, as the knob `listing_when_off` says.
- connection states: filters as ConnectionStatus.find() sends them; assumed: an unknown connectionStatus or
  a connectedAfter that is not an ISO-8601 date and time is 400. A client id that holds a character no
  client id has (a `/`, a `?`, ...) is 400 (SDK tests: testConnectionStatusContainsAPIException expects an
  error for "fff/kdk/f?", testConnectionStatusContainsTrueValue a 200 or 404 for "15"; 400 is assumed).
- a device's `mgmt` is 404: the fake has no managed devices (SDK tests: testDeviceMgmt expects None).
"""

import base64
import hmac
import json
import re
from urllib.parse import unquote

from .registry import CONNECTION_STATUSES, LOCATION_INVALID, Refusal, parse_timestamp

API_PREFIX = "/api/v0002/"
DEFAULT_PAGE_SIZE = 25  # swagger: "_limit ... default to 25"
DEFAULT_MAX_PAGE_SIZE = 1000  # assumed: no largest page is documented

BAD_REQUEST = "CUDRS0007E"  # the platform's own id for a request that is not valid (the SDK's exceptions.py)
# The fake's own ids (no source gives the platform's): FAKE, so that nobody takes them for IBM's.
UNAUTHORIZED = "FAKE0401E"
FORBIDDEN = "FAKE0403E"
DEVICE_LIMIT = "FAKE0402E"
MONITORING_OFF = "FAKE0430E"
NOT_FOUND = "FAKE0404E"
METHOD_NOT_ALLOWED = "FAKE0405E"
CONFLICT = "FAKE0409E"
INTERNAL = "FAKE0500E"
_CLIENT_ID = re.compile(r"[A-Za-z0-9_.:-]+\Z")  # what a client id is made of (d:org:type:device, a:org:app)

_REPLY_OF = {Refusal.INVALID: (400, BAD_REQUEST), Refusal.MISSING: (404, NOT_FOUND), Refusal.EXISTS: (409, CONFLICT),
             Refusal.IN_USE: (409, CONFLICT), Refusal.LIMIT: (403, DEVICE_LIMIT),
             Refusal.LOCATION: (400, LOCATION_INVALID)}
_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Basic realm="IBM Watson IoT Platform"'}


def error_reply(status, error_id, message, headers=None, properties=(), violations=None):
    """(status, the platform's error body, headers)."""
    body = {"message": f"{error_id}: {message}", "exception": {"id": error_id, "properties": list(properties)}}
    if violations is not None:  # swagger InvalidRequestMessage
        body["violations"] = violations
    return status, body, dict(headers or {})


def _refusal_reply(refusal):
    status, error_id = _REPLY_OF[refusal.kind]
    violations = None
    if refusal.kind == Refusal.LOCATION:  # SDK tests: testDeviceLocationInvalid finds one violation
        violations = [{"message": f"{error_id}: {refusal.message}",
                       "exception": {"id": error_id, "properties": refusal.properties}}]
    return error_reply(status, error_id, refusal.message, properties=refusal.properties, violations=violations)


class _Reject(Exception):
    """A request refused before it reaches the registry: becomes an error reply."""

    def __init__(self, status, error_id, message, headers=None, properties=()):
        super().__init__(message)
        self.reply = error_reply(status, error_id, message, headers, properties)


def _route(path):
    """(route name, path arguments), or (None, ()) for a path the fake does not know."""
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
        case ["device", "types", type_id, "devices", device_id, "location"]:
            return "location", (type_id, device_id)
        case ["device", "types", type_id, "devices", device_id, "mgmt"]:
            return "mgmt", (type_id, device_id)
        case ["config", "clientstate"]:
            return "clientstate", ()
        case ["bulk", "devices"]:
            return "all devices", ()
        case ["bulk", "devices", "add"]:
            return "bulk add", ()
        case ["bulk", "devices", "remove"]:
            return "bulk remove", ()
        case ["clientconnectionstates"]:
            return "states", ()
        case ["clientconnectionstates", *client_id] if client_id:
            return "state", ("/".join(client_id),)
    return None, ()


# Route name -> {method: Api method name}.
_ROUTES = {
    "types": {"GET": "_list_types", "POST": "_create_type"},
    "type": {"GET": "_get_type", "PUT": "_update_type", "DELETE": "_delete_type"},
    "type devices": {"GET": "_list_type_devices", "POST": "_create_device"},
    "device": {"GET": "_get_device", "PUT": "_update_device", "DELETE": "_delete_device"},
    "all devices": {"GET": "_list_all_devices"},
    "bulk add": {"POST": "_bulk_add"},
    "bulk remove": {"POST": "_bulk_remove"},
    "states": {"GET": "_list_states"},
    "state": {"GET": "_get_state"},
    "location": {"GET": "_get_location", "PUT": "_set_location"},
    "mgmt": {"GET": "_get_mgmt"},
    "clientstate": {"GET": "_get_clientstate", "PUT": "_set_clientstate"},
}


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


def _is_number(text):
    """Whether `text` is a whole number written in ASCII digits (str.isdigit alone accepts '²')."""
    return text.isascii() and text.isdigit()


def _argument(query, name):
    """The last value of a query argument, or None when it is absent or empty."""
    return query.get(name, [""])[-1] or None


def _page_arguments(query, key_length, max_page_size):
    """(_limit, the key the page starts after or None) from a listing's query."""
    limit = _argument(query, "_limit") or str(DEFAULT_PAGE_SIZE)
    if not _is_number(limit) or not 1 <= int(limit) <= max_page_size:
        raise _Reject(400, BAD_REQUEST, f"_limit must be a whole number from 1 to {max_page_size}",
                      properties=["_limit"])
    bookmark = _argument(query, "_bookmark")
    if bookmark is None:
        return int(limit), None
    try:
        key = json.loads(base64.urlsafe_b64decode(bookmark.encode("ascii")))
    except ValueError:  # not ASCII, not base64, not UTF-8 or not JSON
        key = None
    if not (isinstance(key, list) and len(key) == key_length and all(isinstance(k, str) for k in key)):
        raise _Reject(400, BAD_REQUEST, "_bookmark is not one this listing returned")
    return int(limit), tuple(key)


def _listing(documents, total, more, key_of):
    """A page in the platform's shape; the bookmark records the last key returned, so that pages neither
    skip nor repeat what was there before when devices come and go between them."""
    listing = {"results": documents, "meta": {"total_rows": total}}
    if more:
        listing["bookmark"] = base64.urlsafe_b64encode(json.dumps(list(key_of(documents[-1]))).encode()).decode()
    return listing


class Api:
    """The v0002 REST API of one organisation, answering from `registry`."""

    def __init__(self, registry, api_key, api_token):
        self.registry = registry
        self.api_key = api_key
        self.api_token = api_token
        self.on_bulk_add = None  # callable(device_ids), run after a bulk add is applied, before the answer
        self.max_page_size = DEFAULT_MAX_PAGE_SIZE  # the largest _limit taken; a larger one is 400

    def handle(self, method, path, query, authorization, body):
        """(status, JSON payload or None for no body, extra headers) for one request."""
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
        except Refusal as refusal:
            return _refusal_reply(refusal)
        except Exception as error:  # a bug in the fake or in an on_bulk_add hook: say so to the client
            return error_reply(500, INTERNAL, f"the fake platform failed: {error!r}")

    def _authenticate(self, authorization):
        scheme, _, encoded = (authorization or "").partition(" ")
        try:
            key, _, token = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except ValueError:  # not base64, or not UTF-8
            key = token = ""
        if scheme.lower() != "basic" or not key:
            raise _Reject(401, UNAUTHORIZED, "HTTP basic authentication with an API key is required",
                          _UNAUTHORIZED_HEADERS)
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise _Reject(403, FORBIDDEN, "the API key is not known to this organization")
        if not hmac.compare_digest(token.encode(), self.api_token.encode()):
            raise _Reject(401, UNAUTHORIZED, "the API key's token is not correct", _UNAUTHORIZED_HEADERS)

    # -- device types ------------------------------------------------------------------------------------

    def _list_types(self, query, body):
        limit, after = _page_arguments(query, 1, self.max_page_size)
        page = self.registry.list_types(limit, after)
        return 200, _listing(*page, key_of=lambda t: (t["id"],)), {}

    def _create_type(self, query, body):
        return 201, self.registry.create_type(_json_body(body)), {}

    def _get_type(self, type_id, query, body):
        return 200, self.registry.get_type(type_id), {}

    def _update_type(self, type_id, query, body):
        return 200, self.registry.update_type(type_id, _json_body(body)), {}

    def _delete_type(self, type_id, query, body):
        self.registry.delete_type(type_id)
        return 204, None, {}

    # -- devices -----------------------------------------------------------------------------------------

    def _list_type_devices(self, type_id, query, body):
        limit, after = _page_arguments(query, 1, self.max_page_size)
        page = self.registry.list_devices(type_id, limit, after)
        return 200, _listing(*page, key_of=lambda d: (d["deviceId"],)), {}

    def _list_all_devices(self, query, body):
        limit, after = _page_arguments(query, 2, self.max_page_size)
        page = self.registry.list_devices(None, limit, after)
        return 200, _listing(*page, key_of=lambda d: (d["typeId"], d["deviceId"])), {}

    def _create_device(self, type_id, query, body):
        return 201, self.registry.create_device(type_id, _json_body(body)), {}

    def _get_device(self, type_id, device_id, query, body):
        return 200, self.registry.get_device(type_id, device_id), {}

    def _update_device(self, type_id, device_id, query, body):
        return 200, self.registry.update_device(type_id, device_id, _json_body(body)), {}

    def _delete_device(self, type_id, device_id, query, body):
        self.registry.delete_device(type_id, device_id)
        return 204, None, {}

    def _get_location(self, type_id, device_id, query, body):
        return 200, self.registry.get_location(type_id, device_id), {}

    def _set_location(self, type_id, device_id, query, body):
        return 200, self.registry.set_location(type_id, device_id, _json_body(body)), {}

    def _get_mgmt(self, type_id, device_id, query, body):
        self.registry.get_device(type_id, device_id)
        raise _Reject(404, NOT_FOUND, f"device '{type_id}:{device_id}' is not a managed device",
                      properties=[type_id, device_id])

    def _bulk_add(self, query, body):
        results, added = self.registry.add_devices(_json_entries(body))
        hook = self.on_bulk_add
        if hook is not None:
            hook(added)
        return (201 if len(added) == len(results) else 202), results, {}

    def _bulk_remove(self, query, body):
        return 202, self.registry.remove_devices(_json_entries(body)), {}

    # -- connection states -------------------------------------------------------------------------------

    def _get_clientstate(self, query, body):
        if not self.registry.monitoring:
            raise _monitoring_off()
        return 200, {"enabled": True}, {}

    def _set_clientstate(self, query, body):
        setting = _json_body(body)
        if not (isinstance(setting, dict) and set(setting) == {"enabled"} and isinstance(setting["enabled"], bool)):
            raise _Reject(400, BAD_REQUEST, 'the body must be {"enabled": true} or {"enabled": false}')
        self.registry.set_monitoring(setting["enabled"])
        return 200, {"enabled": setting["enabled"]}, {}

    def _list_states(self, query, body):
        limit, after = _page_arguments(query, 1, self.max_page_size)
        if not self.registry.monitoring:
            if self.registry.listing_when_off == 403:
                raise _monitoring_off()
            return 200, _listing([], 0, False, key_of=None), {}
        filters = {name: _argument(query, name) for name in ("deviceType", "deviceId", "connectionStatus")}
        if filters["connectionStatus"] not in (None,) + CONNECTION_STATUSES:
            raise _Reject(400, BAD_REQUEST, f"connectionStatus must be one of {', '.join(CONNECTION_STATUSES)}",
                          properties=["connectionStatus"])
        connected_after = _argument(query, "connectedAfter")
        if connected_after is not None:
            filters["connectedAfter"] = parse_timestamp(connected_after)
            if filters["connectedAfter"] is None:
                raise _Reject(400, BAD_REQUEST, "connectedAfter must be an ISO-8601 date and time",
                              properties=["connectedAfter"])
        page = self.registry.list_states(filters, limit, after)
        return 200, _listing(*page, key_of=lambda s: (s["id"],)), {}

    def _get_state(self, client_id, query, body):
        if not _CLIENT_ID.match(client_id):
            raise _Reject(400, BAD_REQUEST, f"'{client_id}' is not a client id", properties=[client_id])
        if not self.registry.monitoring:
            if self.registry.listing_when_off == 403:
                raise _monitoring_off()
            raise _Reject(404, NOT_FOUND, f"no connection state for client '{client_id}'", properties=[client_id])
        return 200, self.registry.state_of_client(client_id), {}


def _monitoring_off():
    return _Reject(403, MONITORING_OFF, "the client connection state feature is not active for this organization")
