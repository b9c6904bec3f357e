"""Register one batch of devices and keep every token: the body of deviceRegistrator.py.

One device's path: its id (Batch.device_id) -> a token made here (tokens) -> the pending journal, on disk
(pendingtokens) -> a bulk request (bulkrequests, platform) -> its config file (custody, localregistry) -> the report.

A device whose config file is there but is not its own config of this platform (damaged, another device's) is
neither sent nor written over: the file is kept, any token of it stays in the journal, and the run needs
attention (exit 3). Configs of another organisation or domain stop the run before anything is sent (exit 2).
"""

import secrets

from .batchrun import BatchLock, check_batch_folder, open_platform, stopping_cleanly, write_report
from .bulkrequests import METADATA_KEY, bulk_add_entry, registered_with_nonce, split_under_limit
from .custody import Custody, attention_lines
from .errors import EXIT_DEVICES_FAILED, EXIT_OK
from .files import make_file_private, sync_files
from .localregistry import LocalRegistry, helm_path_problem
from .manifest import differences
from .manifestfile import ManifestRefused, accept_manifest
from .outcomes import Outcomes, summary_head
from .pendingtokens import PendingTokens
from .platform import (
    LARGEST_PAGE_SIZE,
    MAX_REQUEST_BYTES,
    MQTT_CA_FILE_VARIABLE,
    PlatformConfigError,
    PlatformError,
    RequestTooLarge,
)
from .reporting import counted
from .results import RunResult
from .tokens import new_device_token, redact_tokens

REPORT_KIND = "registration"
REPORT_NAME = REPORT_KIND + "-report.jsonl"

OUTCOME_LINES = {
    "registered": "Device registration success: {device}",
    "recovered": "Device registration success: {device} (recovered from an interrupted run)",
    "already-present": "Device already registered: {device} (its config is kept)",
    "failed": "Device registration failed: {device}: {reason}",
    "pending": "Device registration unconfirmed: {device}: {reason}",
    "kept": "Device not registered: {device}: {reason}",
    "differs": "Device differs from its manifest row: {device}: {reason}",
    "updated": "Device updated to its manifest row: {device}: {reason}",
    "not-in-manifest": "Device no longer in the manifest: {device} (still registered, its config kept)",
}


def register(batch, count, options, reporter, registry=None, manifest=None):
    """deviceRegistrator.py's work: register devices 1..`count` of `batch` from the environment's credentials.
    `options` are batchrun.PlatformOptions; `manifest` a manifestfile.AcceptedManifest (then `batch` has its
    members and `count` is their number)."""
    registry = registry or LocalRegistry()
    if manifest is None and registry.has_manifest(batch):
        raise ManifestRefused(f"batch {batch.batch_id} was registered from a manifest "
                              f"({registry.manifest_path(batch)}): register it again with --manifest, not -n")
    platform = open_platform(options, reporter)  # a missing or bad variable stops here, before anything is sent
    ca_file = platform.device_options["mqtt_ca_file"]
    problem = ca_file and helm_path_problem(ca_file)
    if problem:  # the deployer could not pass it to helm: refused before it is written into every config
        raise PlatformConfigError(f"{MQTT_CA_FILE_VARIABLE} {ca_file!r} {problem}")
    check_batch_folder(registry, batch)
    return register_batch(batch, count, platform, reporter, registry, manifest=manifest)


def registered_from_manifest(batch, path, device_id_from, update, options, reporter, registry=None):
    """deviceRegistrator.py --manifest's work: check the manifest (refused whole, before anything is sent or
    written), then register its devices as `batch`'s members."""
    registry = registry or LocalRegistry()
    check_batch_folder(registry, batch)
    manifest = accept_manifest(path, batch, registry, device_id_from, update)
    if manifest.kept:
        reporter.warning(f"the manifest no longer lists {counted(len(manifest.kept), 'device')} of the batch (first: "
                         f"{manifest.kept[0].device_id}): kept registered and members of the batch, with their "
                         f"configs; the registrator never removes a device")
    batch = batch.with_members(manifest.members)
    return register(batch, batch.size, options, reporter, registry, manifest)


def register_batch(batch, count, platform, reporter, registry, max_request_bytes=MAX_REQUEST_BYTES, manifest=None):
    """Register the devices 1..`count` of `batch` that have no valid config yet; with a manifest, compare the
    devices already registered with their rows (and update them when asked).

    Nothing is written before the platform has answered once: a run refused at its first request (a wrong key,
    no connection, a bad certificate) leaves no folder, lock or report behind.
    """
    run = _Run(batch, count, platform, reporter, registry, max_request_bytes, manifest)
    try:
        with stopping_cleanly(run.stopped_because):
            run.register()
    finally:
        reporter.close()
        if run.lock.held:
            run.report_written = write_report(run.report_path, run.report_records(), reporter)
            run.lock.release()
    counts = run.outcomes.counts()
    exit_code = (EXIT_DEVICES_FAILED if counts["failed"] or counts["pending"] or counts["kept"] or counts["differs"]
                 else EXIT_OK)
    return RunResult(run.summary_lines(), exit_code)


class _Run:
    """One run over one batch: what is wanted, what is on disk, what the platform said."""

    def __init__(self, batch, count, platform, reporter, registry, max_request_bytes, manifest=None):
        self.batch, self.count, self.platform, self.reporter = batch, count, platform, reporter
        self.manifest = manifest
        self.differences = {}  # device id -> {field: {"platform": ..., "manifest": ...}}
        self.rows_in_flight = {}  # device id -> ManifestRow, for the devices of the requests not settled yet
        self.registry, self.max_request_bytes = registry, max_request_bytes
        self.directory = registry.batch_folder(batch)
        self.lock = BatchLock(self.directory)
        self.journal = PendingTokens(self.directory)
        self.pending = {}  # device id -> (token, nonce): the token is on disk, the outcome not yet known
        self.outcomes = Outcomes(batch, OUTCOME_LINES, reporter, unanswered="pending")
        self.written = []  # configs of this request not synced yet: synced before the journal lets their tokens go
        self.nonce = secrets.token_hex(8)
        self.options = platform.device_options
        self.custody = Custody.of_run(registry, batch, platform)
        self.kept = {}  # device id -> Verdict: a config file that is not the device's own, kept, not registered
        self.report_path = registry.report_path(batch, REPORT_KIND)
        self.report_written = False

    def register(self):
        survey = None
        if self.registry.check_batch_folder(self.batch):
            self.lock.acquire()  # an flock writes nothing: the configs are read under it before anything is written
            try:
                survey = self.custody.survey_batch(self.count)
                self.custody.refuse_another_platform(survey, "nothing was sent or written")
            except BaseException:
                self.lock.release()
                raise
            self._take_folder()
        stored = self._read_local_state(survey) if self.lock.held else set()
        to_register = [device for device in self.batch.device_ids(self.count)
                       if device not in stored and device not in self.kept]
        if to_register:  # else no request at all: a finished batch needs nothing from the platform
            self.platform.ensure_device_type(self.batch.type_id, self.batch.class_id)
            if not self.lock.held:  # a new batch: its folder is made only now that the platform has answered
                self._take_folder()
                stored = self._read_local_state()
                to_register = [device for device in to_register if device not in stored and device not in self.kept]
            for chunk in split_under_limit(self._entries(to_register), self.max_request_bytes):
                self._register_chunk(chunk)
        self._sync_then_forget_settled_tokens()
        if self.manifest is not None:
            self._compare_present()

    def _entries(self, to_register):
        """The bulk add entries of `to_register`, in batch order."""
        if self.manifest is None:
            return (self._entry(device) for device in to_register)
        return self._manifest_entries(set(to_register))

    def _manifest_entries(self, wanted):
        # A manifest batch's rows are read as a stream from its stored manifest: only the ids stay in memory.
        for row in self.registry.manifest_rows(self.batch):
            if row.device_id in wanted:
                self.rows_in_flight[row.device_id] = row  # for its row and serial number in the outcome line
                yield self._entry(row.device_id, row)

    def _take_folder(self):
        for folder in self.registry.prepare_batch_folder(self.batch):
            self.reporter.warning(f"{folder} was writable by other users: made it private (0700)")
        if not self.lock.held:
            self.lock.acquire()
        self.registry.remove_stale_temporary_files(self.batch)
        if self.manifest is not None:  # the batch remembers its members before any of them is sent
            self.registry.write_manifest(self.batch, self.manifest.stored_rows())

    def _compare_present(self):
        """Compare each device that was already registered with its manifest row: 'differs' field by field, or
        with --update brought in line through the device's own update API (its token is never touched)."""
        present = self.outcomes.devices("already-present")
        if not present:
            return
        documents = self.platform.get_devices(self.batch.type_id, present, page_size=LARGEST_PAGE_SIZE)
        present = set(present)
        for row in self.registry.manifest_rows(self.batch):
            device = row.device_id
            if device not in present:
                continue
            if not row.in_manifest:
                self._settle(device, "not-in-manifest", row=row)
                continue
            if device not in documents:
                continue  # a config whose device the platform does not hold: deviceStatus.py says what to do
            document = documents.pop(device)
            if row.location is not None:  # the device document carries no location: one GET for each row with one
                document = {**document, "location": self.platform.get_location(self.batch.type_id, device)}
            found = differences(row, document)
            if not found:
                continue
            self.differences[device] = found
            fields = ", ".join(f"{name} {change['platform']!r} -> {change['manifest']!r}"
                               if name != "metadata" else "metadata" for name, change in found.items())
            if self.manifest.update:
                self._update(row, document, found)
                self._settle(device, "updated", fields, row)
            else:
                self._settle(device, "differs", fields, row)

    def _update(self, row, document, found):
        if any(name.startswith("deviceInfo.") for name in found) or "metadata" in found:
            metadata = None
            if "metadata" in found:  # the factory's own record (the run's nonce) stays beside the row's
                ours = (document.get("metadata") or {}).get(METADATA_KEY)
                metadata = {**row.metadata, **({METADATA_KEY: ours} if ours is not None else {})}
            self.platform.update_device(self.batch.type_id, row.device_id, row.device_info or None, metadata)
        if any(name.startswith("location.") for name in found):
            self.platform.set_location(self.batch.type_id, row.device_id, row.location)

    def _read_local_state(self, survey=None):
        """The devices with a valid config; a file that is not its device's own config is kept and its device left
        out; every other wanted device is settled from the journal and the platform."""
        self.reporter.start(self.count)
        if survey is None:
            survey = self.custody.survey_batch(self.count)
            self.custody.refuse_another_platform(survey, "nothing was sent or written")
        valid = survey.valid
        opened = 0
        for device in valid:
            opened += make_file_private(self.registry.config_path(self.batch, device))
            self._settle(device, "already-present")
        stored = set(valid)
        if opened:
            self.reporter.warning(f"{counted(opened, 'config')} in {self.directory} were readable by other users: "
                                  f"made them private (0600)")
        pending, bad_lines = self.journal.read()
        if bad_lines:
            shown = ", ".join(map(str, bad_lines[:10])) + (" ..." if len(bad_lines) > 10 else "")
            self.reporter.warning(f"{self.journal.path}: skipped {counted(len(bad_lines), 'line')} that "
                                  f"{'is' if len(bad_lines) == 1 else 'are'} not token records (line {shown}); "
                                  f"the other lines are used")
        for device, verdict in survey.kept.items():
            also = (f"; its token is also kept in the journal {self.journal.path}: once the file is repaired or moved "
                    f"away, run again to settle it" if device in pending else
                    "; the file may hold the device's only token: repair it by hand rather than decommission the "
                    "device")
            self.kept[device] = verdict
            self._settle(device, "kept", f"{verdict.describe()}: kept as it is{also}")
        # A config written just before a crash supersedes its journal line; a damaged one does not.
        self.pending = {d: entry for d, entry in pending.items() if d not in stored}
        beyond = sum(1 for device in self.pending if not self._wanted(device))
        if beyond:
            self.reporter.warning(
                f"pending from an earlier run: {counted(beyond, 'token')} of devices beyond --numberOfDevices "
                f"{self.count}: run again with that run's number of devices to settle them"
            )
        return stored

    def _wanted(self, device):
        number = self.batch.device_number(device)
        return number is not None and number <= self.count

    def _sync_then_forget_settled_tokens(self):
        if not self.lock.held:
            return
        self._sync_written()  # the configs that took over tokens are on disk before the journal lets go
        self.journal.rewrite(self.pending)

    def _sync_written(self):
        # After each request rather than each file: the fsyncs run many at a time (bench/run.py measures it).
        sync_files(self.written)
        self.written.clear()

    def _entry(self, device, row=None):
        # A token left pending by an interrupted run is sent again as it is: the platform may hold it already.
        token, nonce = self.pending.get(device) or (new_device_token(), self.nonce)
        return bulk_add_entry(self.batch.type_id, device, token, nonce, self.batch.batch_id, row)

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
            if result.get("success") is True and isinstance(result.get("authToken"), str) and result["authToken"]
        }
        # "Already exists" may mean our own earlier attempt got through (a lost answer, a retried request,
        # a killed run): the nonce in the device's metadata tells whether the platform holds our token.
        unconfirmed = [entry["deviceId"] for entry in chunk if entry["deviceId"] not in confirmed]
        documents = self.platform.get_devices(self.batch.type_id, unconfirmed) if unconfirmed else {}
        for entry in chunk:
            device = entry["deviceId"]
            if device in confirmed:
                self._store(device, confirmed[device], "registered")
                continue
            # Absent from `documents` means the platform answered 404 for this very device.
            ours = registered_with_nonce(documents[device], _nonce_of(entry)) if device in documents else False
            if ours:
                self._store(device, entry["authToken"], "recovered")
            elif ours is None:
                self._settle(device, "pending", "the platform holds this device, but its metadata does not say "
                             "which run registered it: its token is kept in the journal")
            else:
                self._refuse(device, _failure_reason(by_id.get(device), device in documents))
        self._sync_written()

    def _store(self, device, token, outcome):
        path = self.custody.write(device, token, **self.options)
        if path is None:  # a file appeared in its place meanwhile: kept, and the token stays in the journal
            self.kept[device] = verdict = self.custody.kept[device]
            self.pending[device] = (token, self.pending.get(device, (None, self.nonce))[1])
            self._settle(device, "kept", f"{verdict.describe()}: kept as it is; the device's token is kept in the "
                                         f"journal {self.journal.path}")
            return
        self.written.append(path)
        self.pending.pop(device, None)
        self._settle(device, outcome)

    def _refuse(self, device, reason):
        self.journal.forget([device])
        self.pending.pop(device, None)
        self._settle(device, "failed", reason)

    def _settle(self, device, outcome, reason=None, row=None):
        row = row or self.rows_in_flight.pop(device, None)
        label = ""
        if row is not None and row.in_manifest:
            label = f" (row {row.row}" + (f", serialNumber {row.serial_number})" if row.serial_number else ")")
        self.outcomes.settle(device, outcome, reason, label)

    def stopped_because(self, reason, refused=False):
        """The one-line error for a run that had to stop, saying what became of the tokens.

        `refused`: the platform refused a request for good (400, 401, 403): running again as it is cannot help.
        """
        message = f"registration stopped: {reason}"
        if self.pending and refused:
            message += (
                f"; the {counted(len(self.pending), 'unconfirmed device')} keep their tokens in {self.journal.path}: "
                f"once the cause is fixed, run the same command again to settle them"
            )
        elif self.pending:
            message += (
                f"; {counted(len(self.pending), 'device')} may or may not be registered: their tokens are kept in "
                f"{self.journal.path}: run the same command again to finish"
            )
        return message

    def report_records(self):
        """One record per device of the batch (outcomes.Outcomes.records); a manifest batch's also carry the row
        and serial number, and what differs field by field."""
        rows = self.registry.manifest_rows(self.batch) if self.manifest is not None else None
        return self.outcomes.records(self.count, lambda device: device in self.pending, rows, self._differences_of)

    def _differences_of(self, device):
        return {"differences": self.differences[device]} if device in self.differences else {}

    def summary_lines(self):
        counts = self.outcomes.counts()
        registered = counts["registered"] + counts["recovered"]
        unconfirmed = f", {counts['pending']} unconfirmed (tokens kept in {self.journal.path})" if counts["pending"] else ""
        if counts["kept"]:
            unconfirmed += f", {counts['kept']} not registered (their config files need attention)"
        manifest = ""
        if self.manifest is not None:
            manifest = f", {counts['differs']} differ from the manifest, {counts['updated']} updated"
        lines = [summary_head(self.batch, self.count, f"{registered} registered, {counts['already-present']} already "
                                                     f"present{manifest}, {counts['failed']} failed{unconfirmed}.")]
        if counts["differs"]:
            one = counts["differs"] == 1
            lines.append(f"{counted(counts['differs'], 'device')} on the platform "
                         f"{'differs from its manifest row' if one else 'differ from their manifest rows'} "
                         f"(see the report): run again with --update to bring {'it' if one else 'them'} in line")
        if counts["not-in-manifest"]:
            lines.append(f"{counted(counts['not-in-manifest'], 'device')} no longer in the manifest: still registered "
                         f"and still members of the batch (configs kept); the registrator never removes a device: "
                         f"deviceDecommissioner.py removes them with the batch")
        lines += self.outcomes.failure_lines()
        lines += attention_lines(self.kept)
        report = f"   Report: {self.report_path}" if self.report_written else ""
        lines.append(f"Configs: {self.directory}/{report}")
        return lines


def _nonce_of(entry):
    return entry["metadata"]["deviceFactory"]["nonce"]


def _failure_reason(result, held):
    """Why the platform did not register a device, from what it said and holds. A bulk add result says only
    `success` (swagger DeviceBatchResponse has no reason), so the rest is what a lookup of the device found."""
    if result is None:
        return "the platform's answer did not mention this device, and it does not hold it"
    if held:
        return ("the platform already holds this device, registered by someone else (its metadata does not carry "
                "this run's nonce): its token is not ours")
    return "the platform did not register it and gave no reason (success false), and it does not hold it"
