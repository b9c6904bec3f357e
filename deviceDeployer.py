#!/usr/bin/env python3
"""Write the scripts that deploy a batch of registered devices with Helm, and recall them."""

import argparse
import os
import re
import sys

from devicefactory.projectpython import use_project_python

use_project_python("deviceDeployer.py")  # before the imports below, which need the project's packages

from devicefactory import cli  # noqa: E402
from devicefactory.deployer import (  # noqa: E402
    HELM_VERSIONS,
    DeployOptions,
    local_chart_problem,
    write_deploy_scripts,
)
from devicefactory.errors import ExitCode, exit_codes_epilog  # noqa: E402
from devicefactory.fleet import DEFAULT_FLEET_SIZE, MAX_FLEET_SIZE  # noqa: E402

EPILOG = """\
The scripts run from any folder (they first move to the folder above their bin/), check once that the helm
command exists, go on past a release that fails, and end by listing the failed releases and exiting 1. Ctrl-C
or kill stops them: no further release starts, and they exit 130. They need bash 3.2, or 4.3 with --parallel.

{exit_codes}

example:
  python3 deviceDeployer.py --batchId 190523 --numberOfDevices 100 --typeId iotpsutil --classId Device \\
      --helmChart wiotp/psutil
  bash bin/deploy-device-iotpsutil-190523.bat    # deploy the 100 devices
  bash bin/recall-device-iotpsutil-190523.bat    # and later recall them
  python3 deviceDeployer.py -b 190523 -n 10000 --helmChart ./helm/psutil --fleet   # 10 releases of 1000 devices
""".format(exit_codes=exit_codes_epilog([ExitCode.OK, ExitCode.ERROR, ExitCode.USAGE, ExitCode.INTERRUPTED], {
    ExitCode.OK: "both scripts are written",
}))


def one_line(value):
    """An argparse type: a non-empty word or path that fits on one script line (a chart, or the helm command:
    the scripts quote it as one word, so 'helm --kube-context x' would be looked for as one command)."""
    if not value or any(ord(character) < 32 or ord(character) == 127 for character in value):
        raise argparse.ArgumentTypeError(f"{value!r} must be non-empty, with no control characters")
    return value


def chart_argument(value):
    """An argparse type: a chart for the scripts; a local path (/, ./, ../, ~) must exist in this folder."""
    value = one_line(value)
    if value.startswith("-"):  # helm would take it for one of its flags (--post-renderer=...)
        raise argparse.ArgumentTypeError(f"{value!r} is not a chart: a chart name or path cannot start with '-'")
    problem = local_chart_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def helm_command_argument(value):
    """An argparse type: the helm command, one name or path (a wrapper script takes any arguments it needs)."""
    value = one_line(value)
    if value.startswith("-") or re.search(r"\s-", value) and not os.path.exists(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a command name or path: for extra helm flags, write a small wrapper script and "
            f"give its path")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="deviceDeployer.py",
        description="Write bin/deploy-<class>-<type>-<batch>.bat and bin/recall-<class>-<type>-<batch>.bat: bash "
        "scripts with one helm command per device, that deploy (helm upgrade -i) and recall the first N devices "
        "of a batch registered by deviceRegistrator.py. It reads the local registry (localDeviceRegistry/ in the "
        "current folder, or --registryDir), runs no helm command other than 'helm version', and needs no platform "
        "credentials.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_batch_arguments(
        parser,
        batch_help="the batch to deploy, as registered (e.g. 190523)",
        count_help="how many devices to deploy: the first N of the batch, by device number" + cli.REGISTERED_SIZE_HELP,
        type_help="the device type of the batch",
        class_help="the class of the devices",
        count_required=False,
    )
    parser.add_argument("--helmChart", required=True, type=chart_argument, metavar="CHART",
                        help="the chart that runs one device from its config, e.g. wiotp/psutil or "
                        "./helm/psutil (a relative path is taken from this folder; one that starts with /, ./, ../ "
                        "or ~ must exist here, any other name is left to helm unless it exists here)")
    parser.add_argument("--helmCmd", default="helm", type=helm_command_argument, metavar="COMMAND",
                        help="the helm command the scripts run, a name on PATH or a path (default: %(default)s)")
    parser.add_argument("--helmVersion", type=int, choices=HELM_VERSIONS,
                        help="write Helm 2 (helm delete --purge) or Helm 3 (helm uninstall) syntax "
                        "(default: ask '<helmCmd> version --short --client'; Helm 3 if that fails)")
    parser.add_argument("--parallel", default=1, type=cli.positive_int_argument, metavar="N",
                        help="run up to N helm commands at a time, with a progress line per release; "
                        "N > 1 needs bash 4.3 or later (default: 1, one after another)")
    parser.add_argument("--fleet", action="store_true",
                        help="one helm release per fleet of up to --fleetSize devices (a StatefulSet, one pod per "
                        "device) instead of one per device; its values files, which hold the tokens, go to the "
                        "batch's fleet/ folder")
    parser.add_argument("--fleetSize", metavar="K",
                        type=cli.bounded_int_argument(MAX_FLEET_SIZE, "a release's Secret must stay far under 1 MiB"),
                        help=f"with --fleet: at most K devices per fleet release (default: {DEFAULT_FLEET_SIZE}, "
                        f"at most {MAX_FLEET_SIZE:,})")
    cli.add_registry_argument(parser)
    cli.add_version_argument(parser)
    parser.add_argument("--replaceRecall", action="store_true",
                        help="write over the batch's recall script even when it recalls releases the new one would "
                        "not (the batch deployed in the other form, with another --fleetSize or more devices); "
                        "those releases stay deployed with no script to recall them")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    registry = cli.local_registry(parser, args)
    batch, count = cli.registered_batch(parser, args, registry, count_configs=True)
    if args.fleetSize is not None and not args.fleet:
        parser.error("argument --fleetSize: needs --fleet")
    fleet_size = (args.fleetSize or DEFAULT_FLEET_SIZE) if args.fleet else None
    options = DeployOptions(helm_chart=args.helmChart, helm_cmd=args.helmCmd, helm_version=args.helmVersion,
                            parallel=args.parallel, fleet_size=fleet_size, replace_recall=args.replaceRecall)
    return cli.run(parser.prog, lambda reporter: write_deploy_scripts(batch, count, options, reporter, registry))


if __name__ == "__main__":
    sys.exit(main())
