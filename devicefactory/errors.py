"""The one domain exception, and every exit code the scripts use, named once with its meaning.

Each script's --help ends with `exit_codes_epilog`, written from these descriptions (and the script's own words on
what success and some failed devices mean for it), so that the epilogs never drift from the codes.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    """An exit code and what it means, for every script."""

    def __new__(cls, value, description):
        member = int.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member

    OK = 0, "done"
    ERROR = 1, "stopped, as nothing more could be done safely: the message says why"
    USAGE = 2, "bad arguments or environment, refused before any work started"
    DEVICES_FAILED = 3, "finished, but some devices need action: the summary names them"
    INTERRUPTED = 130, "interrupted by Ctrl-C or SIGTERM (130, as shells report SIGINT), with the files consistent"


# The names the code has always used; each is the member above.
EXIT_OK = ExitCode.OK
EXIT_ERROR = ExitCode.ERROR
EXIT_USAGE = ExitCode.USAGE
EXIT_DEVICES_FAILED = ExitCode.DEVICES_FAILED
EXIT_INTERRUPTED = ExitCode.INTERRUPTED


def exit_codes_epilog(codes, details=None):
    """The 'exit codes:' paragraph of a script's --help: each of `codes` with its description, and in brackets
    `details` ({code: what it means for this script}) where given."""
    details = details or {}
    lines = ["exit codes:"]
    for code in codes:
        meaning = f"{code.description} ({details[code]})" if code in details else code.description
        lines.append(f"  {int(code):>3}  {meaning}")
    return "\n".join(lines)


class FactoryError(Exception):
    """A problem the user can act on; `main` prints it as one line, with no traceback."""

    exit_code = ExitCode.ERROR
