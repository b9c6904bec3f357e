"""What every command returns to its script: one type for the four of them.

A command's function (register, write_deploy_scripts, check_status, decommission) reports progress through its
Reporter and returns a RunResult; `cli.run` prints its lines and exits with its code. Library callers (the
benchmark, the linter step) read what it made from `made`.
"""

from dataclasses import dataclass

from .errors import ExitCode


@dataclass(frozen=True)
class RunResult:
    """The summary lines to print, the exit code, and what the command made (the deployer's ScriptsWritten)."""

    lines: list
    exit_code: ExitCode = ExitCode.OK
    made: object = None
