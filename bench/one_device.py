"""One device in a process of its own, as each of the charts' pods runs one: the SDK's DeviceClient built by its
parseConfigFile() from the device's config, connected with the SDK's connect(), a status event every 5 s.

    python3 bench/one_device.py CONFIG HOST:PORT:ADDRESS:BROKER_PORT SECONDS

A pod would reach the broker through its hostAliases; here the name lookup of HOST:PORT is answered with
ADDRESS:BROKER_PORT in this process (tests/sdk_device.py's map_host, which the MQTT tests' devices use too). TLS
verification is the SDK's, unchanged.
"""

import logging
import sys
import time
from pathlib import Path

import wiotp.sdk.device

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from sdk_device import map_host  # noqa: E402  (the tests' stand-in for a hosts entry)


def main(config_path, pin, seconds):
    map_host(pin)
    client = wiotp.sdk.device.DeviceClient(wiotp.sdk.device.parseConfigFile(config_path),
                                           logHandlers=[logging.NullHandler()])
    client.connect()
    deadline = time.monotonic() + float(seconds)
    sequence = 0
    while time.monotonic() < deadline:
        sequence += 1
        client.publishEvent("status", "json", {"sequence": sequence})
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
    client.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
