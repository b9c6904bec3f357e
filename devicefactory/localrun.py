"""Run the devices of a batch on this machine, from their configs alone: the body of deviceRunner.py.

Each device is the SDK's own client (wiotp.sdk.device.DeviceClient, or GatewayClient for a Gateway batch) built
from its config by the SDK's parseConfigFile(), as the charts' containers build theirs, so a device that runs
here runs deployed. The configs are checked first (each is that device's, all of one organisation): a damaged
or foreign one stops the run before anything connects. Devices connect a few at a time (each answer frees a
place), then publish a small status event every interval until the run's duration ends or Ctrl-C/SIGTERM, and
are then disconnected cleanly, all of them.

One process holds a thousand devices: their paho clients are driven through paho's external-loop interface
(loop_read, loop_write, loop_misc) from one thread and one selector, instead of the SDK's connect(), which
starts a thread per device whose select() cannot watch a socket numbered above 1,023.

Address pins (--resolve HOST:PORT:ADDRESS, as `curl --resolve`): a device whose broker is HOST:PORT connects to
ADDRESS instead, and still verifies the broker's certificate against HOST, for a broker whose name does not
resolve here (the local fake, split DNS). paho-mqtt 1.6 opens its socket in `Client._create_socket_connection`
and wraps it with `server_hostname=<host>`; the pin replaces that one method on the device's own client, so TLS,
the CA file and the hostname check stay the SDK's.

This module and platform.py are the two that import the SDK: platform.py its application (REST) side, this
module its device side. No token is ever printed or logged: the SDK's loggers get a NullHandler, and messages
name devices by type and id.
"""

import logging
import queue
import resource
import selectors
import socket
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from .batchrun import check_batch_folder
from .errors import EXIT_DEVICES_FAILED, EXIT_INTERRUPTED, EXIT_OK, FactoryError
from .localregistry import LocalRegistry
from .reporting import MOST_LISTED, counted, listed
from .results import RunResult

DEFAULT_INTERVAL_SECONDS = 10.0
DEFAULT_PARALLEL = 50  # connections being set up at once
CONNECT_TIMEOUT_SECONDS = 30.0  # how long a device may take to be answered before it is counted as not connected
SOCKET_TIMEOUT_SECONDS = 5.0  # paho-mqtt's own connect timeout
STATUS_EVENT = "status"  # the event each device publishes: iot-2/evt/status/fmt/json
POLL_SECONDS = 0.02
RETRY_MAX_SECONDS = 30.0  # a dropped connection is tried again after 2, 4, ... up to this many seconds
# CONNACK return codes (MQTT 3.1.1, table 3.1), as the SDK's AbstractClient._onConnect names them.
_REFUSALS = {1: "incorrect protocol version", 2: "invalid client identifier", 3: "server unavailable",
             4: "bad user name or password", 5: "not authorized"}


@dataclass(frozen=True)
class RunOptions:
    """deviceRunner.py's flags: how often to publish, for how long to run (None: until stopped), the address pins,
    and how many connections to set up at once."""

    interval_seconds: float = DEFAULT_INTERVAL_SECONDS
    duration_seconds: float | None = None
    pins: tuple = field(default_factory=tuple)
    parallel: int = DEFAULT_PARALLEL
    connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS


class _Device:
    """One device's SDK client, and what its broker answered: None (nothing yet), 0 (connected), a CONNACK refusal
    code, or the error of its last attempt to connect (`failure`)."""

    def __init__(self, device_id, config, gateway, pins):
        from wiotp.sdk.device import DeviceClient
        from wiotp.sdk.gateway import GatewayClient

        self.device_id = device_id
        client_class = GatewayClient if gateway else DeviceClient
        self.client = client_class(config, logHandlers=[logging.NullHandler()])
        self.mqtt = self.client.client  # the SDK's paho-mqtt client, a documented attribute of its clients
        self.answer = None
        self.failure = None
        self.started = None
        self.attempts = 0
        pin = pins.get((self.client.address.lower(), self.client.port))
        create = self.mqtt._create_socket_connection
        if pin is not None:
            create = partial(socket.create_connection, (pin.address, pin.address_port), timeout=SOCKET_TIMEOUT_SECONDS)
        self._opening_twin = None
        self._aborted = False

        def create_and_keep():
            sock = create()
            self._opening_twin = sock.dup()  # TLS wrapping detaches `sock`: its twin lets abort_open reach the socket
            if self._aborted:  # abort_open came just before the twin: it sets the flag first, so one of us sees it
                self.abort_open()
            return sock

        self.mqtt._create_socket_connection = create_and_keep
        self._sdk_on_connect = self.mqtt.on_connect
        self.mqtt.on_connect = self._on_connect

    def _on_connect(self, mqtt, userdata, flags, rc):
        if rc == 0:
            self._sdk_on_connect(mqtt, userdata, flags, rc)  # marks it connected, subscribes to its commands
        else:
            # The SDK would raise here and leave its connect() waiting 60 s: a refusal is final, say so at once.
            mqtt.disconnect()
        if self.answer is None or rc == 0:
            self.answer = rc

    def open(self):
        """TCP, TLS (the SDK's CA file, the host name checked) and CONNECT sent: blocking, so run in a worker."""
        self.attempts += 1
        try:
            self.mqtt.connect(self.client.address, port=self.client.port, keepalive=self.client.keepAlive)
        finally:
            twin, self._opening_twin = self._opening_twin, None
            if twin is not None:
                twin.close()

    def abort_open(self):
        """End a connect under way: paho waits up to the keep-alive (60 s) for a silent broker's TLS handshake."""
        self._aborted = True
        twin = self._opening_twin
        if twin is not None:
            try:
                twin.shutdown(socket.SHUT_RDWR)
            except OSError:  # the connect has just ended, and closed it
                pass

    @property
    def connected(self):
        return self.client.isConnected()

    @property
    def refused(self):
        return self.answer not in (None, 0)

    def publish(self, sequence, uptime):
        return self.client.publishEvent(STATUS_EVENT, "json", {"sequence": sequence, "uptimeSeconds": round(uptime)})

    def stop(self):
        """Disconnect cleanly: the SDK's disconnect() sends DISCONNECT, and paho closes the socket."""
        if self.mqtt.socket() is not None:
            self.client.disconnect()


class _Network:
    """Every device's connection, driven from the calling thread through one selector (epoll on Linux): no thread
    per device, and none of select()'s limit of 1,024 sockets that paho's own loop has. Only the blocking part of a
    connect (TCP, TLS handshake) runs in `parallel` worker threads; a device is then handed to the selector."""

    def __init__(self, parallel, clock):
        self._selector = selectors.DefaultSelector()
        self._workers = ThreadPoolExecutor(parallel, thread_name_prefix="connect")
        self._opened = queue.SimpleQueue()
        self._watched = {}  # device -> its socket, as registered
        self._retries = []  # (time due, device): a dropped or failed connection, tried again later
        self._clock = clock
        self._last_misc = clock()
        self._stopping = False
        self.opening = 0

    def open(self, device):
        self.opening += 1
        device.started = device.started or self._clock()
        self._workers.submit(self._open, device)

    def _open(self, device):
        try:
            device.open()
            self._opened.put((device, None))
        except Exception as error:  # noqa: BLE001 - any failure to connect is the device's, reported by name
            self._opened.put((device, error))

    def poll(self, timeout):
        """Adopt opened connections, serve the sockets ready within `timeout`, keep connections alive, and try
        dropped ones again."""
        self._adopt()
        for key, events in self._selector.select(timeout):
            device = key.data
            if events & selectors.EVENT_READ:
                device.mqtt.loop_read()
            if events & selectors.EVENT_WRITE and device.mqtt.socket() is not None:
                device.mqtt.loop_write()
            self._watch(device)
        now = self._clock()
        if now - self._last_misc >= 1.0:  # keep-alive pings, and the end of connections whose broker is silent
            self._last_misc = now
            for device in list(self._watched):
                device.mqtt.loop_misc()
                self._watch(device)
            due = [device for when, device in self._retries if when <= now]
            self._retries = [(when, device) for when, device in self._retries if when > now]
            for device in due:
                self.open(device)

    def flush(self, devices):
        """After publishing: make sure what a device could not write at once gets written."""
        for device in devices:
            if device in self._watched:
                self._watch(device)

    def _adopt(self):
        while True:
            try:
                device, error = self._opened.get_nowait()
            except queue.Empty:
                return
            self.opening -= 1
            device.failure = error
            if error is None:
                self._watch(device)
            elif not device.refused:
                self._retry(device)

    def _watch(self, device):
        """Register the device's socket for reading (and writing, while paho has data waiting), or forget it once
        closed; a connection that ended without a refusal or a stop is tried again."""
        sock = device.mqtt.socket()
        registered = self._watched.get(device)
        if registered is not None and registered is not sock:
            self._selector.unregister(registered)
            del self._watched[device]
            registered = None
        if sock is None:
            if not device.refused and not self._stopping:
                self._retry(device)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if device.mqtt.want_write() else 0)
        if registered is None:
            self._selector.register(sock, events, device)
            self._watched[device] = sock
        elif self._selector.get_key(sock).events != events:
            self._selector.modify(sock, events, device)

    def _retry(self, device):
        delay = min(RETRY_MAX_SECONDS, 2.0 ** min(device.attempts, 5))
        self._retries.append((self._clock() + delay, device))

    def close(self, devices):
        """Disconnect every device cleanly, including those whose connect is still under way."""
        self._stopping = True
        self._workers.shutdown(wait=False, cancel_futures=True)
        if self.opening:
            for device in devices:
                device.abort_open()
        self._workers.shutdown(wait=True)
        self._adopt()
        for device in devices:
            device.stop()
            if device in self._watched:
                self._selector.unregister(self._watched.pop(device))
        self._selector.close()


def load_devices(batch, count, options, registry):
    """The first `count` devices of `batch` as SDK clients, from their configs; FactoryError (one line) for a
    missing, damaged or foreign config, before anything connects."""
    from wiotp.sdk import ConfigurationException
    from wiotp.sdk.device import parseConfigFile

    if not check_batch_folder(registry, batch):
        raise FactoryError(f"no configs of this batch here: {registry.batch_folder(batch)} does not exist")
    valid, damaged = registry.checked_devices(batch, count)
    if damaged:
        raise FactoryError(f"damaged config: {next(iter(damaged.values()))}"
                           + (f" (and {counted(len(damaged) - 1, 'more')})" if len(damaged) > 1 else ""))
    have = set(valid)  # built once: per device it made 20,000 devices cost 30 s before the first connect
    missing = [device for device in batch.device_ids(count) if device not in have]
    if missing:
        raise FactoryError(f"no config for {counted(len(missing), 'device')} of the batch: {listed(missing)}")
    pins = {(pin.host, pin.port): pin for pin in options.pins}
    devices, org = [], None
    for device_id in valid:
        path = registry.config_path(batch, device_id)
        try:
            config = parseConfigFile(str(path))
        except (ConfigurationException, TypeError, AttributeError) as error:
            raise FactoryError(f"{path}: the SDK refuses it: {error}") from None
        place = (config.orgId, config.domain)
        if org is not None and place != org:
            raise FactoryError(f"{path}: is a device of org {place[0]} ({place[1]}), the batch's first is of "
                               f"{org[0]} ({org[1]}): not one batch")
        org = place
        try:
            devices.append(_Device(device_id, config, batch.class_id == "Gateway", pins))
        except OSError as error:  # ssl names no file: the CA file is the one the client opens
            raise FactoryError(f"{path}: its options.mqtt.caFile {config.caFile} cannot be read "
                               f"({error.strerror or error})") from None
        except Exception as error:  # noqa: BLE001 - the SDK raises bare Exception for a port it does not take
            raise FactoryError(f"{path}: the SDK cannot build its client: {error}") from None
    return devices


def run_devices(batch, count, options, reporter, registry=None, clock=time.monotonic):
    """deviceRunner.py's work: connect devices 1..`count`, publish every interval until the duration ends or
    Ctrl-C/SIGTERM stops it; then every device is disconnected and the summary returned (exit 130 when stopped)."""
    devices = load_devices(batch, count, options, registry or LocalRegistry())
    _allow_open_files(len(devices) + 100)
    network = _Network(options.parallel, clock)
    begun = clock()
    published = None  # unknown when Ctrl-C stops the publishing
    stopped = False
    try:
        _connect_all(batch, devices, network, options, reporter, clock)
        connected = [device for device in devices if device.answer == 0]
        reporter.info(f"{counted(len(connected), 'device')} of {len(devices)} connected in {clock() - begun:.1f} s; "
                      f"each publishes a {STATUS_EVENT} event every {options.interval_seconds:g} s"
                      + ("" if options.duration_seconds is None else f" for {options.duration_seconds:g} s")
                      + " (Ctrl-C disconnects them all)")
        published = _publish_until_done(devices, network, options, reporter, begun, clock)
    except KeyboardInterrupt:
        stopped = True  # Ctrl-C or SIGTERM: how a run without --duration ends; the summary still follows
    finally:
        network.close(devices)
    connected = [device for device in devices if device.answer == 0]
    refused = [device for device in devices if device.refused]
    failed = [device for device in devices if device.answer is None]
    events = "stopped by Ctrl-C or SIGTERM" if stopped else f"{counted(published, 'event')} published"
    lines = [f"Batch {batch.batch_id}: ran {counted(len(devices), 'device')} of type {batch.type_id} for "
             f"{clock() - begun:.0f} s: {len(connected)} connected at first, {len(refused)} refused, {len(failed)} "
             f"never connected; {events}; all disconnected."]
    lines += [f"  refused: {batch.type_id}:{device.device_id}: {_REFUSALS.get(device.answer, device.answer)}"
              for device in refused[:MOST_LISTED]]
    lines += [f"  never connected: {batch.type_id}:{device.device_id}: {_describe(device.failure)}"
              for device in failed[:MOST_LISTED]]
    if stopped:
        return RunResult(lines, EXIT_INTERRUPTED)
    return RunResult(lines, EXIT_OK if len(connected) == len(devices) else EXIT_DEVICES_FAILED)


def _describe(error):
    if error is None:
        return f"no answer within {CONNECT_TIMEOUT_SECONDS:g} s"
    return str(error) or type(error).__name__


def _allow_open_files(count):
    """Each device holds a socket: raise the soft limit on open files (often 1,024) as far as the hard one allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count if hard == resource.RLIM_INFINITY else min(count, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _connect_all(batch, devices, network, options, reporter, clock):
    """Connect every device, `options.parallel` at a time; each answer (or failure, or silence past the timeout)
    frees a place. Devices that failed are tried again in the background."""
    reporter.start(len(devices), unit="device", description="connecting")
    waiting = deque()

    def settle():
        for _ in range(len(waiting)):
            device = waiting.popleft()
            if device.answer == 0:
                reporter.item(f"Device connected: {batch.type_id}:{device.device_id}")
            elif device.refused:
                reporter.item(f"Device refused: {batch.type_id}:{device.device_id}: "
                              f"{_REFUSALS.get(device.answer, device.answer)}")
            elif device.failure is not None or clock() - device.started > options.connect_timeout_seconds:
                reporter.item(f"Device not connected: {batch.type_id}:{device.device_id}: {_describe(device.failure)}")
            else:
                waiting.append(device)

    for device in devices:
        while len(waiting) >= options.parallel:
            network.poll(POLL_SECONDS)
            settle()
        network.open(device)
        waiting.append(device)
    while waiting:
        network.poll(POLL_SECONDS)
        settle()
    reporter.close()


def _publish_until_done(devices, network, options, reporter, begun, clock):
    """Publish a status event from each connected device every interval, showing how many are connected now."""
    deadline = None if options.duration_seconds is None else begun + options.duration_seconds
    reporter.start(len(devices), unit="device", description="connected now")
    shown, sequence, published = None, 0, 0
    next_round = clock()
    while deadline is None or clock() < deadline:
        now = clock()
        if now >= next_round:
            sequence += 1
            live = [device for device in devices if device.connected]
            published += sum(1 for device in live if device.publish(sequence, now - begun))
            network.flush(live)
            next_round = now + options.interval_seconds
        live_count = sum(1 for device in devices if device.connected)
        if live_count != shown:
            reporter.gauge(live_count, f"connected now: {live_count} of {len(devices)}")
            shown = live_count
        until = min(next_round, deadline if deadline is not None else next_round)
        network.poll(max(0.0, min(0.5, until - clock())))
    reporter.close()
    return published
