#!/usr/bin/env python3
"""Remove a batch of devices from the Watson IoT Platform and delete their local configs."""

import argparse
import sys

from devicefactory.projectpython import use_project_python

use_project_python("deviceDecommissioner.py")  # before the imports below, which need the project's packages

from devicefactory import cli  # noqa: E402
from devicefactory.errors import ExitCode, exit_codes_epilog  # noqa: E402

EPILOG = """\
credentials and options come from the environment, as for deviceRegistrator.py (see its --help):
  WIOTP_API_KEY, WIOTP_API_TOKEN (or WIOTP_AUTH_KEY, WIOTP_AUTH_TOKEN), WIOTP_OPTIONS_DOMAIN,
  WIOTP_OPTIONS_HTTP_VERIFY, WIOTP_OPTIONS_HTTP_HOST, REQUESTS_CA_BUNDLE

Recall the batch's deployment first (bash bin/recall-...bat), then decommission it. Devices 1 to N
(<batchId>-0001, ...) are removed with the platform's bulk remove API, whether their configs are here or not; a config
is deleted only once the platform no longer holds its device, and only after reading it: a file that is not that
very device's config of this organisation and domain is kept. Configs of another organisation or domain than the
credentials', or a device type the platform does not hold, stop the run before anything is removed. Each run
writes decommission-report.jsonl beside the configs. Re-running the same command is safe.

{exit_codes}

example:
  python3 deviceDecommissioner.py --batchId 190523 --numberOfDevices 1000 --typeId iotpsutil
""".format(exit_codes=exit_codes_epilog(list(ExitCode), {
    ExitCode.OK: "every device is off the platform",
    ExitCode.ERROR: "or was cancelled at the question, or the device type does not exist",
    ExitCode.USAGE: "or configs of another organisation or domain, or no terminal to confirm on and no --yes",
    ExitCode.DEVICES_FAILED: "the platform refused to remove some devices, or some config files were kept and "
                             "need attention: see the report",
}))


def build_parser():
    parser = argparse.ArgumentParser(
        prog="deviceDecommissioner.py",
        description="Remove a batch of devices from the Watson IoT Platform and delete their local configs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_registered_batch_arguments(parser, count_help="how many devices of the batch to remove: 1 to N")
    parser.add_argument("--yes", action="store_true",
                        help="remove without asking (needed when stdin is not a terminal)")
    cli.add_platform_arguments(parser)
    cli.add_registry_argument(parser)
    cli.add_version_argument(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    registry = cli.local_registry(parser, args)
    batch, count = cli.registered_batch(parser, args, registry)
    # Imported here so that --help and argument errors answer at once, without loading the SDK.
    from devicefactory.decommission import DecommissionOptions, decommission

    options = DecommissionOptions(cli.platform_options(args), assume_yes=args.yes, confirm=cli.ask_on_terminal)
    return cli.run(parser.prog, lambda reporter: decommission(batch, count, options, reporter, registry))


if __name__ == "__main__":
    sys.exit(main())
