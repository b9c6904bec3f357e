"""The fake platform's MQTT side: devices and gateways connect over MQTT 3.1.1 with TLS, as on the platform.

The MQTT protocol is amqtt's (a maintained broker, pinned in requirements.txt); this module adds the platform's
rules through amqtt's plugin interface and runs the broker on an asyncio loop in a thread of its own. It owns the
listening socket (amqtt's "external" listener), so that it knows each TCP connection and can end it.

Rules, and where each comes from (IBM docs, "Communicating with devices (MQTT)",
https://www.ibm.com/support/knowledgecenter/en/SSQP8H/iot/platform/devices/mqtt.html, and "MQTT messaging",
https://ibm.com/docs/en/mapms/1_cloud?topic=reference-mqtt-messaging; `SDK` is wiotp-sdk, whose clients the
factory's configs are for):
- the broker is `<orgId>.messaging.<domain>` on 8883 (TLS; 443 on Maximo Application Suite); the certificate
  comes from the fake's own CA and names that host, `localhost` and `127.0.0.1`.
- a client logs in as its device (registry.py `login`: client id, `use-token-auth`, its token); any other login
  gets CONNACK 5 (not authorized) and is recorded nowhere, as the connection-state API only shows clients that
  connected.
- a device publishes only `iot-2/evt/<event>/fmt/<format>` and subscribes only `iot-2/cmd/<command>/fmt/<format>`
  (`+` allowed for command and format). A gateway publishes `iot-2/type/<type>/id/<device>/evt/<event>/fmt/<format>`
  for itself and its devices, and subscribes `iot-2/type/<type>/id/<device>/cmd/<command>/fmt/<format>` and
  `iot-2/type/<type>/id/<device>/notify` (IBM docs, "MQTT connectivity for gateways"; SDK:
  wiotp/sdk/gateway/client.py publishes and subscribes exactly these). Anything else ends the connection (the
  issue's account of the platform; IBM's MQTT servers disconnect a client that uses a topic it may not).
- a second connection with the same client id ends the first (MQTT 3.1.1, section 3.1.4; amqtt leaves both
  open for clean sessions, so this module ends the older one).
- a client silent for one and a half times its keep-alive is disconnected (MQTT 3.1.1, section 3.1.2.10; amqtt
  leaves such a client connected, so this module ends it).
- connects, disconnects (clean or dropped) and publishes are recorded as connection states (registry.py). A
  removed device's connection is ended.
Not done: the platform's payload limit (131072 bytes) and its clearing of the retained flag. Known difference:
amqtt drops the broker's session of a connected client (its subscriptions) when another connection with the same
client id arrives, before that one's login is checked; a refused impostor changes no connection state, but the
device stops receiving commands (the fake sends none).
"""

import asyncio
import logging
import ssl
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from .registry import id_problem

DEFAULT_DOMAIN = "internetofthings.ibmcloud.com"  # the SDK's default domain (wiotp/sdk/device/config.py)
STOP_SECONDS = 10  # how long stop() waits for connections to end and the broker to shut down
KEEP_ALIVE_CHECK_SECONDS = 0.5  # how often silent clients are looked for
_LISTENER = "default"


def messaging_host(org_id, domain=DEFAULT_DOMAIN):
    """The host devices of `org_id` connect to (the SDK's AbstractClient: `<orgId>.messaging.<domain>`)."""
    return f"{org_id}.messaging.{domain}"


def _name(level, wildcard):
    """A topic level that names one thing (an id, an event, a format), or `+` where a wildcard may stand."""
    return (wildcard and level == "+") or (bool(level) and "+" not in level and "#" not in level)


def topic_allowed(gateway, topic, action):
    """Whether a device (or a gateway) may publish (`action` Action.PUBLISH) or subscribe to `topic`."""
    levels = topic.split("/")
    subscribe = action == Action.SUBSCRIBE
    if not gateway:
        if len(levels) != 5 or levels[0] != "iot-2" or levels[3] != "fmt":
            return False
        kind = "cmd" if subscribe else "evt"
        return levels[1] == kind and all(_name(level, subscribe) for level in (levels[2], levels[4]))
    if len(levels) < 5 or levels[0] != "iot-2" or levels[1] != "type" or levels[3] != "id":
        return False
    ids = (levels[2], levels[4])
    if not all(level == "+" or not id_problem(level) for level in ids):
        return False
    if subscribe and levels[5:] == ["notify"]:
        return all(_name(level, True) for level in ids)
    if len(levels) != 9 or levels[7] != "fmt" or levels[5] != ("cmd" if subscribe else "evt"):
        return False
    return all(_name(level, subscribe) for level in ids + (levels[6], levels[8]))


class _Connection:
    """One TCP connection: its stream, and the device it logged in as (once it did)."""

    __slots__ = ("writer", "device", "gateway", "connected", "keep_alive", "last_heard")

    def __init__(self, writer, now):
        self.writer = writer
        self.device = None  # (typeId, deviceId)
        self.gateway = False
        self.connected = False
        self.keep_alive = 0  # seconds, as the client's CONNECT asked; 0: none
        self.last_heard = now

    def end(self):
        self.writer.transport.abort()


class PlatformRules(BaseAuthPlugin, BaseTopicPlugin):
    """amqtt's plugin interface to the platform's rules: every answer comes from the `MqttServer` in the config."""

    @dataclass
    class Config:
        server: Any = None

    async def authenticate(self, *, session):
        return self.config.server.admit(session)

    async def topic_filtering(self, *, session=None, topic=None, action=None):
        return self.config.server.allow(session, topic, action)

    async def on_mqtt_packet_received(self, *, packet, session=None):
        if session is not None:
            self.config.server.heard(session)


class MqttServer:
    """The fake's MQTT broker on (host, port), for the devices of `registry`; start() and stop() it once."""

    def __init__(self, registry, ca, host, port, messaging_host_name, log=None):
        self._registry = registry
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        names = [messaging_host_name, "localhost", "127.0.0.1"] + ([host] if host not in ("127.0.0.1", "localhost") else [])
        ca.issue_cert(*names).configure_cert(self._context)
        self._host, self._requested_port = host, port
        self._log = log or (lambda line: None)
        self._loop = None
        self._thread = None
        self._stopping = None
        self._by_peer = {}  # (address, port) of the client -> _Connection
        self._current = {}  # (typeId, deviceId) -> its newest _Connection
        self._tasks = set()
        self.port = None

    # -- life (any thread) -----------------------------------------------------------------------------

    def start(self):
        """Listen and serve in a background thread; raises OSError when the port cannot be had."""
        # amqtt reports through logging; the fake reports what matters through its own log.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).addHandler(logging.NullHandler())
            logging.getLogger(name).propagate = False
        ready = Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="fakeplatform-mqtt", daemon=True)
        self._thread.start()
        ready.result()
        self._registry.removal_listeners.append(self._on_removal)
        return self

    def stop(self):
        """End every connection (each recorded as a disconnection) and stop the broker."""
        if self._thread is None:
            return
        if self._on_removal in self._registry.removal_listeners:
            self._registry.removal_listeners.remove(self._on_removal)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(STOP_SECONDS * 2)
        self._thread = None

    def _on_removal(self, type_id, device_id):
        # Called by the registry under its lock, from any thread: only hand the work to the broker's loop.
        self._loop.call_soon_threadsafe(self._end_device, type_id, device_id)

    # -- the loop's thread -----------------------------------------------------------------------------

    def _run(self, ready):
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(self._on_loop_error)
        try:
            self._loop.run_until_complete(self._serve(ready))
        finally:
            self._loop.close()

    def _on_loop_error(self, loop, context):
        # A client that fails its TLS handshake (it does not trust the CA) or hangs up: worth a line, no traceback.
        self._log(f"MQTT: {context.get('message')}: {context.get('exception')!r}")

    async def _serve(self, ready):
        self._stopping = asyncio.Event()
        try:
            broker = Broker({"listeners": {_LISTENER: {"type": "external"}},
                             "plugins": {f"{__name__}.PlatformRules": {"server": self}}})
            await broker.start()
            server = await asyncio.start_server(self._accept, self._host, self._requested_port, ssl=self._context)
        except BaseException as error:  # noqa: BLE001 - handed to the starting thread
            ready.set_exception(error if isinstance(error, OSError) else OSError(str(error)))
            return
        self._broker = broker
        self.port = server.sockets[0].getsockname()[1]
        ready.set_result(None)
        watchdog = asyncio.create_task(self._end_silent_clients())
        await self._stopping.wait()
        watchdog.cancel()
        server.close()
        self._end_device(None, None)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_SECONDS)
        try:
            await asyncio.wait_for(broker.shutdown(), STOP_SECONDS)
        except Exception as error:  # noqa: BLE001 - a timeout or a failure: the fake is stopping anyway
            self._log(f"MQTT: the broker did not stop cleanly: {error!r}")

    async def _end_silent_clients(self):
        while True:
            await asyncio.sleep(KEEP_ALIVE_CHECK_SECONDS)
            now = self._loop.time()
            for connection in list(self._by_peer.values()):
                if connection.keep_alive and now - connection.last_heard > 1.5 * connection.keep_alive:
                    self._log(f"MQTT: {_client(connection)} silent past its keep-alive: connection ended")
                    connection.end()

    async def _accept(self, reader, writer):
        peer = writer.get_extra_info("peername")[:2]
        connection = self._by_peer[peer] = _Connection(writer, self._loop.time())
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self._broker.external_connected(StreamReaderAdapter(reader), StreamWriterAdapter(writer), _LISTENER)
        except Exception as error:  # noqa: BLE001 - one client's failure must not stop the broker
            self._log(f"MQTT: connection from {peer[0]}:{peer[1]} failed: {error!r}")
        finally:
            self._tasks.discard(task)
            del self._by_peer[peer]
            if connection.connected and self._current.get(connection.device) is connection:
                del self._current[connection.device]
                self._registry.client_disconnected(*connection.device)
                self._log(f"MQTT: {_client(connection)} disconnected")
            writer.transport.abort()

    def _connection(self, session):
        return self._by_peer.get((session.remote_address, session.remote_port))

    def admit(self, session):
        """amqtt's authentication: whether the client logs in as a device or gateway of this organisation. An
        accepted login is recorded here, before amqtt sends CONNACK, so that a client that has its CONNACK finds
        itself connected in the API; an older connection of the same client is ended."""
        connection = self._connection(session)
        device = self._registry.login(session.client_id, session.username, session.password)
        if connection is None or device is None:
            self._log(f"MQTT: {session.client_id!r} refused: not authorized")  # the password is never logged
            return False
        connection.device, connection.gateway = device, session.client_id.startswith("g:")
        connection.connected = True
        connection.keep_alive = session.keep_alive or 0
        connection.last_heard = self._loop.time()
        older = self._current.get(device)
        self._current[device] = connection
        if older is not None:
            older.end()
        self._registry.client_connected(*device)
        self._log(f"MQTT: {_client(connection)} connected")
        return True

    def heard(self, session):
        """A packet arrived from the client: it is alive."""
        connection = self._connection(session)
        if connection is not None:
            connection.last_heard = self._loop.time()

    def allow(self, session, topic, action):
        """amqtt's topic check: a topic the client may not use ends its connection."""
        if action == Action.RECEIVE:
            return True  # what a client receives was checked when it subscribed
        connection = self._connection(session)
        if connection is None or connection.device is None:
            return False
        if not topic_allowed(connection.gateway, topic or "", action):
            self._log(f"MQTT: {_client(connection)} may not {action} on {topic!r}: connection ended")
            connection.end()
            return False
        if action == Action.PUBLISH:
            self._registry.client_published(*connection.device)
        return True

    def _end_device(self, type_id, device_id):
        """End the connections of a device (None: of every device)."""
        for connection in list(self._by_peer.values()):
            if type_id is None or connection.device == (type_id, device_id):
                connection.end()


def _client(connection):
    type_id, device_id = connection.device
    return f"{'gateway' if connection.gateway else 'device'} {type_id}:{device_id}"
