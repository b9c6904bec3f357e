"""`python -m devicefactory.fakeplatform`: serve the fake on 127.0.0.1 until Ctrl-C or SIGTERM.

It prints the export lines that point the factory at it (the API token included: the fake's own, made up
for it), the MQTT CA file and port the registrator writes into each config, and the hosts-file line that makes
the messaging host reach its broker. It keeps its state in --state-dir, so that a restart serves the same key,
token, CA and devices.
"""

import argparse
import re
import shlex
import signal
import sys
import threading

from devicefactory.projectpython import FAKE_MODULES, use_project_python

use_project_python("python3 -m devicefactory.fakeplatform", FAKE_MODULES, module="devicefactory.fakeplatform")

from devicefactory import __version__  # noqa: E402
from devicefactory.errors import EXIT_ERROR, EXIT_OK  # noqa: E402

from .fake import DEFAULT_ORG_ID, FakePlatform, is_org_id  # noqa: E402
from .mqtt import DEFAULT_DOMAIN  # noqa: E402
from .statedir import CA_FILE, StateError  # noqa: E402

DEFAULT_MQTT_PORT = 8883  # the platform's MQTT over TLS port, one of the two the SDK accepts (443 is the other)

DEFAULT_STATE_DIR = ".fakeplatform"
# A host name (RFC 1123 labels), as the broker's certificate names <org>.messaging.<domain>.
_DOMAIN = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+\Z")


def _org_id_argument(value):
    if not is_org_id(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not an org id: use 1 to 36 lowercase letters and digits")
    return value


def _port_argument(value):
    if not (value.isascii() and value.isdigit()) or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a TCP port (0 to 65535)")
    return int(value)


def _domain_argument(value):
    if not _DOMAIN.match(value.lower()):
        raise argparse.ArgumentTypeError(f"{value!r} is not a host name (such as iot.example.com)")
    return value.lower()


def _limit_argument(value):
    if not (value.isascii() and value.isdigit()):
        raise argparse.ArgumentTypeError(f"{value!r} is not a device count (0 or more)")
    return int(value)


class _Terminated(Exception):
    """Raised in the main thread by the SIGTERM handler."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def _parser():
    parser = argparse.ArgumentParser(
        prog="python3 -m devicefactory.fakeplatform",
        description="Serve a local fake of the Watson IoT Platform on 127.0.0.1: the v0002 registry API over "
                    "HTTPS and device connections over MQTT with TLS, to try the device factory without an IBM "
                    "account. It keeps its devices, API key, token and CA in --state-dir, so a restart serves "
                    "the same ones. It prints the `export` lines that point the factory at it, and the hosts "
                    "line for its messaging host.",
        epilog="Stop it with Ctrl-C or SIGTERM. Remove the state folder to start afresh.",
    )
    parser.add_argument("--port", type=_port_argument, default=0,
                        help="TCP port to listen on (default: 0, any free port)")
    parser.add_argument("--mqtt-port", type=_port_argument, default=DEFAULT_MQTT_PORT,
                        help=f"TCP port of the MQTT broker devices connect to (default: {DEFAULT_MQTT_PORT}; the SDK "
                             "connects only to 8883 or 443, so pin another port with deviceRunner.py --resolve)")
    parser.add_argument("--domain", type=_domain_argument, default=DEFAULT_DOMAIN,
                        help="the platform domain the broker's certificate is for: devices connect to "
                             "<org>.messaging.<domain> (default: %(default)s)")
    parser.add_argument("--org", type=_org_id_argument, default=None,
                        help=f"organization id the fake plays (default: the saved state's, else {DEFAULT_ORG_ID})")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                        help=f"folder for the CA certificate {CA_FILE}, its key and the saved registry, API key "
                             f"and token (created mode 0700; default: ./{DEFAULT_STATE_DIR})")
    parser.add_argument("--device-limit", type=_limit_argument, default=None,
                        help="refuse (403) registrations that would take the organization past this many devices "
                             "(default: no limit)")
    parser.add_argument("--version", action="version", version=f"%(prog)s (device factory) {__version__}")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        platform = FakePlatform(org_id=args.org, port=args.port, state_dir=args.state_dir,
                                device_limit=args.device_limit, persist=True, mqtt_port=args.mqtt_port,
                                domain=args.domain)
    except (StateError, ValueError) as error:
        print(f"fakeplatform: {error}", file=sys.stderr)
        return EXIT_ERROR
    platform.log_file = sys.stderr
    previous_handler = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        try:
            platform.start()
        except StateError as error:
            print(f"fakeplatform: {error}", file=sys.stderr)
            return EXIT_ERROR
        except OSError as error:
            print(f"fakeplatform: cannot serve on 127.0.0.1 (HTTPS port {args.port}, MQTT port {args.mqtt_port}): "
                  f"{error.strerror or error}", file=sys.stderr)
            return EXIT_ERROR
        print(f"# Fake Watson IoT Platform for org {platform.org_id} at https://{platform.address}/api/v0002 "
              f"(state in {args.state_dir}) - run these exports in the shell that runs the factory; "
              "Ctrl-C stops the fake.", file=sys.stderr, flush=True)
        for name, value in {**platform.env(), **platform.device_env()}.items():
            print(f"export {name}={shlex.quote(value)}", flush=True)
        if platform.domain != DEFAULT_DOMAIN:
            print(f"export WIOTP_OPTIONS_DOMAIN={shlex.quote(platform.domain)}", flush=True)
        hosts = (f"add this line to /etc/hosts:\n#   {platform.hosts_line()}\n# or "
                 if platform.config_port == platform.mqtt_port else "")
        print(f"# Devices connect to {platform.messaging_host} (MQTT over TLS, broker on port {platform.mqtt_port}): "
              f"{hosts}run them with deviceRunner.py --resolve {platform.resolve_pin()}", file=sys.stderr, flush=True)
        threading.Event().wait()  # until Ctrl-C or SIGTERM interrupts it
    except (KeyboardInterrupt, _Terminated):
        pass
    finally:
        platform.stop()
        signal.signal(signal.SIGTERM, previous_handler)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
