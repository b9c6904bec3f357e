"""Ask the helm command which major version it is, without ever reaching a cluster."""

import os
import re
import shlex
import signal
import subprocess

VERSION_TIMEOUT_SECONDS = 10
# Helm 2's plain `helm version` also asks the cluster's Tiller, and can hang: `--client` keeps it local.
# Helm 3 takes `--client` as a hidden no-op; should a later Helm drop it, `version --short` asks no cluster.
VERSION_QUESTIONS = (["version", "--short", "--client"], ["version", "--short"])
_VERSION = re.compile(r"\bv?(\d+)\.(\d+)\.(\d+)")


class HelmVersionUnknown(Exception):
    """The helm command could not be run, did not answer in time, or printed no version."""


def helm_version(helm_cmd, timeout=VERSION_TIMEOUT_SECONDS):
    """(major version, version text, the command that told it): 3, 'v3.14.4', 'helm version --short --client'."""
    for question in VERSION_QUESTIONS:
        command = [helm_cmd, *question]
        exit_status, output = _run(command, timeout)
        found = _VERSION.search(output)
        if exit_status == 0 and found:
            return int(found.group(1)), found.group(0), shlex.join(command)
        if exit_status != 0:
            last_problem = f"'{shlex.join(command)}' exited with status {exit_status}{_first_line(output)}"
        else:
            last_problem = f"'{shlex.join(command)}' printed no version{_first_line(output)}"
    raise HelmVersionUnknown(last_problem)


def _run(command, timeout):
    try:
        # A session of its own, so that a timeout ends whatever the command started too.
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise HelmVersionUnknown(f"'{command[0]}' was not found") from None
    except OSError as error:
        raise HelmVersionUnknown(f"'{command[0]}' cannot be run ({error.strerror or error})") from None
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _end_session(process)
        process.communicate()
        raise HelmVersionUnknown(f"'{shlex.join(command)}' did not answer within {timeout:g} s") from None
    return process.returncode, output.decode("utf-8", "replace")


def _end_session(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _first_line(output):
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return f": {lines[0][:200]}" if lines else ""
