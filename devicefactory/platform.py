"""The Watson IoT Platform registry, reached through wiotp-sdk's ApplicationClient.

Nothing else in the factory imports the SDK. Three things are added around it:
- `WIOTP_OPTIONS_HTTP_HOST=host[:port]` sends REST calls to https://host[:port]/api/v0002/... instead of
  https://<orgId>.<domain>/... (for the local fake platform and for on-premises installs);
- every variable is checked as strictly as a flag (TLS verification is off only for `false`);
- every request has a deadline for its whole answer, and transient failures are retried with backoff (the SDK
  has neither).
"""

import json
import logging
import os
import random
import re
import socket
import threading
import time
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool
from wiotp.sdk.api.common import ApiClient
from wiotp.sdk.api.registry import Registry
from wiotp.sdk.application import ApplicationClient, ApplicationClientConfig, parseEnvVars
from wiotp.sdk.exceptions import ApiException, ConfigurationException

from .errors import EXIT_USAGE, FactoryError

DEFAULT_DOMAIN = "internetofthings.ibmcloud.com"
HTTP_HOST_VARIABLE = "WIOTP_OPTIONS_HTTP_HOST"
# A bulk request "can contain a maximum of 512 kB" (swagger-java's DeviceBulkConfigurationApi; iot-java's
# APIClient: 413 "Request content exceeds 512Kb"): the stricter reading, 512,000 bytes, fits both. A 413 still
# splits a request.
MAX_REQUEST_BYTES = 512_000
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_SECONDS = 120.0
LISTING_PAGE_SIZE = 50  # devices per page of a listing, as the SDK's own iterator asks for
# Page sizes a listing is asked for, largest first. The API documents only a default of 25 (swagger: "_limit ...
# default to 25") and IBM's blog shows _limit=100; no largest page is documented. 1000 is asked first (a status
# of 20,000 devices then reads the type's devices and connection states in 20 pages each); a 400 for it steps
# down to 100, then 25, and the run keeps the size that worked.
PAGE_SIZES = (1000, 100, 25)
LARGEST_PAGE_SIZE = PAGE_SIZES[0]
CLIENT_STATE_CONFIG = "api/v0002/config/clientstate"
CLIENT_STATE_DOCS = "https://www.ibm.com/docs/en/SSQR84_cd/iot/platform/reference/connect/client_state.html"
_HOST_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
_HOST_PORT = re.compile(rf"(?:{_HOST_NAME}|\[[0-9A-Fa-f:.]+\])(?::(\d{{1,5}}))?\Z")
_DOMAIN = re.compile(rf"{_HOST_NAME}\Z")
VERIFY_VARIABLE = "WIOTP_OPTIONS_HTTP_VERIFY"
MQTT_PORT_VARIABLE = "WIOTP_OPTIONS_MQTT_PORT"
MQTT_TLS_PORTS = (8883, 443)
MQTT_CA_FILE_VARIABLE = "WIOTP_OPTIONS_MQTT_CAFILE"
CA_BUNDLE_VARIABLE = "REQUESTS_CA_BUNDLE"
PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_API_KEY = re.compile(r"a-([A-Za-z0-9]+)-\S+\Z")


class PlatformConfigError(FactoryError):
    """Missing or malformed credentials or options in the environment."""

    exit_code = EXIT_USAGE


class PlatformError(FactoryError):
    """The platform refused a request, or could not be reached."""


class ConnectionMonitoringOff(PlatformError):
    """The organisation's client connection state feature is not active (403 on GET /config/clientstate)."""

    def __init__(self):
        super().__init__(
            "the organisation's client connection state API is not active (HTTP 403 on GET /api/v0002/config/"
            "clientstate), so the platform records no connection: activate it with PUT /api/v0002/config/clientstate "
            "and the body {\"enabled\": true}, or on the platform's Settings page (Activate Client Connection State "
            f"API: On); see {CLIENT_STATE_DOCS}")


class StatesForbidden(PlatformError):
    """A 403 on /clientconnectionstates while the feature is active: the API key may not read connection states."""

    def __init__(self, what):
        super().__init__(
            f"cannot {what}: refused (HTTP 403) although the client connection state API is active: this API key "
            "may not read connection states; use a key whose role may (check WIOTP_API_KEY)")


class Conflict(PlatformError):
    """The platform answered 409: the thing to create exists already."""


class PlatformUnavailable(PlatformError):
    """No usable answer (transient failures outlasted every retry, or the answer was unreadable):
    the request may or may not have been applied."""


class MalformedAnswer(ValueError):
    """A success answer whose body is not the shape the API promises; says what is wrong with it."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a transient failure."""

    attempts: int = 6
    timeout_seconds: float = 30.0
    first_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0

    def backoff(self, attempt, retry_after=None):
        """Seconds to wait before retry `attempt` (1-based): the server's Retry-After, else capped full jitter."""
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_SECONDS)
        ceiling = min(self.max_backoff_seconds, self.first_backoff_seconds * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


class _HostAwareConfig(ApplicationClientConfig):
    """The SDK's config, where options.http.host (from WIOTP_OPTIONS_HTTP_HOST) replaces <orgId>.<domain>."""

    @property
    def host(self):
        return self["options"]["http"].get("host") or super().host


class _Deadline:
    """The time one request may take in all. requests' timeout applies to each read, so a server that sends a
    byte a second would hold a request forever; when the deadline passes, this shuts the request's socket."""

    _current = threading.local()

    def __init__(self, seconds):
        self.seconds = seconds
        self.expired = False
        self._connections = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self):
        _Deadline._current.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info):
        _Deadline._current.deadline = None
        self._timer.cancel()
        with self._lock:
            self._connections.clear()

    @classmethod
    def watch(cls, connection):
        """Called by a connection as a request starts on it, in the thread that sends the request."""
        deadline = getattr(cls._current, "deadline", None)
        if deadline is not None:
            with deadline._lock:
                deadline._connections.append(connection)

    def _expire(self):
        with self._lock:
            self.expired = True
            for connection in self._connections:
                sock = getattr(connection, "sock", None)
                if sock is not None:
                    try:  # the TCP socket under the TLS layer: the blocked read returns at once
                        socket.socket.shutdown(sock, socket.SHUT_RDWR)
                    except OSError:
                        pass


class _DeadlineConnection(HTTPSConnection):
    def request(self, *args, **kwargs):
        _Deadline.watch(self)
        return super().request(*args, **kwargs)


class _DeadlinePool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineConnection


class _DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {**self.poolmanager.pool_classes_by_scheme, "https": _DeadlinePool}


class _TimedApiClient(ApiClient):
    """The SDK's ApiClient with a deadline for each whole request and one kept-alive HTTPS session.

    The SDK calls requests.get/post with no timeout, so a platform that stops answering would hang the factory.
    Only the verbs the factory uses are overridden; URLs and bodies are built as the SDK builds them.
    """

    def __init__(self, config, logger, timeout_seconds):
        super().__init__(config, logger)
        self._timeout_seconds = timeout_seconds
        self._session = requests.Session()  # still honours REQUESTS_CA_BUNDLE, as requests.get does
        self._session.mount("https://", _DeadlineAdapter())

    def _send(self, method, url, **kwargs):
        with _Deadline(self._timeout_seconds) as deadline:
            try:
                response = self._session.request(
                    method,
                    f"https://{self._config.host}/{url}",
                    auth=self._config.credentials,
                    verify=self._config.verify,
                    timeout=self._timeout_seconds,
                    **kwargs,
                )
            except requests.exceptions.RequestException:
                if deadline.expired:
                    raise requests.exceptions.Timeout(f"no whole answer within {self._timeout_seconds:g} s") from None
                raise
        response.encoding = "utf-8"
        return response

    def get(self, url, parameters=None):
        return self._send("GET", url, params=parameters)

    def post(self, url, data):
        return self._send("POST", url, data=encode_json(data), headers={"content-type": "application/json"})

    def put(self, url, data):
        return self._send("PUT", url, data=encode_json(data), headers={"content-type": "application/json"})


def encode_json(data):
    """The request body exactly as it is sent (json.dumps' defaults, as the SDK uses): chunk sizes rely on it."""
    return json.dumps(data)


def load_platform_config():
    """The SDK's config from the environment, as `parseEnvVars()` reads it, plus WIOTP_OPTIONS_HTTP_HOST."""
    environ = os.environ
    # parseEnvVars() takes the WIOTP_AUTH_* pair when either is set, else the WIOTP_API_* pair.
    key_name, token_name = (
        ("WIOTP_AUTH_KEY", "WIOTP_AUTH_TOKEN")
        if environ.get("WIOTP_AUTH_KEY") is not None or environ.get("WIOTP_AUTH_TOKEN") is not None
        else ("WIOTP_API_KEY", "WIOTP_API_TOKEN")
    )
    missing = [name for name in (key_name, token_name) if not environ.get(name)]
    if missing:
        raise PlatformConfigError(f"missing credentials: set {' and '.join(missing)} (an API key and its token)")
    if not _API_KEY.match(environ[key_name]):
        raise PlatformConfigError(f"{key_name} does not look like an API key (a-<orgId>-<random>)")
    http_host = environ.get(HTTP_HOST_VARIABLE)
    if http_host is not None:
        port = _HOST_PORT.match(http_host)
        if not port or (port.group(1) and not 0 < int(port.group(1)) < 65536):
            raise PlatformConfigError(f"{HTTP_HOST_VARIABLE} must be host[:port], not {http_host!r}")
    domain = environ.get("WIOTP_OPTIONS_DOMAIN")
    if domain is not None and not (_DOMAIN.match(domain) and len(domain) <= 253):
        raise PlatformConfigError(f"WIOTP_OPTIONS_DOMAIN must be a host name (such as iot.example.com), not {domain!r}")
    verify = _verify_setting(environ.get(VERIFY_VARIABLE))
    _check_readable_certificates(CA_BUNDLE_VARIABLE, environ.get(CA_BUNDLE_VARIABLE))
    mqtt_port = _mqtt_port(environ.get(MQTT_PORT_VARIABLE))
    mqtt_ca_file = environ.get(MQTT_CA_FILE_VARIABLE)
    _check_readable_certificates(MQTT_CA_FILE_VARIABLE, mqtt_ca_file)
    try:
        config = parseEnvVars()
    except ConfigurationException as error:
        raise PlatformConfigError(str(error)) from None
    config["options"]["http"]["host"] = http_host
    config["options"]["http"]["verify"] = verify
    config["options"]["mqtt"]["port"] = mqtt_port
    # The configs name the CA file for the deploying machine: an absolute path stays right from any folder.
    config["options"]["mqtt"]["caFile"] = os.path.abspath(mqtt_ca_file) if mqtt_ca_file else None
    return _HostAwareConfig(**config)


def _verify_setting(value):
    """WIOTP_OPTIONS_HTTP_VERIFY: true or false in any case (unset: true); anything else is refused, since the
    SDK would take every other word for false and send the API key to an unverified peer."""
    if value is None or value.lower() == "true":
        return True
    if value.lower() == "false":
        return False
    raise PlatformConfigError(f"{VERIFY_VARIABLE} must be true or false, not {value!r}")


def _mqtt_port(value):
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and 0 < int(value) < 65536):
        raise PlatformConfigError(f"{MQTT_PORT_VARIABLE} must be a port number (1 to 65535), not {value!r}")
    if int(value) not in MQTT_TLS_PORTS:  # wiotp-sdk raises on others, and sends the token in clear on 1883 and 80
        raise PlatformConfigError(f"{MQTT_PORT_VARIABLE} must be 8883 or 443 (the ports wiotp-sdk connects to "
                                  f"over TLS), not {value!r}")
    return int(value)


def _check_readable_certificates(variable, path):
    """A CA file named by `variable` must be a readable file of PEM certificates."""
    if path is None:
        return
    if variable == CA_BUNDLE_VARIABLE and os.path.isdir(path) and os.access(path, os.R_OK | os.X_OK):
        return  # requests also takes a folder of hashed certificates
    try:
        with open(path, "rb") as certificates:
            head = certificates.read(1 << 20)
    except OSError as error:
        raise PlatformConfigError(f"{variable} names {path!r}, which cannot be read ({error.strerror or error})") from None
    if PEM_CERTIFICATE not in head:
        raise PlatformConfigError(f"{variable} names {path!r}, which holds no PEM certificate")


def describe_endpoint(config):
    """Where REST calls go, for messages (no credentials in it)."""
    return f"https://{config.host}"


class Platform:
    """The registry calls the factory makes, each with timeout, retries and one-line errors."""

    def __init__(self, config, retry_policy=RetryPolicy(), on_retry=None):
        client = ApplicationClient(config, logHandlers=[logging.NullHandler()])
        # ApplicationClient rebuilds the config it is given as a plain ApplicationClientConfig, which drops
        # the host override: give its registry an ApiClient that keeps our config class.
        self.config = _HostAwareConfig(**client._config)
        self._api_client = _TimedApiClient(self.config, client.logger, retry_policy.timeout_seconds)
        self.registry = Registry(self._api_client)
        self.retry_policy = retry_policy
        self.on_retry = on_retry or (lambda message: None)
        self._page_size_cap = LARGEST_PAGE_SIZE  # lowered for the rest of the run when the platform refuses a size

    @property
    def org_id(self):
        return self.config.orgId

    @property
    def domain(self):
        return self.config.domain

    @property
    def verify(self):
        """Whether TLS certificates are verified (off only for WIOTP_OPTIONS_HTTP_VERIFY=false)."""
        return self.config.verify

    @property
    def device_options(self):
        """The client options a device config carries so that the config alone reaches this platform: the
        domain when it is not the default, and the MQTT port and CA file when set (render_device_config's)."""
        mqtt = self.config["options"]["mqtt"]
        return {
            "domain": self.domain if self.domain != DEFAULT_DOMAIN else None,
            "mqtt_port": mqtt.get("port"),
            "mqtt_ca_file": mqtt.get("caFile"),
        }

    def ensure_device_type(self, type_id, class_id):
        """Create the device type when it does not exist; refuse one that exists with another class."""
        if not self.check_device_type(type_id, class_id):
            try:
                self._call(
                    f"create device type {type_id}",
                    lambda: self.registry.devicetypes.create({"id": type_id, "classId": class_id}),
                )
            except Conflict:
                # APIClient: 409 "The device type already exists": another run created it since we looked.
                if not self.check_device_type(type_id, class_id):
                    raise

    def check_device_type(self, type_id, class_id):
        """Whether the platform holds device type `type_id`; one of another class than `class_id` is refused:
        a device's id on the platform is its type and id alone, so a wrong --classId would name another batch
        folder here while reaching the very same devices there."""
        existing = self._call(f"look up device type {type_id}", lambda: _get_or_none(self.registry.devicetypes, type_id))
        if existing is None:
            return False
        if existing.get("classId") not in (None, class_id):
            raise WrongDeviceClass(f"device type {type_id} exists on the platform with class {existing['classId']}, "
                                   f"not {class_id}: give --classId {existing['classId']}")
        return True

    def add_devices(self, entries):
        """Send one bulk add; returns the per-device results (dicts). A 413 raises RequestTooLarge."""
        def request():
            # As the SDK's Devices.create() sends it, with the answer checked before anything reads it (the SDK
            # would iterate a null body into a TypeError).
            response = self._api_client.post("api/v0002/bulk/devices/add", list(entries))
            if response.status_code not in (201, 202):
                raise ApiException(response)
            return _results(response.json())

        return self._call(f"register {_devices(len(entries))}", request)

    def get_device(self, type_id, device_id):
        """The platform's document for a device (never its token), or None when it does not exist."""
        return self._call(
            f"look up device {type_id}:{device_id}",
            lambda: _get_or_none(self.registry.devices, f"d:{self.org_id}:{type_id}:{device_id}"),
        )

    def get_devices(self, type_id, device_ids, page_size=LISTING_PAGE_SIZE, one_by_one_up_to=LISTING_PAGE_SIZE,
                    confirm_absent=None):
        """{device_id: document} for those of `device_ids` the platform holds, in whichever way takes fewer
        requests: one GET per device (always for up to `one_by_one_up_to` devices), or the pages of the type's
        device listing, `page_size` devices a page.

        The listing is a search index that can lag behind devices created seconds ago: a device of
        `confirm_absent` (default: every one) it does not show is asked for on its own, so that its absence is only
        ever the platform's own 404 for that device. The others it does not show are taken as absent with no
        request of their own: a device number far beyond a batch costs nothing, whatever -n says.
        """
        wanted = set(device_ids)
        confirm = wanted if confirm_absent is None else wanted & set(confirm_absent)
        if len(wanted) <= one_by_one_up_to:
            return self._get_one_by_one(type_id, wanted)
        url = f"api/v0002/device/types/{type_id}/devices"
        what = f"list the devices of type {type_id}"
        pages = self._pages(what, url, page_size, missing=_TypeMissing)
        try:
            page = next(pages)
        except _TypeMissing:  # the platform's own answer: no such type, so none of its devices
            return {}
        if _page_count(page, self.page_size(page_size)) > len(wanted):  # a crowded type: a GET per device is cheaper
            return self._get_one_by_one(type_id, wanted)
        found = {}
        while True:
            found.update((d["deviceId"], d) for d in page["results"] if d.get("deviceId") in wanted)
            if len(found) == len(wanted):
                break
            page = next(pages, None)
            if page is None:
                break
        found.update(self._get_one_by_one(type_id, confirm - found.keys()))
        return found

    def _get_one_by_one(self, type_id, device_ids):
        documents = {device: self.get_device(type_id, device) for device in device_ids}
        return {device: document for device, document in documents.items() if document is not None}

    def connection_states(self, type_id, class_id, device_ids):
        """{device_id: state document} for those of `device_ids` of type `type_id` that have a connection state
        (a device with no connection recorded since monitoring was activated has none), read the cheaper way: the
        type's pages of GET /clientconnectionstates?deviceType=..., or one GET /clientconnectionstates/{clientId}
        per device.

        Documents are matched by the exact type and device of their clientId, `<d|g>:<org>:<type>:<device>`
        (ids hold no `:`). A 403 raises StatesForbidden: ask connection_monitoring_active() first, since a 403
        while the feature is active means this key may not read states.
        """
        wanted = set(device_ids)
        if len(wanted) <= 1:
            return self._states_one_by_one(type_id, class_id, wanted)
        what = f"list the connection states of type {type_id}"
        pages = self._pages(what, "api/v0002/clientconnectionstates", LARGEST_PAGE_SIZE, {"deviceType": type_id},
                            forbidden=lambda: StatesForbidden(what))
        page = next(pages)
        if _page_count(page, self.page_size()) > len(wanted):
            return self._states_one_by_one(type_id, class_id, wanted)
        found = {}
        while page is not None:
            for document in page["results"]:
                parts = str(document.get("id", "")).split(":")
                if len(parts) == 4 and parts[2] == type_id and parts[3] in wanted:
                    found[parts[3]] = document
            page = next(pages, None) if len(found) < len(wanted) else None
        return found

    def _states_one_by_one(self, type_id, class_id, device_ids):
        # A device's clientId is d:<org>:<type>:<device>, a gateway's g:... (the SDK's gateway client ids).
        prefix = "g" if class_id == "Gateway" else "d"
        found = {}
        for device in device_ids:
            client_id = f"{prefix}:{self.org_id}:{type_id}:{device}"
            what = f"look up the connection state of {type_id}:{device}"

            def request(client_id=client_id, what=what):
                try:
                    return _get_or_none(self.registry.connectionStatus, client_id)
                except ApiException as error:
                    if error.response.status_code == 403:
                        raise StatesForbidden(what) from None
                    raise

            document = self._call(what, request)
            if document is not None:
                found[device] = dict(document)
        return found

    def update_device(self, type_id, device_id, device_info=None, metadata=None):
        """Bring a device's deviceInfo and metadata in line (PUT /device/types/{t}/devices/{d}, the SDK's
        Devices.update): never a re-registration, so its token stays. A field of deviceInfo sent as null or
        left out keeps its value; metadata, when sent, replaces the whole object."""
        uid = {"typeId": type_id, "deviceId": device_id}
        return self._call(f"update device {type_id}:{device_id}",
                          lambda: dict(self.registry.devices.update(uid, metadata=metadata, deviceInfo=device_info)))

    def get_location(self, type_id, device_id):
        """A device's location document (GET /device/types/{t}/devices/{d}/location, as the SDK's
        Device.getLocation asks; the device document itself carries none), or None when none is set (404)."""
        url = f"api/v0002/device/types/{type_id}/devices/{device_id}/location"

        def request():
            response = self._api_client.get(url)
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise ApiException(response)
            location = response.json()
            if not isinstance(location, dict):
                raise ValueError("a location is a JSON object")
            return location

        return self._call(f"look up the location of device {type_id}:{device_id}", request)

    def set_location(self, type_id, device_id, location):
        """Set a device's location (PUT /device/types/{t}/devices/{d}/location, as the SDK's Device.setLocation
        sends it; the SDK only offers it on a Device fetched first, so its ApiClient is called here)."""
        url = f"api/v0002/device/types/{type_id}/devices/{device_id}/location"

        def request():
            response = self._api_client.put(url, location)
            if response.status_code != 200:
                raise ApiException(response)
            return response.json()

        return self._call(f"set the location of device {type_id}:{device_id}", request)

    def remove_devices(self, entries):
        """Send one bulk remove (POST /bulk/devices/remove, as the SDK's Devices.delete sends it); returns the
        per-device results. A 413 raises RequestTooLarge."""
        entries = list(entries)
        return self._call(f"remove {_devices(len(entries))}", lambda: _results(self.registry.devices.delete(entries)))

    def page_size(self, wanted=LARGEST_PAGE_SIZE):
        """The page size to ask for: `wanted`, or less once the platform has refused a larger one."""
        return min(wanted, self._page_size_cap)

    def _pages(self, what, url, page_size, filters=None, forbidden=None, missing=None):
        """The pages of a listing, one request each, as the SDK's IterableList asks for them (its iterator hides
        the row count that tells which way is cheaper, so its ApiClient is called here). `forbidden` and
        `missing`: the exceptions a 403 and a 404 mean for this listing.

        A 400 on a first page asked with more than 25 rows is taken as a page size the platform refuses: the
        request is made again with the next smaller of PAGE_SIZES, which the rest of the run keeps to
        (`page_size()` tells the size in use).

        Each page is checked to be the API's shape (check_page). The listing ends at a page with no bookmark or no
        results; a bookmark seen before would page for ever, so it stops the listing as a platform error."""
        bookmark, seen, number, rows, most_rows, longest = None, set(), 0, 0, 0, 0
        while True:
            number += 1

            def request(bookmark=bookmark):
                while True:
                    size = self.page_size(page_size)
                    response = self._api_client.get(url, {"_limit": size, "_bookmark": bookmark, **(filters or {})})
                    smaller = [s for s in PAGE_SIZES if s < size]
                    if response.status_code == 400 and bookmark is None and smaller:
                        self._page_size_cap = smaller[0]
                        self.on_retry(f"{what}: the platform refused pages of {size} (HTTP 400); "
                                      f"asking for pages of {smaller[0]}")
                        continue
                    if response.status_code == 403 and forbidden is not None:
                        raise forbidden()
                    if response.status_code == 404 and missing is not None:
                        raise missing()
                    if response.status_code != 200:
                        raise ApiException(response)
                    return check_page(response.json())

            page = self._call(f"{what} (page {number})" if number > 1 else what, request)
            yield page
            bookmark = page.get("bookmark")
            if bookmark is not None and not page["results"]:
                self.on_retry(f"{what}: page {number} holds no results but names a next page: taken as the end")
            if bookmark is None or not page["results"]:
                return
            if bookmark in seen:
                raise PlatformUnavailable(f"cannot {what}: page {number} named a bookmark an earlier page named: "
                                          f"the listing would never end")
            seen.add(bookmark)
            # New bookmarks for ever: the rows given outgrow what the listing says it holds (twice over, and a page,
            # for devices that come while it is read; each page's total_rows counts them too).
            rows += len(page["results"])
            most_rows = max(most_rows, page["meta"]["total_rows"])
            longest = max(longest, len(page["results"]))
            if rows > 2 * most_rows + longest:
                raise PlatformUnavailable(f"cannot {what}: {number} pages gave {rows} rows of a listing that says it "
                                          f"holds {most_rows}: the listing would never end")

    def connection_monitoring_active(self):
        """Whether the organisation's client connection state feature is active: GET /config/clientstate
        answers 403 when it is not (IBM docs, "Monitoring client connectivity")."""
        def request():
            response = self._api_client.get(CLIENT_STATE_CONFIG)
            if response.status_code == 403:
                return False
            if response.status_code != 200:
                raise ApiException(response)
            return True

        return self._call("read the client connection state setting (GET /config/clientstate)", request)

    def _call(self, what, request):
        attempt = 0
        while True:
            attempt += 1
            try:
                return request()
            except MalformedAnswer as problem:
                raise PlatformUnavailable(f"cannot {what}: the platform's answer {problem}") from None
            except (ValueError, TypeError, AttributeError):
                # A success status with a body that is not the JSON the SDK expects (the SDK then fails inside).
                raise PlatformUnavailable(f"cannot {what}: the platform's answer was not what the API promises") from None
            except ApiException as error:
                status = error.response.status_code
                if status == 413:
                    raise RequestTooLarge(what) from None
                if status == 409:
                    raise Conflict(explain_refusal(what, error)) from None
                if status not in RETRYABLE_STATUSES:
                    raise PlatformError(explain_refusal(what, error)) from None
                failure, retry_after = f"HTTP {status}", _retry_after(error.response)
            except requests.exceptions.SSLError:
                raise PlatformError(
                    f"cannot {what}: TLS verification of {describe_endpoint(self.config)} failed "
                    "(for a private CA, point REQUESTS_CA_BUNDLE at its certificate)"
                ) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as error:
                failure, retry_after = _describe_network_error(error), None
            if attempt >= self.retry_policy.attempts:
                tries = f"{attempt} attempt{'' if attempt == 1 else 's'}"
                raise PlatformUnavailable(f"cannot {what}: {failure} ({describe_endpoint(self.config)}, {tries})"
                                          f"{unreachable_hint(self.config, failure)}")
            delay = self.retry_policy.backoff(attempt, retry_after)
            self.on_retry(f"{what}: {failure}; retrying in {delay:.1f} s (attempt {attempt + 1} of {self.retry_policy.attempts})")
            time.sleep(delay)


class WrongDeviceClass(PlatformError):
    """The device type exists on the platform with another class than the one asked for: a usage error."""

    exit_code = EXIT_USAGE


class RequestTooLarge(PlatformError):
    """The platform answered 413: the request must be split."""


class _TypeMissing(Exception):
    """A type's device listing answered 404: the type does not exist."""


def _page_count(page, page_size):
    """How many pages of `page_size` the listing whose first page (checked by check_page) has in all."""
    return -(-page["meta"]["total_rows"] // page_size)


def _devices(count):
    return f"{count} device{'' if count == 1 else 's'}"


def check_page(page):
    """A page of a listing, checked to be the API's shape: an object with `results` (a list of objects),
    `meta.total_rows` (a whole number) and, when there are more pages, a `bookmark` (a string). Raises
    MalformedAnswer."""
    if not isinstance(page, dict):
        raise MalformedAnswer(f"is {_json_kind(page)}, not the listing object the API promises")
    meta = page.get("meta")
    if not isinstance(meta, dict):
        raise MalformedAnswer(f"has a 'meta' that is {_json_kind(meta)}, not an object with total_rows")
    total = meta.get("total_rows")
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        raise MalformedAnswer(f"has a 'meta.total_rows' that is {_json_kind(total)}, not a whole number")
    _results(page.get("results"), "'results'")
    if "bookmark" in page and not isinstance(page["bookmark"], (str, type(None))):
        raise MalformedAnswer(f"has a 'bookmark' that is {_json_kind(page['bookmark'])}, not a string")
    return page


def _results(results, where=None):
    """A bulk answer's (or a page's `where`) per-device results: a list of objects. Raises MalformedAnswer."""
    said = "" if where is None else f"has a {where} that "
    if not isinstance(results, list):
        raise MalformedAnswer(f"{said}is {_json_kind(results)}, not a list of per-device objects")
    for result in results:
        if not isinstance(result, dict):
            raise MalformedAnswer(f"{said}holds {_json_kind(result)} where a per-device object belongs")
        for key in ("typeId", "deviceId"):
            if key in result and not isinstance(result[key], str):
                raise MalformedAnswer(f"{said}holds a '{key}' that is {_json_kind(result[key])}, not a string")
    return results


def _json_kind(value):
    """What a JSON value is, for messages: 'null', 'a list', 'the string "many"' (short)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {json.dumps(value[:40])}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return "a list" if isinstance(value, list) else "an object" if isinstance(value, dict) else "missing"


def _get_or_none(collection, key):
    try:
        return collection[key]
    except KeyError:
        return None


def _retry_after(response):
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def unreachable_hint(config, failure):
    """What to check when the platform's host cannot be reached (nothing to add for an HTTP error status)."""
    if failure.startswith("HTTP"):
        return ""
    source = (HTTP_HOST_VARIABLE if config["options"]["http"].get("host") else
              "the org in WIOTP_API_KEY (or WIOTP_AUTH_KEY) and WIOTP_OPTIONS_DOMAIN")
    return f": check the network, and that {config.host} (from {source}) is the platform's host and is up"


def _describe_network_error(error):
    if isinstance(error, requests.exceptions.Timeout):
        return "no answer in time"
    return "connection failed"


def explain_refusal(what, error):
    """One line for a request the platform refused for good (401, 403, 400, ...)."""
    status = error.response.status_code
    detail = (error.message or "").strip()[:300]
    said = f": {detail}" if detail else ""
    if status == 401:
        # The real platform answers 401 to a wrong token for a key it knows (and to no credentials at all).
        return (f"cannot {what}: authentication failed: the API token is not the one of this API key: "
                f"check WIOTP_API_TOKEN (HTTP 401{said})")
    if status == 403:
        if "limit" in detail.lower():
            return f"cannot {what}: the organisation's device limit is reached (HTTP 403{said})"
        # The real platform answers 403 to an API key it does not know, to a key whose role may not do this,
        # and to a bulk add past the organisation's device limit.
        return (f"cannot {what}: refused (HTTP 403{said}): the platform does not know this API key "
                f"(check WIOTP_API_KEY and the organisation), its role may not do this, or the organisation's "
                f"device limit is reached")
    return f"cannot {what}: the platform refused the request (HTTP {status}{said})"
