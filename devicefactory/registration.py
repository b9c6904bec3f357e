"""Register one batch of devices and keep every token: the body of deviceRegistrator.py.

One device's path: its id (Batch.device_id) -> a token made here (tokens) -> the pending journal, on disk
(pendingtokens) -> a bulk request (bulkrequests, platform) -> its config file (localregistry) -> the report.
"""

import errno
import fcntl
import json
import os
import secrets
from collections import Counter
from dataclasses import dataclass

from .bulkrequests import bulk_add_entry, registered_with_nonce, split_under_limit
from .errors import EXIT_DEVICES_FAILED, EXIT_INTERRUPTED, EXIT_OK, FactoryError
from .files import make_private_dirs, write_file_atomically
from .localregistry import LocalRegistry, write_device_config
from .pendingtokens import PendingTokens
from .platform import (
    DEFAULT_DOMAIN,
    MAX_REQUEST_BYTES,
    Platform,
    PlatformError,
    RequestTooLarge,
    RetryPolicy,
    load_platform_config,
)
from .tokens import new_device_token, redact_tokens

REPORT_KIND = "registration"
REPORT_NAME = REPORT_KIND + "-report.jsonl"
LOCK_NAME = ".lock"
MAX_FAILURES_LISTED = 20

OUTCOME_LINES = {
    "registered": "Device registration success: {device}",
    "recovered": "Device registration success: {device} (recovered from an interrupted run)",
    "already-present": "Device already registered: {device} (its config is kept)",
    "failed": "Device registration failed: {device}: {reason}",
    "pending": "Device registration unconfirmed: {device}: {reason}",
}


class Interrupted(FactoryError):
    """Ctrl-C: stopped as asked, with every token accounted for."""

    exit_code = EXIT_INTERRUPTED


@dataclass(frozen=True)
class RegistrationOptions:
    """How patient to be with the platform."""

    timeout_seconds: float = 30.0
    retries: int = 5


@dataclass(frozen=True)
class RegistrationResult:
    """What the run did: the summary lines to print and the exit code."""

    lines: list
    exit_code: int


def register(batch, count, options, reporter, registry=None):
    """deviceRegistrator.py's work: register devices 1..`count` of `batch` from the environment's credentials."""
    config = load_platform_config()  # before anything is written: a missing credential stops here
    retry_policy = RetryPolicy(attempts=options.retries + 1, timeout_seconds=options.timeout_seconds)
    platform = Platform(config, retry_policy, on_retry=reporter.warning)
    return register_batch(batch, count, platform, reporter, registry or LocalRegistry())


def register_batch(batch, count, platform, reporter, registry, max_request_bytes=MAX_REQUEST_BYTES):
    """Register the devices 1..`count` of `batch` that have no config yet."""
    directory = registry.batch_folder(batch)
    with _BatchLock(directory):
        run = _Run(batch, count, platform, reporter, registry, max_request_bytes)
        try:
            run.register()
        except OSError as error:
            raise FactoryError(run.stopped_because(_describe_os_error(error))) from None
        except PlatformError as error:
            raise FactoryError(run.stopped_because(str(error))) from None
        except KeyboardInterrupt:
            raise Interrupted(run.stopped_because("interrupted")) from None
        finally:
            reporter.close()
            run.write_report()
    exit_code = EXIT_DEVICES_FAILED if run.outcomes_count()["failed"] else EXIT_OK
    return RegistrationResult(run.summary_lines(), exit_code)


class _Run:
    """One run over one batch: what is wanted, what is on disk, what the platform said."""

    def __init__(self, batch, count, platform, reporter, registry, max_request_bytes):
        self.batch, self.count, self.platform, self.reporter = batch, count, platform, reporter
        self.registry, self.max_request_bytes = registry, max_request_bytes
        self.directory = registry.batch_folder(batch)
        self.journal = PendingTokens(self.directory)
        self.pending = {}  # device id -> (token, nonce): the token is on disk, the outcome not yet known
        self.outcomes = {}  # device id -> (outcome, reason)
        self.nonce = secrets.token_hex(8)
        self.domain = platform.domain if platform.domain != DEFAULT_DOMAIN else None
        self.report_path = registry.report_path(batch, REPORT_KIND)

    def register(self):
        self.reporter.start(self.count)
        wanted = list(self.batch.device_ids(self.count))
        stored = {device for _, device in self.registry.stored_devices(self.batch)}
        self.registry.remove_stale_temporary_files(self.batch)
        # A config written just before a crash supersedes its journal line.
        self.pending = {d: entry for d, entry in self.journal.load().items() if d not in stored}
        beyond = len(set(self.pending) - set(wanted))
        if beyond:
            self.reporter.warning(
                f"{beyond} tokens of devices beyond --numberOfDevices {self.count} are pending "
                f"from an earlier run: run again with that run's number of devices to settle them"
            )
        for device in wanted:
            if device in stored:
                self._settle(device, "already-present")
        to_register = [device for device in wanted if device not in stored]
        if to_register:  # else no request at all: a finished batch needs nothing from the platform
            self.platform.ensure_device_type(self.batch.type_id, self.batch.class_id)
            entries = [self._entry(device) for device in to_register]
            for chunk in split_under_limit(entries, self.max_request_bytes):
                self._register_chunk(chunk)
        self.journal.rewrite(self.pending)

    def _entry(self, device):
        # A token left pending by an interrupted run is sent again as it is: the platform may hold it already.
        token, nonce = self.pending.get(device) or (new_device_token(), self.nonce)
        return bulk_add_entry(self.batch.type_id, device, token, nonce, self.batch.batch_id)

    def _register_chunk(self, chunk):
        self.journal.record((e["deviceId"], e["authToken"], _nonce_of(e)) for e in chunk)
        self.pending.update((e["deviceId"], (e["authToken"], _nonce_of(e))) for e in chunk)
        try:
            results = self.platform.add_devices(chunk)
        except RequestTooLarge:
            if len(chunk) == 1:
                self._refuse(chunk[0]["deviceId"], "the platform refused the request as too large (HTTP 413)")
                return
            middle = len(chunk) // 2
            self._register_chunk(chunk[:middle])
            self._register_chunk(chunk[middle:])
            return
        except PlatformError as error:
            # The message may quote the platform's answer; an answer could quote the request's tokens.
            error.args = (redact_tokens(str(error), (e["authToken"] for e in chunk)),)
            raise
        by_id = {result.get("deviceId"): result for result in results}
        confirmed = {
            device: result["authToken"]
            for device, result in by_id.items()
            if result.get("success") and result.get("authToken")
        }
        # "Already exists" may mean our own earlier attempt got through (a lost answer, a retried request,
        # a killed run): the nonce in the device's metadata tells whether the platform holds our token.
        unconfirmed = [entry["deviceId"] for entry in chunk if entry["deviceId"] not in confirmed]
        documents = self.platform.get_devices(self.batch.type_id, unconfirmed) if unconfirmed else {}
        for entry in chunk:
            device = entry["deviceId"]
            if device in confirmed:
                self._store(device, confirmed[device], "registered")
            elif registered_with_nonce(documents.get(device), _nonce_of(entry)):
                self._store(device, entry["authToken"], "recovered")
            else:
                self._refuse(device, redact_tokens(_failure_reason(by_id.get(device)), [entry["authToken"]]))

    def _store(self, device, token, outcome):
        write_device_config(self.directory, self.platform.org_id, self.batch.type_id, device, token, self.domain)
        self.pending.pop(device, None)
        self._settle(device, outcome)

    def _refuse(self, device, reason):
        self.journal.forget([device])
        self.pending.pop(device, None)
        self._settle(device, "failed", reason)

    def _settle(self, device, outcome, reason=None):
        self.outcomes[device] = (outcome, reason)
        self.reporter.item(OUTCOME_LINES[outcome].format(device=f"{self.batch.type_id}:{device}", reason=reason))

    def stopped_because(self, reason):
        """The one-line error for a run that had to stop, saying what became of the tokens."""
        message = f"registration stopped: {reason}"
        if self.pending:
            message += (
                f"; {len(self.pending)} devices may or may not be registered: their tokens are kept in "
                f"{self.journal.path}: run the same command again to finish"
            )
        return message

    def outcomes_count(self):
        return Counter(outcome for outcome, _ in self.outcomes.values())

    def write_report(self):
        """One JSON line per device of the batch: id, outcome, reason (never a token)."""
        lines = []
        for device in self.batch.device_ids(self.count):
            if device in self.outcomes:
                outcome, reason = self.outcomes[device]
            elif device in self.pending:
                outcome, reason = "pending", "no answer from the platform yet: run again to finish"
            else:
                outcome, reason = "not-attempted", "the run stopped before this device"
            lines.append(json.dumps({"deviceId": device, "typeId": self.batch.type_id, "outcome": outcome, "reason": reason}))
        try:
            write_file_atomically(self.report_path, "\n".join(lines) + "\n")
        except OSError as error:
            self.reporter.warning(f"could not write the report {self.report_path}: {_describe_os_error(error)}")

    def summary_lines(self):
        counts = self.outcomes_count()
        registered = counts["registered"] + counts["recovered"]
        lines = [
            f"Batch {self.batch.batch_id} ({self.count} devices of type {self.batch.type_id}, "
            f"class {self.batch.class_id}): {registered} registered, {counts['already-present']} already present, "
            f"{counts['failed']} failed."
        ]
        failures = [(device, reason) for device, (outcome, reason) in self.outcomes.items() if outcome == "failed"]
        if failures and not self.reporter.per_device:
            lines += [f"  failed: {self.batch.type_id}:{device}: {reason}" for device, reason in failures[:MAX_FAILURES_LISTED]]
            if len(failures) > MAX_FAILURES_LISTED:
                lines.append(f"  ... and {len(failures) - MAX_FAILURES_LISTED} more")
        lines.append(f"Configs: {self.directory}/   Report: {self.report_path}")
        return lines


def _nonce_of(entry):
    return entry["metadata"]["deviceFactory"]["nonce"]


def _failure_reason(result):
    if result is None:
        return "the platform's answer did not mention this device"
    error = result.get("error")
    if isinstance(error, dict):
        error = error.get("message") or json.dumps(error)
    return str(error or "the platform did not register it")


def _describe_os_error(error):
    if error.errno == errno.ENOSPC:
        return f"the disk is full ({error.filename or 'writing'})"
    return f"{error.strerror or error} ({error.filename})" if error.filename else str(error)


class _BatchLock:
    """One registrator per batch folder at a time: two would both write the journal and the configs."""

    def __init__(self, directory):
        self.directory = directory

    def __enter__(self):
        try:
            make_private_dirs(self.directory)
            self.descriptor = os.open(self.directory / LOCK_NAME, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as error:
            raise FactoryError(f"cannot use {self.directory}: {_describe_os_error(error)}") from None
        try:
            fcntl.flock(self.descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.descriptor)
            raise FactoryError(f"another deviceRegistrator.py is registering this batch ({self.directory})") from None
        return self

    def __exit__(self, *exc_info):
        os.close(self.descriptor)
