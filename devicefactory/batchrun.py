"""What every command that works on a registered batch shares: reaching the platform from the environment,
checking the batch folder before anything is sent, one lock per batch folder, and writing a per-device report.

deviceRegistrator.py, deviceStatus.py and deviceDecommissioner.py each start the same way: the environment's
credentials are checked (a missing one stops the run before any request), the batch folder is checked to be
safe (a link or another user's folder is refused), and only then does the platform hear from us.
"""

import errno
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import EXIT_INTERRUPTED, FactoryError
from .files import write_file_atomically
from .localregistry import BatchLock as BatchLock  # the lock lives with the folder it locks; named here as before
from .platform import Platform, PlatformError, PlatformUnavailable, RetryPolicy, load_platform_config


class Interrupted(FactoryError):
    """Ctrl-C or SIGTERM: stopped as asked, with the batch's files consistent."""

    exit_code = EXIT_INTERRUPTED


@dataclass(frozen=True)
class PlatformOptions:
    """How patient to be with the platform (--timeout, --retries)."""

    timeout_seconds: float = 30.0
    retries: int = 5


def open_platform(options, reporter):
    """The Platform of the environment's credentials, with `options`' patience; retries are reported as
    warnings, and so is TLS verification turned off. Raises PlatformConfigError (exit 2) for a bad environment."""
    config = load_platform_config()
    retry_policy = RetryPolicy(attempts=options.retries + 1, timeout_seconds=options.timeout_seconds)
    platform = Platform(config, retry_policy, on_retry=reporter.warning)
    if not platform.verify:
        reporter.warning("TLS verification is off (WIOTP_OPTIONS_HTTP_VERIFY=false): the API key and every "
                         "device token go to whoever answers; never do this outside a test")
    return platform


def check_batch_folder(registry, batch):
    """Whether the batch's folder exists; a folder unsafe for tokens (a link, another user's) is refused, and so
    is a typeId or batchId that differs only in case from one here (LocalRegistry.checked_batch_folder)."""
    return registry.checked_batch_folder(batch)


@contextmanager
def stopping_cleanly(stopped_because):
    """Turn what stops a run (a file error, the platform, Ctrl-C) into one FactoryError line.

    `stopped_because(reason, refused)` words it and says what became of the work; `refused` is True when the
    platform refused a request for good (400, 401, 403): running again as it is cannot help.
    """
    try:
        yield
    except OSError as error:
        raise FactoryError(stopped_because(describe_os_error(error), False)) from None
    except PlatformError as error:
        raise FactoryError(stopped_because(str(error), not isinstance(error, PlatformUnavailable))) from None
    except KeyboardInterrupt:
        raise Interrupted(stopped_because("interrupted", False)) from None


def describe_os_error(error):
    """One line for a failed file operation; a full disk is named as such. Only a path is shown: an error on an
    open descriptor (os.listdir(fd), dir_fd=) carries a number, or a name without its folder, that says nothing."""
    filename = error.filename if isinstance(error.filename, (str, bytes, os.PathLike)) else None
    if error.errno == errno.ENOSPC:
        return f"the disk is full ({os.fsdecode(filename) if filename else 'writing'})"
    what = error.strerror or str(error)
    return f"{what} ({os.fsdecode(filename)})" if filename else what


def write_report(path, records, reporter):
    """Write one JSON line per record (streamed: `records` may be a generator), atomically; a failure is a
    warning (the report is not the work)."""
    try:
        write_file_atomically(path, (json.dumps(record) + "\n" for record in records))
    except OSError as error:
        reporter.warning(f"could not write the report {path}: {describe_os_error(error)}")
        return False
    return True
