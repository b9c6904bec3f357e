#!/usr/bin/env python3
"""Run the devices of a batch on this machine, each from its config alone, as the charts' containers would: connect
them to the platform over MQTT, publish a status event from each at an interval, disconnect them all on Ctrl-C."""

import argparse
import sys

from devicefactory.projectpython import use_project_python

use_project_python("deviceRunner.py")  # before the imports below, which need the project's packages

from devicefactory import cli  # noqa: E402
from devicefactory.addresspin import parse_pin  # noqa: E402
from devicefactory.errors import ExitCode, exit_codes_epilog  # noqa: E402

EPILOG = """\
Each device is the SDK's own client (wiotp-sdk DeviceClient, or GatewayClient for --classId Gateway) built by
its parseConfigFile() from localDeviceRegistry/<class>/<typeId>/<batchId>/<deviceId>.yaml: the config's orgId,
domain, token, options.mqtt.port and options.mqtt.caFile decide where and how it connects. A missing, damaged or
foreign config stops the run before anything connects. No token is printed or logged.

--resolve HOST:PORT:ADDRESS works as curl's: a device whose broker is HOST:PORT connects to ADDRESS, and the
broker's certificate is still verified against HOST. ADDRESS may end in :PORT for a broker on another port.

{exit_codes}

example (against the local fake, with no hosts entry for its messaging host):
  python3 deviceRunner.py --batchId 190523 --numberOfDevices 1000 --typeId iotpsutil \\
      --resolve myorg1.messaging.internetofthings.ibmcloud.com:8883:127.0.0.1
""".format(exit_codes=exit_codes_epilog(list(ExitCode), {
    ExitCode.OK: "every device connected, and ran for --duration",
    ExitCode.ERROR: "the run could not start",
    ExitCode.DEVICES_FAILED: "some devices were refused or not answered",
    ExitCode.INTERRUPTED: "every device disconnected first",
}))


def _pin_argument(value):
    try:
        return parse_pin(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser():
    parser = argparse.ArgumentParser(
        prog="deviceRunner.py",
        description="Run the devices of a batch on this machine from their configs: connect, publish, disconnect.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_registered_batch_arguments(parser, count_help="how many devices of the batch to run: 1 to N")
    parser.add_argument("--interval", default=10.0, type=cli.positive_float_argument, metavar="SECONDS",
                        help="how often each device publishes its status event (default: %(default)s)")
    parser.add_argument("--duration", default=None, type=cli.positive_float_argument, metavar="SECONDS",
                        help="stop and disconnect after this long (default: run until Ctrl-C or SIGTERM)")
    parser.add_argument("--resolve", action="append", default=[], type=_pin_argument, metavar="HOST:PORT:ADDRESS",
                        help="connect to ADDRESS for the broker HOST:PORT, verifying TLS against HOST (repeatable)")
    parser.add_argument("--parallel", default=50, type=cli.bounded_int_argument(1000, "connections set up at once"),
                        metavar="N", help="how many devices connect at the same time (default: %(default)s)")
    cli.add_registry_argument(parser)
    cli.add_version_argument(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    registry = cli.local_registry(parser, args)
    batch, count = cli.registered_batch(parser, args, registry)
    # Imported here so that --help and argument errors answer at once, without loading the SDK.
    from devicefactory.localrun import RunOptions, run_devices

    options = RunOptions(interval_seconds=args.interval, duration_seconds=args.duration, pins=tuple(args.resolve),
                         parallel=args.parallel)
    return cli.run(parser.prog, lambda reporter: run_devices(batch, count, options, reporter, registry))


if __name__ == "__main__":
    sys.exit(main())
