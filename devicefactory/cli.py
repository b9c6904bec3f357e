"""What both command-line scripts share: argparse types that refuse bad input, and the one-line error."""

import argparse
import sys

from .ids import id_problem


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
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive whole number")
    return number


def positive_float_argument(value):
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number")
    return number


def non_negative_int_argument(value):
    if value.isdigit():
        return int(value)
    raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of 0 or more")


def print_error(prog, error):
    """Print a FactoryError as one line on stderr and return its exit code."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    return error.exit_code
