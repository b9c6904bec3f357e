"""Which names a batch's scripts and Helm releases carry, so that two batches never share one.

The original sample names a batch's scripts bin/<action>-<class>-<type>-<batch>.bat and its releases
<type>-<deviceId>: type `sensor` batch `eu-1` and type `sensor-eu` batch `1` read the same, and so do class
Device and Gateway of one type and batch (the release names leave the class out). Fleet releases,
<type>-<batch>-fleet-<n>, meet the device releases of batch `<batch>-fleet` too. Batches whose names could meet
form a group: those whose `<type>-<batch>`, less any trailing `-fleet`, read the same.

A batch keeps the original names while it is alone in its group. Otherwise its names end with its own suffix,
`-` and 8 hex digits of the SHA-256 of its class, type and batch: bin/deploy-device-sensor-eu-1-48b62357.bat,
sensor-eu-1-0001-48b62357. The choice is recorded in the batch folder the first time its scripts are written,
and later runs follow the record: a batch deployed under the original names keeps them when a batch of its
group is registered afterwards (that one is given its suffix, since the first is there already).
"""

import hashlib
from dataclasses import dataclass

from .batch import CLASS_IDS, Batch
from .errors import FactoryError
from .ids import MAX_ID_LENGTH

SUFFIX_LENGTH = 8
FLEET_WORD = "-fleet"
ORIGINAL, SUFFIXED = "original", "suffixed"
_RECORD_HEADER = "# The names deviceDeployer.py gives this batch's scripts and releases: keep this file.\n"


@dataclass(frozen=True)
class BatchNames:
    """The suffix of a batch's names ('' for the original names), and whether the record must be written."""

    suffix: str
    to_record: bool = False


def name_suffix(batch):
    """The batch's own suffix: '-' and 8 hex digits of the SHA-256 of class, type and batch."""
    digest = hashlib.sha256(f"{batch.class_id}\0{batch.type_id}\0{batch.batch_id}".encode()).hexdigest()
    return "-" + digest[:SUFFIX_LENGTH]


def group_key(batch):
    """What the names of the batches of one group share: `<type>-<batch>` less any trailing `-fleet`."""
    key = f"{batch.type_id}-{batch.batch_id}"
    while key.endswith(FLEET_WORD):
        key = key[: -len(FLEET_WORD)]
    return key


def possible_group(batch):
    """Every batch, registered or not, whose names could meet `batch`'s (itself left out)."""
    base = group_key(batch)
    keys = [base]
    while len(keys[-1]) + len(FLEET_WORD) <= 2 * MAX_ID_LENGTH + 1:
        keys.append(keys[-1] + FLEET_WORD)
    found = []
    for key in keys:
        for cut in (index for index, character in enumerate(key) if character == "-"):
            for class_id in CLASS_IDS:
                try:
                    other = Batch(class_id, key[:cut], key[cut + 1:])
                except ValueError:  # not ids the platform takes: no such batch can be registered
                    continue
                if other != batch:
                    found.append(other)
    return found


def choose_names(registry, batch):
    """The names `batch` gets (see the module's docstring); FactoryError when they cannot be told apart."""
    group = [other for other in possible_group(batch) if registry.batch_folder(other).is_dir()]
    recorded = {other: read_record(registry, other) for other in group}
    original_owners = [other for other, record in recorded.items() if record == ORIGINAL]
    recorded_mine = read_record(registry, batch)
    mine = recorded_mine or (SUFFIXED if group else ORIGINAL)
    if recorded_mine is None and group and not original_owners:
        _refuse_unclaimed_scripts(registry, batch, group)
    if mine == ORIGINAL and original_owners:
        raise FactoryError(
            f"batches {_name(batch)} and {_name(original_owners[0])} both keep their original names, which are "
            f"the same; delete {registry.release_names_path(batch)} of the one not deployed, and run again"
        )
    return BatchNames("" if mine == ORIGINAL else name_suffix(batch), to_record=recorded_mine is None)


def record_text(names):
    """What the record of a batch's names holds."""
    return _RECORD_HEADER + (f"{SUFFIXED} {names.suffix}\n" if names.suffix else f"{ORIGINAL}\n")


def read_record(registry, batch):
    """ORIGINAL, SUFFIXED or None (no record) for `batch`."""
    try:
        text = registry.release_names_path(batch).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise FactoryError(f"cannot read {registry.release_names_path(batch)}: {error}") from None
    words = [line.split()[0] for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if words in ([ORIGINAL], [SUFFIXED]):
        return words[0]
    raise FactoryError(f"{registry.release_names_path(batch)}: expected '{ORIGINAL}' or '{SUFFIXED}'")


def _refuse_unclaimed_scripts(registry, batch, group):
    # Scripts with the original names, written before names were recorded: their releases may be deployed, and
    # nothing tells which batch of the group they belong to.
    for member in [batch, *group]:
        script = member.script_path("deploy")
        if (registry.project_dir / script).exists():
            raise FactoryError(
                f"{script} uses the release names that batches {_name(batch)} and {_name(group[0])} would share, "
                f"and no batch records it as its own: recall its releases with "
                f"{member.script_path('recall')} if they are deployed, delete both scripts, and run again"
            )


def _name(batch):
    return f"{batch.batch_id} (classId {batch.class_id}, typeId {batch.type_id})"
