"""Run the devices of a batch on this machine, from their configs alone: the body of deviceRunner.py.

Each device is the SDK's own client (wiotp.sdk.device.DeviceClient, or GatewayClient for a Gateway batch) built
from its config by the SDK's parseConfigFile(), as the charts' containers build theirs, so a device that runs
here runs deployed. The configs are checked first (each is that device's, all of one organisation): a damaged
or foreign one stops the run before anything connects. Devices connect a few at a time (each answer frees a
place), then publish a small status event every interval until the run's duration ends or Ctrl-C/SIGTERM, and
are then disconnected cleanly, all of them.

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
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial

from .batchrun import RunResult, check_batch_folder
from .errors import EXIT_DEVICES_FAILED, EXIT_OK, FactoryError
from .localregistry import LocalRegistry
from .reporting import counted, listed

DEFAULT_INTERVAL_SECONDS = 10.0
DEFAULT_PARALLEL = 50  # connections being set up at once
CONNECT_TIMEOUT_SECONDS = 30.0  # how long a device may take to be answered before it is counted as not connected
SOCKET_TIMEOUT_SECONDS = 5.0  # paho-mqtt's own connect timeout
STATUS_EVENT = "status"  # the event each device publishes: iot-2/evt/status/fmt/json
POLL_SECONDS = 0.02
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
    """One device's SDK client, and what its broker answered: None (nothing yet), 0 (connected) or a refusal code."""

    def __init__(self, device_id, config, gateway, pins):
        from wiotp.sdk.device import DeviceClient
        from wiotp.sdk.gateway import GatewayClient

        self.device_id = device_id
        client_class = GatewayClient if gateway else DeviceClient
        self.client = client_class(config, logHandlers=[logging.NullHandler()])
        self.mqtt = self.client.client  # the SDK's paho-mqtt client, a documented attribute of its clients
        self.answer = None
        self.started = None
        pin = pins.get((self.client.address.lower(), self.client.port))
        if pin is not None:
            self.mqtt._create_socket_connection = partial(
                socket.create_connection, (pin.address, pin.address_port), timeout=SOCKET_TIMEOUT_SECONDS)
        self._sdk_on_connect = self.mqtt.on_connect
        self.mqtt.on_connect = self._on_connect

    def _on_connect(self, mqtt, userdata, flags, rc):
        if rc == 0:
            self._sdk_on_connect(mqtt, userdata, flags, rc)  # marks it connected, subscribes to its commands
        else:
            # The SDK would raise in paho's thread and leave connect() waiting 60 s; a refusal is final here.
            mqtt.disconnect()
        if self.answer is None:
            self.answer = rc

    def start(self):
        """Connect in the background (paho's thread also reconnects after a dropped connection)."""
        self.started = time.monotonic()
        self.mqtt.connect_async(self.client.address, port=self.client.port, keepalive=self.client.keepAlive)
        self.mqtt.loop_start()

    @property
    def connected(self):
        return self.client.isConnected()

    def publish(self, sequence, uptime):
        return self.client.publishEvent(STATUS_EVENT, "json", {"sequence": sequence, "uptimeSeconds": round(uptime)})

    def stop(self):
        """Disconnect cleanly (DISCONNECT sent) and end paho's thread."""
        self.client.disconnect()


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
    missing = [device for device in batch.device_ids(count) if device not in set(valid)]
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
        except Exception as error:  # noqa: BLE001 - the SDK raises bare Exception for a port it does not take
            raise FactoryError(f"{path}: the SDK cannot build its client: {error}") from None
    return devices


def run_devices(batch, count, options, reporter, registry=None, clock=time.monotonic, sleep=time.sleep):
    """deviceRunner.py's work: connect devices 1..`count`, publish every interval until the duration ends (or
    Ctrl-C/SIGTERM, which propagates after every device is disconnected)."""
    devices = load_devices(batch, count, options, registry or LocalRegistry())
    begun = clock()
    published = 0
    try:
        refused, silent = _connect_all(batch, devices, options, reporter, clock, sleep)
        connected = [device for device in devices if device.answer == 0]
        reporter.info(f"{counted(len(connected), 'device')} of {len(devices)} connected in {clock() - begun:.1f} s; "
                      f"each publishes a {STATUS_EVENT} event every {options.interval_seconds:g} s"
                      + ("" if options.duration_seconds is None else f" for {options.duration_seconds:g} s")
                      + " (Ctrl-C disconnects them all)")
        published = _publish_until_done(devices, options, reporter, begun, clock, sleep)
    finally:
        for device in devices:
            if device.started is not None:
                device.stop()
    lines = [f"Batch {batch.batch_id}: ran {counted(len(devices), 'device')} of type {batch.type_id} for "
             f"{clock() - begun:.0f} s: {len(connected)} connected, {len(refused)} refused, {len(silent)} not answered "
             f"within {options.connect_timeout_seconds:g} s; {counted(published, 'event')} published; all disconnected."]
    lines += [f"  refused: {batch.type_id}:{device.device_id}: {_REFUSALS.get(device.answer, device.answer)}"
              for device in refused[:20]]
    if silent:
        lines.append(f"  not answered: {listed(f'{batch.type_id}:{device.device_id}' for device in silent)}")
    return RunResult(lines, EXIT_OK if len(connected) == len(devices) else EXIT_DEVICES_FAILED)


def _connect_all(batch, devices, options, reporter, clock, sleep):
    """Start every device, `options.parallel` at a time; returns (refused, not answered) devices."""
    reporter.start(len(devices), unit="device", description="connecting")
    waiting = deque()
    refused, silent = [], []

    def settle():
        for _ in range(len(waiting)):
            device = waiting.popleft()
            if device.answer == 0:
                reporter.item(f"Device connected: {batch.type_id}:{device.device_id}")
            elif device.answer is not None:
                refused.append(device)
                reporter.item(f"Device refused: {batch.type_id}:{device.device_id}: "
                              f"{_REFUSALS.get(device.answer, device.answer)}")
            elif clock() - device.started > options.connect_timeout_seconds:
                silent.append(device)  # paho keeps trying in the background; the live count shows it if it connects
                reporter.item(f"Device not answered: {batch.type_id}:{device.device_id}")
            else:
                waiting.append(device)

    for device in devices:
        while len(waiting) >= options.parallel:
            sleep(POLL_SECONDS)
            settle()
        device.start()
        waiting.append(device)
    while waiting:
        sleep(POLL_SECONDS)
        settle()
    reporter.close()
    return refused, silent


def _publish_until_done(devices, options, reporter, begun, clock, sleep):
    """Publish a status event from each connected device every interval, showing how many are connected now."""
    deadline = None if options.duration_seconds is None else begun + options.duration_seconds
    reporter.start(len(devices), unit="device", description="connected now")
    shown, sequence, published = None, 0, 0
    next_round = clock()
    while deadline is None or clock() < deadline:
        now = clock()
        if now >= next_round:
            sequence += 1
            published += sum(1 for device in devices if device.connected and device.publish(sequence, now - begun))
            next_round = now + options.interval_seconds
        live = sum(1 for device in devices if device.connected)
        if live != shown:
            reporter.gauge(live, f"connected now: {live} of {len(devices)}")
            shown = live
        sleep(min(0.5, max(0.0, next_round - clock()), *([] if deadline is None else [max(0.0, deadline - clock())])))
    reporter.close()
    return published
