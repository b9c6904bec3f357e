"""What every command-line script shares: the batch's flags, argparse types that refuse bad input, and `run`,
which calls the script's one function and turns its result or its FactoryError into output and an exit code."""

import argparse
import os
import signal
import sys

from . import __version__
from .batch import (
    CLASS_IDS,
    DEFAULT_CLASS_ID,
    DEFAULT_TYPE_ID,
    MAX_DEVICES,
    REGISTRY_DIR_VARIABLE,
    REGISTRY_FOLDER,
    Batch,
)
from .errors import EXIT_ERROR, EXIT_INTERRUPTED, FactoryError
from .ids import MAX_ID_LENGTH, id_problem
from .localregistry import BadRegistryDir, LocalRegistry, helm_path_problem, registry_dir_from
from .reporting import Reporter, counted


def _id_argument(what):
    def parse(value):
        problem = id_problem(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{what} {value!r} {problem}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


batch_id_argument = _id_argument("batchId")
type_id_argument = _id_argument("typeId")


def positive_int_argument(value):
    # ASCII digits only: int() would also take " 5", "1_000" and other scripts' digits.
    number = int(value) if value.isascii() and value.isdigit() else 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive whole number")
    return number


def bounded_int_argument(largest, why):
    """An argparse type: a positive whole number of at most `largest` (`why` says where the bound comes from)."""
    def parse(value):
        number = positive_int_argument(value)
        if number > largest:
            raise argparse.ArgumentTypeError(f"{value!r} is more than {largest:,} ({why})")
        return number

    return parse


def device_count_argument(value):
    """A number of devices: 1 to MAX_DEVICES."""
    number = positive_int_argument(value)
    if number > MAX_DEVICES:
        raise argparse.ArgumentTypeError(f"{value!r} is more devices than one batch may hold ({MAX_DEVICES:,})")
    return number


def positive_float_argument(value, largest=7 * 24 * 3600.0):
    """A positive number of seconds, at most a week: a typo such as 1e308 is not a wait for ever."""
    try:
        number = float(value) if value.isascii() else 0.0
    except ValueError:
        number = 0.0
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number")
    if number > largest:
        raise argparse.ArgumentTypeError(f"{value!r} is more than {largest:g} seconds (a week)")
    return number


def non_negative_int_argument(value):
    if value.isascii() and value.isdigit():
        return int(value)
    raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of 0 or more")


def add_version_argument(parser):
    """--version: the factory's version, the same in every script."""
    parser.add_argument("--version", action="version", version=f"%(prog)s (device factory) {__version__}")


def add_batch_arguments(parser, batch_help, count_help, type_help, class_help, count_required=True):
    """-b/--batchId, -n/--numberOfDevices, -t/--typeId and -c/--classId, the same in every script."""
    parser.add_argument("-b", "--batchId", required=True, type=batch_id_argument, help=batch_help)
    parser.add_argument("-n", "--numberOfDevices", required=count_required, type=device_count_argument, metavar="N",
                        help=f"{count_help} (at most {MAX_DEVICES:,})")
    parser.add_argument("-t", "--typeId", default=DEFAULT_TYPE_ID, type=type_id_argument,
                        help=f"{type_help} (default: %(default)s)")
    parser.add_argument("-c", "--classId", default=DEFAULT_CLASS_ID, choices=CLASS_IDS,
                        help=f"{class_help} (default: %(default)s)")


REGISTERED_SIZE_HELP = ("; default: the batch's registered size: a manifest batch's members (an -n that disagrees "
                        "is refused), else its devices with a config here")


def add_registered_batch_arguments(parser, count_help):
    """The batch flags of a script that works on a batch already registered (deviceStatus, deviceDecommissioner)."""
    add_batch_arguments(
        parser,
        batch_help="the batch's id, as registered; devices are <batchId>-0001, ... or its manifest's",
        count_help=count_help + REGISTERED_SIZE_HELP,
        type_help="the device type of the batch",
        class_help="the class of the batch's device type",
        count_required=False,
    )


def registry_dir_argument(value):
    """An argparse type: a folder for the local registry that the generated scripts can pass to helm."""
    problem = helm_path_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(f"{value!r} {problem}")
    return value


def add_registry_argument(parser):
    """--registryDir: where the configs live, the same in every script (DEVICEFACTORY_REGISTRY_DIR otherwise)."""
    parser.add_argument("--registryDir", type=registry_dir_argument, metavar="DIR",
                        help=f"the local device registry: the folder of the device configs, which hold the only copy "
                        f"of each token (default: ${REGISTRY_DIR_VARIABLE} when set, else {REGISTRY_FOLDER}/ in the "
                        f"current folder, where 'git clean -xdf' would delete them)")


def local_registry(parser, args):
    """The LocalRegistry that --registryDir or DEVICEFACTORY_REGISTRY_DIR name (a bad variable: a usage error)."""
    try:
        return LocalRegistry(root=registry_dir_from(args.registryDir))
    except BadRegistryDir as error:
        parser.error(str(error))


def add_platform_arguments(parser):
    """--timeout and --retries: how patient to be with the platform, the same in every script that calls it."""
    parser.add_argument("--timeout", default=30.0, type=positive_float_argument, metavar="SECONDS",
                        help="how long to wait for each answer from the platform (default: %(default)s)")
    parser.add_argument("--retries", default=5, type=non_negative_int_argument, metavar="N",
                        help="how often to retry a request after a transient failure (default: %(default)s)")


def platform_options(args):
    """The PlatformOptions of add_platform_arguments' flags."""
    from .batchrun import PlatformOptions

    return PlatformOptions(timeout_seconds=args.timeout, retries=args.retries)


def colour_wanted(stream=None):
    """Whether to colour output: only on a terminal, and not when NO_COLOR is set (https://no-color.org)."""
    stream = stream or sys.stdout
    return stream.isatty() and not os.environ.get("NO_COLOR")


def ask_on_terminal(question):
    """Ask a yes/no question on the terminal: True for y or yes, False for anything else (or end of input),
    None when stdin is not a terminal (nobody to ask)."""
    if not sys.stdin.isatty():
        return None
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def batch_from_arguments(parser, args):
    """The Batch the flags name; a batch whose last device id would be too long is a usage error."""
    batch = Batch(args.classId, args.typeId, args.batchId)
    if args.numberOfDevices is None:
        return batch
    last_device = batch.device_id(args.numberOfDevices)
    if len(last_device) > MAX_ID_LENGTH:
        parser.error(f"batchId {args.batchId!r} is too long for {counted(args.numberOfDevices, 'device')}: "
                     f"the last deviceId {last_device!r} would exceed {MAX_ID_LENGTH} characters")
    return batch


def registered_batch(parser, args, registry=None, count_configs=False):
    """(the Batch the flags name, with its manifest's members when it has one; how many devices to work on: -n,
    or the batch's registered size). An -n that disagrees with a manifest, or none where the batch has no
    configs here to count, is a usage error. `count_configs`: a numbered batch's size is its number of configs
    (the deployer deploys the first N configs), not its highest device number."""
    registry = registry or LocalRegistry()
    batch = Batch(args.classId, args.typeId, args.batchId)
    try:
        batch = registry.with_members(batch)
    except (OSError, ValueError) as error:
        parser.exit(EXIT_ERROR, f"{parser.prog}: error: cannot read the manifest of batch {args.batchId}: {error}\n")
    if batch.members is not None:
        if args.numberOfDevices not in (None, batch.size):
            parser.error(f"argument -n/--numberOfDevices: batch {batch.batch_id} was registered from a manifest of "
                         f"{counted(batch.size, 'device')}, not {args.numberOfDevices}: leave -n out")
        return batch, batch.size
    if args.numberOfDevices is not None:
        return batch_from_arguments(parser, args), args.numberOfDevices
    size = registry.registered_size(batch, count_configs)
    if size is None:
        parser.error(f"argument -n/--numberOfDevices: needed, as {registry.batch_folder(batch)} holds no device "
                     f"configs to count")
    return batch, size


def run(prog, work):
    """Call `work(reporter)`, print the lines of the result it returns, and return its exit code.

    A FactoryError becomes one line on stderr and its exit code, never a traceback.
    """
    reporter = Reporter(prog)
    # A cancelled CI job or a `kill` sends SIGTERM: stop as on Ctrl-C, with the same message and report.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = work(reporter)
    except FactoryError as error:
        reporter.close()
        return print_error(prog, error)
    except KeyboardInterrupt:
        reporter.close()
        print(f"{prog}: error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    reporter.close()
    for line in result.lines:
        print(line)
    return result.exit_code


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def print_error(prog, error):
    """Print a FactoryError as one line on stderr and return its exit code."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    return error.exit_code
