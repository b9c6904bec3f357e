"""Take a batch off the platform: the body of deviceDecommissioner.py.

One device's path: its id (Batch.device_id) -> a bulk remove request (bulkrequests, platform) -> the platform's
answer for it -> its config deleted (custody) -> the report. A config is deleted only once the platform
has confirmed the removal, or answered for that very device that it does not hold it (a 404 to a GET of it):
a config whose device is still on the platform keeps the only copy of its token, so it is never deleted. And
only by custody.py, which first reads it: a file that is not that very device's config of this platform
(damaged, another device's) is kept and named, and the run needs attention (exit 3).

Before anything is sent: configs of another organisation or domain than the credentials' stop the run (exit 2),
and so does a device type the platform does not hold (exit 1: a mistyped --typeId, the wrong organisation).
Cost: the bulk requests, a GET for each device with a config (or a pending token) whose removal the platform
did not confirm, and the pages of the type's listing for the other devices it did not remove, whatever -n says.

The pending-token journal: a token pending for a device the platform no longer holds can register nothing
but a device we meant to remove, so its line goes too; a token pending for a device still held stays (the
registrator may still prove it ours).
"""

import os
from dataclasses import dataclass, field

from .batchrun import (
    BatchLock,
    PlatformOptions,
    check_batch_folder,
    open_platform,
    stopping_cleanly,
    write_report,
)
from .bulkrequests import bulk_remove_entry, split_under_limit
from .custody import REPAIR_ADVICE, Custody, Survey, attention_lines
from .errors import EXIT_DEVICES_FAILED, EXIT_OK, EXIT_USAGE, FactoryError
from .files import sync_directory
from .localregistry import LocalRegistry
from .outcomes import Outcomes, summary_head
from .pendingtokens import PendingTokens
from .platform import LARGEST_PAGE_SIZE, MAX_REQUEST_BYTES, RequestTooLarge, describe_endpoint
from .reporting import counted, listed
from .results import RunResult

REPORT_KIND = "decommission"
OUTCOME_LINES = {
    "removed": "Device removed: {device}",
    "already-gone": "Device already gone: {device} (the platform does not hold it)",
    "failed": "Device removal failed: {device}: {reason}",
}


class NoConfirmation(FactoryError):
    """Nobody at a terminal to confirm, and no --yes: refused like bad input, before any request."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class DecommissionOptions:
    """--timeout/--retries, --yes, and how to ask (question -> True, False, or None with no terminal)."""

    platform: PlatformOptions = field(default_factory=PlatformOptions)
    assume_yes: bool = False
    confirm: object = None


def decommission(batch, count, options, reporter, registry=None):
    """deviceDecommissioner.py's work: remove devices 1..`count` of `batch` from the platform and delete the
    config of each device that is gone, once the user has confirmed."""
    platform = open_platform(options.platform, reporter)
    registry = registry or LocalRegistry()
    folder_exists = check_batch_folder(registry, batch)
    custody = Custody.of_run(registry, batch, platform)
    survey = custody.survey_batch(count) if folder_exists else Survey()
    custody.refuse_another_platform(survey, "nothing was sent, nothing deleted")
    # A wrong --classId is refused here, and a type the platform does not hold stops the run: every device would
    # be "already gone", and a mistyped --typeId would look like success.
    if not platform.check_device_type(batch.type_id, batch.class_id):
        raise FactoryError(f"device type {batch.type_id} does not exist in organisation {platform.org_id} "
                           f"({describe_endpoint(platform.config)}): check --typeId and the credentials; nothing was "
                           f"removed, nothing deleted")
    if not options.assume_yes:
        question = (f"Remove {batch.describe(count)} from the platform at {describe_endpoint(platform.config)} "
                    f"(organisation {platform.org_id}), and delete their local configs?")
        answer = options.confirm(question) if options.confirm else None
        if answer is None:
            raise NoConfirmation(f"no terminal to confirm on: pass --yes to remove {batch.describe(count)} "
                                 "without asking")
        if not answer:
            raise FactoryError("cancelled: nothing was sent to the platform")
    return decommission_batch(batch, count, platform, reporter, registry, survey=survey)


def decommission_batch(batch, count, platform, reporter, registry, max_request_bytes=MAX_REQUEST_BYTES, survey=None):
    """Remove devices 1..`count` of `batch`; the report is written whatever stops the run. `survey`: the batch's
    configs as custody judged them (read again when not given)."""
    run = _Run(batch, count, platform, reporter, registry)
    try:
        with stopping_cleanly(run.stopped_because):
            run.take_folder(survey)
            entries = (bulk_remove_entry(batch.type_id, device) for device in batch.device_ids(count))
            for chunk in split_under_limit(entries, max_request_bytes):
                run.remove_chunk([entry["deviceId"] for entry in chunk])
            run.settle_unlisted()
    finally:
        reporter.close()
        run.finish()
    needs_attention = run.outcomes.counts()["failed"] or run.custody.kept
    return RunResult(run.summary_lines(), EXIT_DEVICES_FAILED if needs_attention else EXIT_OK)


class _Run:
    """One decommission of one batch: what had a config, what the platform said, which configs went."""

    def __init__(self, batch, count, platform, reporter, registry):
        self.batch, self.count, self.platform, self.reporter, self.registry = batch, count, platform, reporter, registry
        self.directory = registry.batch_folder(batch)
        self.custody = Custody.of_run(registry, batch, platform)
        self.lock = BatchLock(self.directory)
        self.journal = PendingTokens(self.directory)
        self.folder_exists = False
        self.had_config = set()
        self.had_pending = set()  # devices whose token was pending in the journal of an interrupted registration
        self.deleted = 0  # configs deleted by this run
        self.fleet_files_removed = 0
        self.outcomes = Outcomes(batch, OUTCOME_LINES, reporter, unanswered="unconfirmed")
        self.in_flight = []  # devices of the request whose answer is awaited
        self.unlisted = []  # not removed, and with no config nor token here: settle_unlisted reads the listing
        self.report_path = registry.report_path(batch, REPORT_KIND)
        self.report_written = False

    def take_folder(self, survey=None):
        """Lock the batch folder when there is one (a registrator must not write into it meanwhile)."""
        self.folder_exists = check_batch_folder(self.registry, self.batch)
        if self.folder_exists:
            self.lock.acquire()
            if survey is None:
                survey = self.custody.survey_batch(self.count)
                self.custody.refuse_another_platform(survey, "nothing was sent, nothing deleted")
            # Every file named as a config: a kept one (damaged, another device's) is no lost token either.
            self.had_config = set(survey.valid) | set(survey.kept)
            self.had_pending = set(self.journal.load())
            for device, verdict in survey.kept.items():
                self.custody.kept[device] = verdict  # named in the summary whatever the platform says
        self.reporter.start(self.count)

    def remove_chunk(self, device_ids):
        self.in_flight = device_ids
        try:
            results = self.platform.remove_devices(bulk_remove_entry(self.batch.type_id, d) for d in device_ids)
        except RequestTooLarge:
            if len(device_ids) == 1:
                self._settle(device_ids[0], "failed", "the platform refused the request as too large (HTTP 413)")
                return
            middle = len(device_ids) // 2
            self.remove_chunk(device_ids[:middle])
            self.remove_chunk(device_ids[middle:])
            return
        by_id = {r.get("deviceId"): r for r in results if isinstance(r, dict) and r.get("typeId") == self.batch.type_id}
        removed = [device for device in device_ids if by_id.get(device, {}).get("success") is True]
        for device in removed:
            self._gone(device, "removed")
        self._sync()
        # Not removed by this request: gone already (an earlier run, a lost answer to a retried request) or
        # still held. Each is asked for on its own: only the platform's 404 for it lets its config go (a
        # lagging listing can still show a device removed a moment ago, or leave out one that is there).
        # The devices with nothing here (no config, no pending token) wait for the listing: a device number far
        # beyond the batch costs no request of its own (settle_unlisted).
        removed_set = set(removed)
        unconfirmed = [device for device in device_ids if device not in removed_set]
        known = [device for device in unconfirmed if device in self.had_config or device in self.had_pending]
        self.unlisted += [device for device in unconfirmed
                          if device not in self.had_config and device not in self.had_pending]
        self.in_flight = known
        held = self.platform.get_devices(self.batch.type_id, known, one_by_one_up_to=len(known))
        for device in known:
            if device in held:
                self._settle(device, "failed", _failure_reason(by_id.get(device)))
            else:
                self._gone(device, "already-gone")
        self._sync()
        self.in_flight = []

    def settle_unlisted(self):
        """The devices the platform did not remove and of which nothing is here: held or gone, as the type's
        listing shows them (or a GET each, when that is fewer requests). Nothing here depends on it but the report."""
        if not self.unlisted:
            return
        held = self.platform.get_devices(self.batch.type_id, self.unlisted, page_size=LARGEST_PAGE_SIZE,
                                         one_by_one_up_to=0, confirm_absent=())
        for device in self.unlisted:
            if device in held:
                self._settle(device, "failed", "the platform did not remove it, and still holds it")
            else:
                self._settle(device, "already-gone")
        self.unlisted = []

    def _gone(self, device, outcome):
        if device in self.had_config and self.custody.delete(device):  # custody reads it first; a kept file stays
            self.deleted += 1
        self._settle(device, outcome)

    def _settle(self, device, outcome, reason=None):
        self.outcomes.settle(device, outcome, reason)

    def _sync(self):
        if self.lock.held:
            sync_directory(self.directory)  # a deleted config stays deleted after a power cut

    def finish(self):
        """Drop the journal lines of devices that are gone, write the report, release the folder."""
        if not self.lock.held:
            return
        try:
            self._forget_tokens_of_gone_devices()
        except OSError as error:
            self.reporter.warning(f"could not update {self.journal.path}: {error.strerror or error}")
        try:
            self._remove_fleet_files_when_no_config_is_left()
        except OSError as error:
            self.reporter.warning(f"could not remove the fleet values files: {error.strerror or error}")
        try:
            if not self.registry.stored_devices(self.batch) and not self.journal.load():
                # A killed registration's torn config copies a token; with no config or pending token left, it
                # is a token of a device that is gone.
                self.registry.remove_stale_temporary_files(self.batch)
        except OSError as error:
            self.reporter.warning(f"could not remove a killed registration's temporary files: {error.strerror or error}")
        self.report_written = write_report(self.report_path, self._records(), self.reporter)
        self.lock.release()

    def _forget_tokens_of_gone_devices(self):
        pending, bad_lines = self.journal.read()
        gone = [device for device in pending if self.outcomes.outcome(device) in ("removed", "already-gone")]
        if gone and len(gone) == len(pending) and not bad_lines:
            self.journal.rewrite({})
        elif gone:
            self.journal.forget(gone)

    def _remove_fleet_files_when_no_config_is_left(self):
        # Fleet values files (deviceDeployer.py --fleet) copy the tokens of many devices: once the batch has no
        # config left, they only hold tokens of devices the platform no longer has.
        if self.registry.stored_devices(self.batch):
            return
        fleet = self.registry.fleet_folder(self.batch)
        try:
            names = os.listdir(fleet)
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:
            if name.endswith(".yaml"):
                os.unlink(fleet / name)
                self.fleet_files_removed += 1

    def _records(self):
        """One record per device of the batch (outcomes.Outcomes.records), with whether it had a config here and
        what a kept config file holds."""
        rows = self.registry.manifest_rows(self.batch) if self.batch.members is not None else None
        return self.outcomes.records(self.count, lambda device: device in self.in_flight or device in self.unlisted,
                                     rows, self._own_fields)

    def _own_fields(self, device):
        fields = {"hadConfig": device in self.had_config}
        if device in self.custody.kept:
            fields["configKept"] = self.custody.kept[device].describe()
        return fields

    def stopped_because(self, reason, refused):
        counts = self.outcomes.counts()
        off = counts["removed"] + counts["already-gone"]
        kept = self.count - off
        message = (f"decommission stopped: {reason}; {off} of {counted(self.count, 'device')} are off the platform "
                   f"(their configs deleted), the configs of the other {kept} are kept")
        if self.in_flight:
            message += f" ({len(self.in_flight)} may or may not be removed)"
        advice = "once the cause is fixed, run" if refused else "run"
        return message + f": {advice} the same command again to finish"

    def summary_lines(self):
        counts = self.outcomes.counts()
        lines = [summary_head(self.batch, self.count, f"{counts['removed']} removed, {counts['already-gone']} already "
                                                      f"gone, {counts['failed']} failed; "
                                                      f"{counted(self.deleted, 'local config')} deleted.")]
        unconfigured = [device for device in self.outcomes.devices("removed") if device not in self.had_config]
        pending = [f"{self.batch.type_id}:{device}" for device in unconfigured if device in self.had_pending]
        lost = [f"{self.batch.type_id}:{device}" for device in unconfigured if device not in self.had_pending]
        if self.fleet_files_removed:
            lines.append(f"  {counted(self.fleet_files_removed, 'fleet values file')} removed: no device of the batch "
                         f"is left")
        if pending:
            lines.append(f"  removed with their tokens pending in the journal of an interrupted registration: "
                         f"{listed(pending)}")
        if lost:
            lines.append(f"  removed without a local config (their tokens were lost): {listed(lost)}")
        lines += self.outcomes.failure_lines()
        if counts["failed"]:
            lines.append("  the configs of the devices still on the platform are kept: run again once the cause is fixed")
        off = set(self.outcomes.devices("removed", "already-gone"))
        damaged_off = [f"{self.batch.type_id}:{device}" for device, verdict in self.custody.kept.items()
                       if device in off and REPAIR_ADVICE in verdict.describe()]
        if damaged_off:
            lines.append(f"  removed from the platform as asked, their damaged configs kept for you to look at "
                         f"(delete them by hand once sure): {listed(damaged_off)}")
        lines += attention_lines(self.custody.kept)
        if not self.folder_exists:
            lines.append(f"No report written: {self.directory} does not exist (no configs of this batch here)")
        elif self.report_written:
            lines.append(f"Report: {self.report_path}")
        return lines


def _failure_reason(result):
    if result is None:
        return "the platform's answer did not mention this device, and it still holds it"
    # A bulk remove result says only `success` (swagger DeviceBulkDeletionResponse has no reason).
    return "the platform did not remove it and gave no reason (success false)"
