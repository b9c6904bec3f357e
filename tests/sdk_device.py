"""A device as its maker would write it: the SDK's own client, built by the SDK's parseConfigFile() from a config
the registrator wrote, unmodified. Run by the MQTT tests in a process of its own:

    python tests/sdk_device.py CONFIG Device|Gateway HOST:PORT:ADDRESS:BROKER_PORT

The one thing it does that a device would not: its messaging host does not resolve on a test machine, so this
process (and only this one) answers the name lookup of HOST:PORT with ADDRESS:BROKER_PORT, by wrapping
socket.getaddrinfo. TLS still verifies the broker's certificate against HOST with the config's CA file.

It connects (the SDK's connect()), publishes one event with QoS 1 and waits for the broker's acknowledgement,
prints "connected" and "published", then waits for a line on stdin (or its end) and disconnects (the SDK's
disconnect()), printing "disconnected". A refused login prints "refused: <the SDK's message>" and exits 3.
"""

import logging
import os
import socket
import sys
import threading

import wiotp.sdk.device
import wiotp.sdk.gateway


class _Refusals(logging.Handler):
    """The SDK logs a refused login as CRITICAL in paho's thread (its connect() then waits 60 s): report it now."""

    def emit(self, record):
        if record.levelno >= logging.CRITICAL:
            print(f"refused: {record.getMessage()}", flush=True)
            os._exit(3)


def map_host(pin):
    host, port, address, broker_port = pin.split(":")
    lookup = socket.getaddrinfo

    def getaddrinfo(name, service, *args, **kwargs):
        if name == host and int(service) == int(port):
            return lookup(address, int(broker_port), *args, **kwargs)
        return lookup(name, service, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


def main(config_path, class_id, pin):
    map_host(pin)
    config = wiotp.sdk.device.parseConfigFile(config_path)
    client_class = wiotp.sdk.gateway.GatewayClient if class_id == "Gateway" else wiotp.sdk.device.DeviceClient
    client = client_class(config, logHandlers=[_Refusals()])
    client.connect()
    print("connected", flush=True)
    acknowledged = threading.Event()
    assert client.publishEvent("status", "json", {"hello": "platform"}, qos=1, onPublish=acknowledged.set)
    assert acknowledged.wait(10), "the broker did not acknowledge the event"
    print("published", flush=True)
    sys.stdin.readline()
    client.disconnect()
    print("disconnected", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
