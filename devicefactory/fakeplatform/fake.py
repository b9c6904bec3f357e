"""`FakePlatform`: the fake platform's public face, its life (start, stop, saving) and the control interface.

It builds the registry (registry.py), the API over it (api.py), the HTTPS server (server.py) and, given an
`mqtt_port`, the MQTT broker devices connect to (mqtt.py), and is the only thing tests, the benchmark, the demo
and the command touch. Knobs change the registry or the transport;
`reset()` puts every knob back. With `persist=True` (the command) the state folder keeps the registry, the
API key and token and the CA across restarts (statedir.py); a fake given a folder holding a saved state
loads it either way.
"""

import os
import re
import secrets
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import trustme

from . import statedir
from .api import DEFAULT_MAX_PAGE_SIZE, Api
from .mqtt import DEFAULT_DOMAIN, MqttServer, messaging_host
from .registry import Registry
from .server import Faults, RequestLog, Server

DEFAULT_ORG_ID = "myorg1"
SDK_TLS_PORTS = (8883, 443)  # the MQTT over TLS ports wiotp-sdk connects to (wiotp/sdk/client.py)
SAVE_INTERVAL_SECONDS = 0.2  # how soon a change reaches state.json with persist=True
# swagger-java and APIClient: a bulk request "can contain a maximum of 512 kB"; 512 x 1024 is one reading,
# 512,000 the other (the factory stays under both): tests set either.
DEFAULT_MAX_REQUEST_BYTES = 512 * 1024

_ORG_ID = re.compile(r"[a-z0-9]{1,36}\Z")
_API_KEY = re.compile(r"a-([a-z0-9]+)-([a-z0-9]{10})\Z")
_KEY_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_RANDOM = secrets.SystemRandom()


def is_org_id(value):
    return isinstance(value, str) and bool(_ORG_ID.match(value))


class FakePlatform:
    """The fake platform of one organization; a context manager that serves HTTPS while entered."""

    def __init__(self, org_id=None, api_key=None, api_token=None, device_limit=None,
                 max_request_bytes=DEFAULT_MAX_REQUEST_BYTES, max_page_size=DEFAULT_MAX_PAGE_SIZE, host="127.0.0.1",
                 port=0, state_dir=None, persist=False, mqtt_port=None, domain=DEFAULT_DOMAIN):
        if persist and state_dir is None:
            raise ValueError("persist=True needs a state_dir")
        saved = statedir.load(state_dir) if state_dir is not None else None
        if saved is not None:
            org_id = org_id or saved["org_id"]
            for name, given, kept in (("org_id", org_id, saved["org_id"]), ("api_key", api_key, saved["api_key"]),
                                      ("api_token", api_token, saved["api_token"])):
                if given is not None and given != kept:
                    raise ValueError(f"{state_dir} holds the state of another {name}; use another state_dir")
            api_key, api_token = saved["api_key"], saved["api_token"]
        org_id = org_id or DEFAULT_ORG_ID
        if not is_org_id(org_id):
            raise ValueError(f"org_id {org_id!r} must be 1 to 36 lowercase letters and digits")
        if api_key is None:
            api_key = f"a-{org_id}-" + "".join(_RANDOM.choices(_KEY_ALPHABET, k=10))
        key_match = _API_KEY.match(api_key)
        if not key_match or key_match.group(1) != org_id:
            raise ValueError(f"api_key must look like a-{org_id}-<10 lowercase letters and digits>")
        self.org_id = org_id
        self._registry = Registry(org_id, device_limit)
        if saved is not None:
            try:
                self._registry.restore(saved["registry"])
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                raise statedir.StateError(f"{state_dir}: the saved registry is damaged ({error!r})") from None
        self._api = Api(self._registry, api_key, api_token or secrets.token_urlsafe(18))
        self._initial_device_limit = device_limit
        self._api.max_page_size = self._initial_max_page_size = max_page_size
        self._max_request_bytes = self._initial_max_request_bytes = max_request_bytes
        self._log = RequestLog()
        self._faults = Faults()
        self._host, self._port = host, port
        self._state_dir, self._persist = state_dir, persist
        self._temporary_dir = None
        self._lock = None  # the state folder's flock (statedir.lock), while serving
        self._server = None
        self._mqtt = None
        self._mqtt_port = mqtt_port
        self.domain = domain
        self._saver = None
        self._stopped = threading.Event()
        self.address = None
        self.ca_file = None
        self.mqtt_port = None  # the port the MQTT broker listens on, once started (None: no broker)

    # -- what a client needs --------------------------------------------------------------------------

    @property
    def api_key(self):
        return self._api.api_key

    @property
    def api_token(self):
        return self._api.api_token

    def env(self):
        """The environment a client needs to talk to this fake."""
        return {
            "WIOTP_API_KEY": self.api_key,
            "WIOTP_API_TOKEN": self.api_token,
            "WIOTP_OPTIONS_HTTP_HOST": self.address,
            "REQUESTS_CA_BUNDLE": self.ca_file,
        }

    @property
    def messaging_host(self):
        """The host name devices connect to: `<org>.messaging.<domain>` (the broker's certificate names it)."""
        return messaging_host(self.org_id, self.domain)

    @property
    def config_port(self):
        """The MQTT port device configs name: the broker's when the SDK takes it (8883 or 443: its AbstractClient
        refuses any other TLS port), else 8883, which deviceRunner.py --resolve then maps to the broker's."""
        return self.mqtt_port if self.mqtt_port in SDK_TLS_PORTS else SDK_TLS_PORTS[0]

    def device_env(self):
        """What the registrator needs to write configs that connect to this fake's broker (its CA and port)."""
        if self.mqtt_port is None:
            return {}
        return {"WIOTP_OPTIONS_MQTT_CAFILE": self.ca_file, "WIOTP_OPTIONS_MQTT_PORT": str(self.config_port)}

    def hosts_line(self):
        """The hosts-file line that makes the messaging host reach this fake (on its port, when that is 8883 or 443)."""
        return f"{self._host} {self.messaging_host}"

    def resolve_pin(self):
        """deviceRunner.py's --resolve value that reaches this fake's broker without a hosts entry."""
        pin = f"{self.messaging_host}:{self.config_port}:{self._host}"
        return pin if self.config_port == self.mqtt_port else f"{pin}:{self.mqtt_port}"

    # -- life --------------------------------------------------------------------------------------------

    def start(self):
        """Write the CA file (a new CA, or the saved one), serve in a background thread; returns self."""
        if self._server is not None or self._stopped.is_set():
            raise RuntimeError("a FakePlatform starts once")
        if self._state_dir is not None:
            statedir.prepare(self._state_dir)
            self._lock = statedir.lock(self._state_dir)
        try:
            self._start()
        except BaseException:
            self._unlock()
            raise
        return self

    def _start(self):
        saved_ca = statedir.load_ca(self._state_dir) if self._state_dir is not None else None
        ca = saved_ca or trustme.CA()
        # Listen first: a fake that cannot get its port must not overwrite the files of one that did.
        server = Server((self._host, self._port), self._api, ca, self._log, self._faults, self._max_request_bytes)
        try:
            if self._state_dir is None:
                self._temporary_dir = tempfile.mkdtemp(prefix="fakeplatform-")
                directory = Path(self._temporary_dir)
            else:
                directory = Path(self._state_dir)
            ca_file = statedir.save_ca(directory, ca, with_key=self._persist)
            if self._persist:
                self._save()
            if self._mqtt_port is not None:
                mqtt = MqttServer(self._registry, ca, self._host, self._mqtt_port, self.messaging_host,
                                  log=self._log.line)
                mqtt.start()
                self._mqtt, self.mqtt_port = mqtt, mqtt.port
        except OSError:
            server.server_close()
            raise
        self._server = server
        self.ca_file = str(ca_file.resolve())
        self.address = f"{self._host}:{server.port}"
        server.start()
        if self._persist:
            self._saver = threading.Thread(target=self._keep_saving, name="fakeplatform-saver", daemon=True)
            self._saver.start()

    def _unlock(self):
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def stop(self):
        """Stop serving and cut open connections; save the state (persist=True) or remove the temporary CA."""
        self._stopped.set()
        if self._mqtt is not None:  # first: the disconnections it records are saved below
            self._mqtt.stop()
        if self._server is not None:
            self._server.stop()
        if self._saver is not None:
            self._saver.join()
            self._saver = None
            self._save()
        if self._temporary_dir is not None:
            shutil.rmtree(self._temporary_dir, ignore_errors=True)
            self._temporary_dir = None
        self._unlock()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def _save(self):
        statedir.save(self._state_dir, self.org_id, self.api_key, self.api_token, self._registry.snapshot())

    def _keep_saving(self):
        saved = None
        while not self._stopped.wait(SAVE_INTERVAL_SECONDS):
            changes = self._registry.changes
            if changes != saved:
                try:
                    self._save()
                    saved = changes
                except OSError as error:  # the next change tries again; the message holds no token
                    print(f"fakeplatform: cannot save the state: {error.strerror or error}", file=sys.stderr)

    # -- settings the tests change ----------------------------------------------------------------------

    @property
    def device_limit(self):
        return self._registry.device_limit

    @device_limit.setter
    def device_limit(self, value):
        self._registry.device_limit = value

    @property
    def max_request_bytes(self):
        return self._max_request_bytes

    @max_request_bytes.setter
    def max_request_bytes(self, value):
        self._max_request_bytes = value
        if self._server is not None:
            self._server.max_request_bytes = value

    @property
    def max_page_size(self):
        """The largest `_limit` a listing takes; a larger one gets 400."""
        return self._api.max_page_size

    @max_page_size.setter
    def max_page_size(self, value):
        self._api.max_page_size = value

    @property
    def on_bulk_add(self):
        return self._api.on_bulk_add

    @on_bulk_add.setter
    def on_bulk_add(self, hook):
        self._api.on_bulk_add = hook

    @property
    def log_file(self):
        return self._log.log_file

    @log_file.setter
    def log_file(self, stream):
        self._log.log_file = stream

    @property
    def requests(self):
        """One dict per request: method, path (without the query), query, status (None: dropped), bytes."""
        return self._log.entries

    # -- knobs --------------------------------------------------------------------------------------------

    def reset(self):
        """Forget all types, devices and connection states, and put every knob back (keep_on_remove included)."""
        self._registry.clear()  # which ends every MQTT connection
        self._faults.clear()
        self._log.clear()
        self.device_limit = self._initial_device_limit
        self.max_request_bytes = self._initial_max_request_bytes
        self.max_page_size = self._initial_max_page_size
        self.on_bulk_add = None

    def preregister(self, type_id, device_ids, class_id="Device", token=None):
        """Store devices directly (no HTTP, no device limit), creating the type if missing; returns {deviceId: token}."""
        return self._registry.preregister(type_id, device_ids, class_id, token)

    def fail_next(self, count, status=503, path=None, retry_after=None, after_processing=False,
                  drop_connection=False):
        """Answer the next `count` requests whose path contains `path` (None: any) with `status`, or no answer."""
        self._faults.fail_next(count, status, path, retry_after, after_processing, drop_connection)

    def delay_responses(self, seconds, path=None):
        """Answer requests whose path contains `path` (None: any) `seconds` late; 0 turns it off."""
        self._faults.delay(seconds, path)

    def lag_listing(self, seconds):
        """Device listings leave out devices registered, and still show devices removed, under `seconds` ago."""
        self._registry.set_lag(seconds)

    def keep_on_remove(self, type_id, device_ids):
        """Bulk remove answers these devices with success false and an error, and keeps them; reset() ends it."""
        self._registry.keep_on_remove(type_id, device_ids)

    def connect(self, type_id, device_ids, disconnect_after=None):
        """Mark devices connected now; with `disconnect_after` they are disconnected that many seconds later.
        Nothing is recorded while connection monitoring is off, as on the platform."""
        self._registry.connect(type_id, device_ids, disconnect_after)

    def disconnect(self, type_id, device_ids):
        """Mark connected devices disconnected now (ValueError for a device with no connection recorded)."""
        self._registry.disconnect(type_id, device_ids)

    def connection_state(self, type_id, device_id):
        """The state document the API would return for the device, or None (not registered, or no connection
        recorded since monitoring was activated)."""
        return self._registry.connection_state(type_id, device_id)

    def set_connection_monitoring(self, enabled, listing_when_off=None):
        """Turn the client connection state feature on or off, as PUT /config/clientstate does (off deletes every
        stored state). While off, GET /config/clientstate gets 403 and /clientconnectionstates gets what
        `listing_when_off` says: 403 (the default) or 200 (an empty listing; a clientId then gets 404)."""
        self._registry.set_monitoring(enabled, listing_when_off)

    @property
    def connection_monitoring(self):
        return self._registry.monitoring

    def device(self, type_id, device_id):
        """The stored device, with its authToken and location (which the API never shows), or None."""
        return self._registry.device(type_id, device_id)

    def devices_of(self, type_id):
        """The ids of the devices of a type, sorted (the truth, never lagging)."""
        return self._registry.devices_of(type_id)
