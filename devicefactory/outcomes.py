"""What the batch commands' runs share: each device's outcome, the batch summary head, and the report records.

A run (registration.py, decommission.py) settles each device once it knows what became of it: the recorder keeps
its outcome and reason, reports its line, counts outcomes for the summary, and builds the report's records, one
per device of the batch, including those the run never reached. The streamed write is batchrun.write_report.
"""

from collections import Counter

from .reporting import counted, failure_lines

NOT_ATTEMPTED = ("not-attempted", "the run stopped before this device")
NO_ANSWER_YET = "no answer from the platform yet: run again to finish"


def summary_head(batch, count, tail):
    """The first summary line of every command on a batch: 'Batch <id> (<N devices> of type <t>, class <c>): tail'."""
    return f"Batch {batch.batch_id} ({counted(count, 'device')} of type {batch.type_id}, class {batch.class_id}): {tail}"


def row_fields(row):
    """A manifest batch's report fields of one device: its row (None once it is no longer in the manifest) and
    serial number."""
    return {"row": row.row if row.in_manifest else None, "serialNumber": row.serial_number}


class Outcomes:
    """Device id -> (outcome, reason) for one run over `batch`; `lines` words each outcome's progress line
    ({device}, {reason}); `unanswered` names the outcome of a device whose request got no answer yet."""

    def __init__(self, batch, lines, reporter, unanswered):
        self.batch, self.lines, self.reporter, self.unanswered = batch, lines, reporter, unanswered
        self._settled = {}

    def settle(self, device, outcome, reason=None, label=""):
        """Record `device`'s outcome (a later one replaces it) and report its line; `label` follows its name."""
        self._settled[device] = (outcome, reason)
        self.reporter.item(self.lines[outcome].format(device=f"{self.batch.type_id}:{device}{label}", reason=reason))

    def outcome(self, device):
        """The device's outcome, or None while it is not settled."""
        settled = self._settled.get(device)
        return settled[0] if settled else None

    def devices(self, *outcomes):
        """The devices settled with one of `outcomes`, in the order they were first settled."""
        return [device for device, (outcome, _) in self._settled.items() if outcome in outcomes]

    def counts(self):
        """How many devices have each outcome (0 for an outcome no device has)."""
        return Counter(outcome for outcome, _ in self._settled.values())

    def failure_lines(self):
        """The summary's lines for failed devices: only when the batch was too large for a line per device."""
        failures = [(device, reason) for device, (outcome, reason) in self._settled.items() if outcome == "failed"]
        return failure_lines(self.batch.type_id, failures) if failures and not self.reporter.per_device else []

    def records(self, count, awaited, rows=None, fields=None):
        """One report record per device 1..`count`: id, type, outcome and reason (never a token). A device not
        settled is `unanswered` when `awaited(device)`, else not attempted. `rows`: a manifest batch's stored rows,
        in batch order (the records go without rows from the first that does not match, or cannot be read);
        `fields(device)`: the command's own fields."""
        rows = _readable(rows) if rows is not None else None
        for device in self.batch.device_ids(count):
            outcome, reason = self._settled.get(device) or (
                (self.unanswered, NO_ANSWER_YET) if awaited(device) else NOT_ATTEMPTED)
            record = {"deviceId": device, "typeId": self.batch.type_id, "outcome": outcome, "reason": reason}
            row = next(rows, None) if rows is not None else None
            if row is not None and row.device_id == device:
                record.update(row_fields(row))
            else:
                rows = None
            if fields is not None:
                record.update(fields(device))
            yield record


def _readable(rows):
    # A manifest that cannot be read (the run stopped before it was stored) costs the report its rows, not its lines.
    try:
        yield from rows
    except (OSError, ValueError):
        return
