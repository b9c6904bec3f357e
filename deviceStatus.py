#!/usr/bin/env python3
"""Report the connection state of every device of a batch: connected, disconnected, no connection recorded since
monitoring was activated, or not on the platform, and whether its config is in the local registry."""

import argparse
import sys

from devicefactory.projectpython import use_project_python

use_project_python("deviceStatus.py")  # before the imports below, which need the project's packages

from devicefactory import cli  # noqa: E402
from devicefactory.errors import ExitCode, exit_codes_epilog  # noqa: E402

EPILOG = """\
credentials and options come from the environment, as for deviceRegistrator.py (see its --help):
  WIOTP_API_KEY, WIOTP_API_TOKEN (or WIOTP_AUTH_KEY, WIOTP_AUTH_TOKEN), WIOTP_OPTIONS_DOMAIN,
  WIOTP_OPTIONS_HTTP_VERIFY, WIOTP_OPTIONS_HTTP_HOST, REQUESTS_CA_BUNDLE

Devices <batchId>-0001 ... are matched by their exact ids. The organisation's client connection state API
must be active. Each run writes status-report.jsonl beside the batch's configs (when their folder exists).

{exit_codes}

example:
  python3 deviceStatus.py --batchId 190523 --numberOfDevices 1000 --typeId iotpsutil --wait 300
""".format(exit_codes=exit_codes_epilog([ExitCode.OK, ExitCode.ERROR, ExitCode.USAGE, ExitCode.DEVICES_FAILED,
                                         ExitCode.INTERRUPTED], {
    ExitCode.OK: "every device is connected, with its config here",
    ExitCode.ERROR: "the platform could not answer, or the device type does not exist",
    ExitCode.USAGE: "or configs of another organisation or domain",
    ExitCode.DEVICES_FAILED: "some devices are not connected, or need action",
}))


def build_parser():
    parser = argparse.ArgumentParser(
        prog="deviceStatus.py",
        description="Report the connection state of every device of a batch (the Device Connection State Report).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_registered_batch_arguments(parser, count_help="how many devices of the batch to report on")
    parser.add_argument("--wait", default=0.0, type=cli.positive_float_argument, metavar="SECONDS",
                        help="ask again (2 s doubling to 30 s apart) until every device is connected, "
                             "for at most this long (default: answer at once)")
    parser.add_argument("--by", default="deviceId", choices=("deviceId", "serialNumber"),
                        help="name a manifest batch's devices in the report by device id or by the serial number of "
                        "their manifest rows (default: %(default)s)")
    cli.add_platform_arguments(parser)
    cli.add_registry_argument(parser)
    cli.add_version_argument(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    registry = cli.local_registry(parser, args)
    batch, count = cli.registered_batch(parser, args, registry)
    if args.by != "deviceId" and batch.members is None:
        parser.error(f"argument --by: batch {batch.batch_id} was not registered from a manifest: it has no serial numbers")
    # Imported here so that --help and argument errors answer at once, without loading the SDK.
    from devicefactory.status import StatusOptions, check_status

    options = StatusOptions(cli.platform_options(args), wait_seconds=args.wait, colour=cli.colour_wanted(),
                            by=args.by)
    return cli.run(parser.prog, lambda reporter: check_status(batch, count, options, reporter, registry))


if __name__ == "__main__":
    sys.exit(main())
