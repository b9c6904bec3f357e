"""`python -m devicefactory.fakeplatform`: serve the fake on 127.0.0.1 until Ctrl-C or SIGTERM.

It prints the export lines that point the factory at it (the API token included: the fake's own, made up
for it) and keeps its state in --state-dir, so that a restart serves the same key, token, CA and devices.
"""

import argparse
import shlex
import signal
import sys
import threading

from devicefactory.errors import EXIT_ERROR, EXIT_OK

from .fake import DEFAULT_ORG_ID, FakePlatform, is_org_id
from .statedir import CA_FILE, StateError

DEFAULT_STATE_DIR = ".fakeplatform"


def _org_id_argument(value):
    if not is_org_id(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not an org id: use 1 to 36 lowercase letters and digits")
    return value


def _port_argument(value):
    if not (value.isascii() and value.isdigit()) or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a TCP port (0 to 65535)")
    return int(value)


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
        prog="python -m devicefactory.fakeplatform",
        description="Serve a local fake of the Watson IoT Platform v0002 registry API over HTTPS on 127.0.0.1, "
                    "to try the device factory without an IBM account. It keeps its devices, API key, token "
                    "and CA in --state-dir, so a restart serves the same ones. It prints the `export` lines "
                    "that point the factory at it.",
        epilog="Stop it with Ctrl-C or SIGTERM. Remove the state folder to start afresh.",
    )
    parser.add_argument("--port", type=_port_argument, default=0,
                        help="TCP port to listen on (default: 0, any free port)")
    parser.add_argument("--org", type=_org_id_argument, default=None,
                        help=f"organization id the fake plays (default: the saved state's, else {DEFAULT_ORG_ID})")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                        help=f"folder for the CA certificate {CA_FILE}, its key and the saved registry, API key "
                             f"and token (created mode 0700; default: ./{DEFAULT_STATE_DIR})")
    parser.add_argument("--device-limit", type=_limit_argument, default=None,
                        help="refuse (403) registrations that would take the organization past this many devices "
                             "(default: no limit)")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        platform = FakePlatform(org_id=args.org, port=args.port, state_dir=args.state_dir,
                                device_limit=args.device_limit, persist=True)
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
            print(f"fakeplatform: cannot serve on 127.0.0.1:{args.port}: {error.strerror or error}",
                  file=sys.stderr)
            return EXIT_ERROR
        print(f"# Fake Watson IoT Platform for org {platform.org_id} at https://{platform.address}/api/v0002 "
              f"(state in {args.state_dir}) - run these exports in the shell that runs the factory; "
              "Ctrl-C stops the fake.", file=sys.stderr, flush=True)
        for name, value in platform.env().items():
            print(f"export {name}={shlex.quote(value)}", flush=True)
        threading.Event().wait()  # until Ctrl-C or SIGTERM interrupts it
    except (KeyboardInterrupt, _Terminated):
        pass
    finally:
        platform.stop()
        signal.signal(signal.SIGTERM, previous_handler)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
