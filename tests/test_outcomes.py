"""Fast tests of the run skeleton's shared parts (outcomes.py): the outcome recorder, the summary head, the records."""

import io

from devicefactory.batch import Batch
from devicefactory.manifest import ManifestRow
from devicefactory.outcomes import Outcomes, row_fields, summary_head
from devicefactory.reporting import Reporter

LINES = {"done": "Device done: {device}", "failed": "Device failed: {device}: {reason}"}
BATCH = Batch("Device", "iotpsutil", "42")


def recorder(total=3, batch=BATCH):
    out = io.StringIO()
    reporter = Reporter("test", out=out, err=io.StringIO())
    reporter.start(total)
    return Outcomes(batch, LINES, reporter, unanswered="pending"), out


def test_the_summary_head_names_the_batch_and_counts_one_device_as_one():
    assert summary_head(BATCH, 1, "1 done.") == "Batch 42 (1 device of type iotpsutil, class Device): 1 done."
    assert summary_head(BATCH, 3, "x") == "Batch 42 (3 devices of type iotpsutil, class Device): x"


def test_settling_reports_a_line_and_a_later_outcome_replaces_the_first():
    outcomes, out = recorder()
    outcomes.settle("42-0001", "done")
    outcomes.settle("42-0002", "failed", "no reason given", label=" (row 2)")
    outcomes.settle("42-0003", "done")
    outcomes.settle("42-0001", "failed", "changed its mind")
    assert out.getvalue().splitlines() == [
        "Device done: iotpsutil:42-0001", "Device failed: iotpsutil:42-0002 (row 2): no reason given",
        "Device done: iotpsutil:42-0003", "Device failed: iotpsutil:42-0001: changed its mind"]
    assert outcomes.counts() == {"failed": 2, "done": 1}
    assert outcomes.counts()["absent"] == 0
    assert outcomes.outcome("42-0001") == "failed" and outcomes.outcome("42-0009") is None
    assert outcomes.devices("failed") == ["42-0001", "42-0002"]  # in the order first settled
    assert outcomes.devices("done", "failed") == ["42-0001", "42-0002", "42-0003"]


def test_failures_are_summarised_only_when_the_batch_had_no_line_per_device():
    small, _ = recorder(total=3)
    small.settle("42-0001", "failed", "why")
    assert small.failure_lines() == []
    large, _ = recorder(total=1000)
    large.settle("42-0001", "failed", "why")
    large.settle("42-0002", "done")
    assert large.failure_lines() == ["  failed: iotpsutil:42-0001: why"]


def test_records_cover_every_device_settled_awaited_or_never_reached():
    outcomes, _ = recorder()
    outcomes.settle("42-0001", "done")
    records = list(outcomes.records(3, awaited=lambda device: device == "42-0002",
                                    fields=lambda device: {"hadConfig": device != "42-0003"}))
    assert records == [
        {"deviceId": "42-0001", "typeId": "iotpsutil", "outcome": "done", "reason": None, "hadConfig": True},
        {"deviceId": "42-0002", "typeId": "iotpsutil", "outcome": "pending",
         "reason": "no answer from the platform yet: run again to finish", "hadConfig": True},
        {"deviceId": "42-0003", "typeId": "iotpsutil", "outcome": "not-attempted",
         "reason": "the run stopped before this device", "hadConfig": False},
    ]


def test_a_manifest_batch_records_carry_rows_until_one_does_not_match():
    batch = BATCH.with_members(["a", "b", "c"])
    outcomes, _ = recorder(batch=batch)
    rows = [ManifestRow(2, "a", {"serialNumber": "S1"}), ManifestRow(3, "b", in_manifest=False),
            ManifestRow(4, "x")]
    records = list(outcomes.records(3, awaited=lambda device: False, rows=iter(rows)))
    assert [(r["deviceId"], r.get("row", "-"), r.get("serialNumber", "-")) for r in records] == [
        ("a", 2, "S1"), ("b", None, None), ("c", "-", "-")]
    assert row_fields(rows[0]) == {"row": 2, "serialNumber": "S1"}


def test_a_manifest_that_cannot_be_read_costs_the_records_their_rows_only():
    def unreadable():
        raise FileNotFoundError("manifest.jsonl")
        yield  # a generator, as LocalRegistry.manifest_rows is

    outcomes, _ = recorder(batch=BATCH.with_members(["a", "b"]))
    records = list(outcomes.records(2, awaited=lambda device: False, rows=unreadable()))
    assert [set(r) for r in records] == [{"deviceId", "typeId", "outcome", "reason"}] * 2
