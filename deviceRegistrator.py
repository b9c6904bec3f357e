#!/usr/bin/env python3
"""Register a batch of devices with the Watson IoT Platform and keep one private config file per device."""

import argparse
import sys

from devicefactory.projectpython import use_project_python

use_project_python("deviceRegistrator.py")  # before the imports below, which need the project's packages

from devicefactory import cli  # noqa: E402
from devicefactory.errors import ExitCode, exit_codes_epilog  # noqa: E402

EPILOG = """\
credentials and options come from the environment, as wiotp-sdk's parseEnvVars() reads them:
  WIOTP_API_KEY, WIOTP_API_TOKEN    the API key (a-<orgId>-<random>) and its token
                                    (or WIOTP_AUTH_KEY and WIOTP_AUTH_TOKEN, which win when set)
  WIOTP_OPTIONS_DOMAIN              the platform's domain (default internetofthings.ibmcloud.com;
                                    Maximo IoT: iot.<masdomain>); written into each config
  WIOTP_OPTIONS_HTTP_VERIFY         true or false (any case); false turns off TLS verification (never do
                                    that in production); any other value is refused
  WIOTP_OPTIONS_HTTP_HOST           host[:port]: send REST calls to https://host[:port]/api/v0002/...
                                    instead of https://<orgId>.<domain>/... (local fake, on-premises)
  REQUESTS_CA_BUNDLE                a CA certificate file to trust (a private CA, the local fake's CA)
  WIOTP_OPTIONS_MQTT_PORT           the devices' MQTT port, 8883 or 443 (Maximo IoT); written into each config
  WIOTP_OPTIONS_MQTT_CAFILE         the CA certificate (PEM) of the devices' MQTT broker; written into each
                                    config (as an absolute path) and passed to the charts by the deploy script

Each device <batchId>-0001, <batchId>-0002, ... (or each row of --manifest) gets a config in
  localDeviceRegistry/<classId lower>/<typeId>/<batchId>/<deviceId>.yaml  (mode 0600)
(the registry folder is --registryDir, or DEVICEFACTORY_REGISTRY_DIR, when given) and every run writes
registration-report.jsonl beside them. The configs hold the only copy of each token: back them up.
Re-running the same command is safe: it registers only the devices that have no config yet and finishes
the work of an interrupted run.

{exit_codes}

examples:
  python3 deviceRegistrator.py --batchId 190523 --numberOfDevices 1000 --typeId iotpsutil --classId Device
  python3 deviceRegistrator.py --batchId line7-w49 --manifest line7-w49.csv --typeId sensor   (docs/manifest.md)
""".format(exit_codes=exit_codes_epilog(list(ExitCode), {
    ExitCode.OK: "every device is registered, with its config here",
    ExitCode.USAGE: "or configs of another organisation or domain",
    ExitCode.DEVICES_FAILED: "the platform refused some devices, some are unconfirmed, a device differs from its "
                             "manifest row, or a config file needs attention: see the report",
    ExitCode.INTERRUPTED: "the tokens are kept: run the same command again",
}))


def build_parser():
    parser = argparse.ArgumentParser(
        prog="deviceRegistrator.py",
        description="Register a batch of devices with the Watson IoT Platform and write one device config per device.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_batch_arguments(
        parser,
        batch_help="the batch's id, e.g. the registration date 190523; devices are <batchId>-0001, ...",
        count_help="how many devices the batch holds (a positive integer); or give --manifest",
        type_help="the device type, created if it does not exist",
        class_help="the class of a new device type",
        count_required=False,
    )
    parser.add_argument("--manifest", metavar="FILE",
                        help="register the devices a manifest lists, one a row, with their deviceInfo, location and "
                        "metadata: CSV with a header row (.csv) or JSON lines (.jsonl); see docs/manifest.md")
    parser.add_argument("--deviceIdFrom", metavar="COLUMN",
                        help="with --manifest: the column whose values are the device ids (e.g. serialNumber; "
                        "default: deviceId)")
    parser.add_argument("--update", action="store_true",
                        help="with --manifest: bring the platform records of devices already registered in line "
                        "with their rows (the device update API; tokens are never touched)")
    cli.add_platform_arguments(parser)
    cli.add_registry_argument(parser)
    cli.add_version_argument(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.numberOfDevices is None) == (args.manifest is None):
        parser.error("give either -n/--numberOfDevices or --manifest (a manifest says how many devices)")
    if args.manifest is None and (args.deviceIdFrom or args.update):
        parser.error("--deviceIdFrom and --update need --manifest")
    batch = cli.batch_from_arguments(parser, args)
    registry = cli.local_registry(parser, args)
    # Imported here so that --help and argument errors answer at once, without loading the SDK.
    from devicefactory.registration import register, registered_from_manifest

    options = cli.platform_options(args)
    if args.manifest is None:
        return cli.run(parser.prog, lambda reporter: register(batch, args.numberOfDevices, options, reporter, registry))
    return cli.run(parser.prog, lambda reporter: registered_from_manifest(
        batch, args.manifest, args.deviceIdFrom or "deviceId", args.update, options, reporter, registry))


if __name__ == "__main__":
    sys.exit(main())
