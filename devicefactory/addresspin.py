"""Address pins, as `curl --resolve HOST:PORT:ADDRESS` takes them: reach HOST:PORT at another address, while TLS
still verifies the server's certificate against HOST (the name, not the address, is what is trusted).

Unlike curl, ADDRESS may carry a port of its own (HOST:PORT:ADDRESS:PORT2), for a broker that listens elsewhere
than the port the device configs name (the SDK connects only to 8883 or 443).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class AddressPin:
    """--resolve HOST:PORT:ADDRESS[:PORT2]: connect to ADDRESS (port PORT2, else PORT) for HOST:PORT."""

    host: str
    port: int
    address: str
    address_port: int


def parse_pin(value):
    """An AddressPin from HOST:PORT:ADDRESS or HOST:PORT:ADDRESS:PORT2 (ADDRESS an IPv6 one in brackets); ValueError."""
    host, _, rest = value.partition(":")
    port, _, target = rest.partition(":")
    if target.startswith("["):
        address, bracket, tail = target[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"{value!r}: an IPv6 address must be in brackets, as [::1]")
        target_port = tail[1:]
    else:
        address, _, target_port = target.partition(":")
    if not host or not address or not _is_port(port) or (target_port and not _is_port(target_port)):
        raise ValueError(f"{value!r} is not HOST:PORT:ADDRESS (or HOST:PORT:ADDRESS:PORT)")
    return AddressPin(host.lower(), int(port), address, int(target_port or port))


def _is_port(text):
    return text.isascii() and text.isdigit() and 0 < int(text) < 65536
