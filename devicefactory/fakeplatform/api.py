"""The fake platform's REST API: routes, authentication, paging and error answers, over a `Registry`.

`Api.handle()` turns one request (method, path, query, Authorization header, body) into (status, JSON payload
or None, extra headers). It knows nothing of sockets or TLS (see server.py) and keeps no state but the
credentials and the on_bulk_add hook; the registry holds the rules.

Shapes and rules, and their sources (`SDK` is wiotp-sdk, the client the factory uses):
- routes and answer shapes: what the SDK's registry sends and parses (wiotp/sdk/api/registry/devices.py,
  types.py, connectionStatus.py): bulk add answers 201 or 202 with one result per entry; bulk remove 202
  (the issue's account of the real platform, which answers 202 even when every device was removed); a type
  or device delete 204 (the SDK accepts nothing else); create 201; update 200.
- errors look like the platform's, `{"message": "CUDRS0007E: ...", "exception": {"id", "properties"}}`
  (SDK: wiotp/sdk/exceptions.py ApiException). `CUDRS0007E` (invalid request) is the platform's id; the
  others are the fake's own, so clients should act on status codes.
- authentication (IBM docs, "APIs": HTTP basic with API key and token): no or unreadable credentials 401;
  an API key the platform does not know 403; a known key with a wrong token 401 (the issue's account of the
  real platform).
- paging (SDK: wiotp/sdk/api/common.py IterableList): `_limit` and `_bookmark` in, `results`, `meta.total_rows`
  and `bookmark` (only while more remain) out. Strict: `_limit` 1 to 1000 (default 25), a bookmark the
  listing did not issue is 400. `_sort` is ignored (results are always in id order).
- connection states: 403 on every /clientconnectionstates request while monitoring is off (IBM docs,
  https://www.ibm.com/docs/en/SSQR84_cd/iot/platform/reference/connect/client_state.html: "If a 403
  response is returned, the feature is not active"). Filters as ConnectionStatus.find() sends them; strict:
  an unknown connectionStatus or a connectedAfter that is not an ISO-8601 date and time is 400.
"""

import base64
import hmac
import json
from urllib.parse import unquote

from .registry import CONNECTION_STATUSES, Refusal, parse_timestamp

API_PREFIX = "/api/v0002/"
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 1000

BAD_REQUEST = "CUDRS0007E"  # the platform's own id for an invalid request
UNAUTHORIZED = "CUDRS0001E"
FORBIDDEN = "CUDRS0011E"
NOT_FOUND = "CUDRS0003E"
METHOD_NOT_ALLOWED = "CUDRS0004E"
CONFLICT = "CUDRS0005E"
INTERNAL = "CUDRS0009E"
MONITORING_OFF = "CUDRS0012E"

_STATUS_OF = {Refusal.INVALID: 400, Refusal.MISSING: 404, Refusal.EXISTS: 409, Refusal.IN_USE: 409,
              Refusal.LIMIT: 403}
_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Basic realm="IBM Watson IoT Platform"'}


def error_reply(status, error_id, message, headers=None):
    """(status, the platform's error body, headers)."""
    body = {"message": f"{error_id}: {message}", "exception": {"id": error_id, "properties": []}}
    return status, body, dict(headers or {})


class _Reject(Exception):
    """A request refused before it reaches the registry: becomes an error reply."""

    def __init__(self, status, error_id, message, headers=None):
        super().__init__(message)
        self.reply = error_reply(status, error_id, message, headers)


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
        case ["bulk", "devices"]:
            return "all devices", ()
        case ["bulk", "devices", "add"]:
            return "bulk add", ()
        case ["bulk", "devices", "remove"]:
            return "bulk remove", ()
        case ["clientconnectionstates"]:
            return "states", ()
        case ["clientconnectionstates", client_id]:
            return "state", (client_id,)
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


def _page_arguments(query, key_length):
    """(_limit, the key the page starts after or None) from a listing's query."""
    limit = _argument(query, "_limit") or str(DEFAULT_PAGE_SIZE)
    if not _is_number(limit) or not 1 <= int(limit) <= MAX_PAGE_SIZE:
        raise _Reject(400, BAD_REQUEST, f"_limit must be a whole number from 1 to {MAX_PAGE_SIZE}")
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
            return error_reply(_STATUS_OF[refusal.kind], refusal.error_id, refusal.message)
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
        limit, after = _page_arguments(query, key_length=1)
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
        limit, after = _page_arguments(query, key_length=1)
        page = self.registry.list_devices(type_id, limit, after)
        return 200, _listing(*page, key_of=lambda d: (d["deviceId"],)), {}

    def _list_all_devices(self, query, body):
        limit, after = _page_arguments(query, key_length=2)
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

    def _bulk_add(self, query, body):
        results, added = self.registry.add_devices(_json_entries(body))
        hook = self.on_bulk_add
        if hook is not None:
            hook(added)
        return (201 if len(added) == len(results) else 202), results, {}

    def _bulk_remove(self, query, body):
        return 202, self.registry.remove_devices(_json_entries(body)), {}

    # -- connection states -------------------------------------------------------------------------------

    def _check_monitoring(self):
        if not self.registry.monitoring:
            raise _Reject(403, MONITORING_OFF, "the client connection state feature is not active for this "
                                               "organization")

    def _list_states(self, query, body):
        self._check_monitoring()
        limit, after = _page_arguments(query, key_length=1)
        filters = {name: _argument(query, name) for name in ("deviceType", "deviceId", "connectionStatus")}
        if filters["connectionStatus"] not in (None,) + CONNECTION_STATUSES:
            raise _Reject(400, BAD_REQUEST, f"connectionStatus must be one of {', '.join(CONNECTION_STATUSES)}")
        connected_after = _argument(query, "connectedAfter")
        if connected_after is not None:
            filters["connectedAfter"] = parse_timestamp(connected_after)
            if filters["connectedAfter"] is None:
                raise _Reject(400, BAD_REQUEST, "connectedAfter must be an ISO-8601 date and time")
        page = self.registry.list_states(filters, limit, after)
        return 200, _listing(*page, key_of=lambda s: (s["id"],)), {}

    def _get_state(self, client_id, query, body):
        self._check_monitoring()
        return 200, self.registry.state_of_client(client_id), {}
