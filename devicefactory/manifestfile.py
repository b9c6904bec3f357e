"""Reading a manifest the user gives deviceRegistrator.py: its format, every row checked (manifest.py), its ids
checked against the other batches of the local registry, and what the batch keeps of it.

All of this happens before the platform hears from us: a manifest with any problem stops the run with exit 2,
nothing sent and nothing written.
"""

from dataclasses import dataclass, replace

from .errors import EXIT_USAGE, FactoryError
from .manifest import DEVICE_ID_COLUMN, ManifestError, check_manifest, manifest_format, rows
from .pendingtokens import PendingTokens
from .reporting import counted


class ManifestRefused(FactoryError):
    """A manifest that cannot be registered, with each problem on its own line."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class AcceptedManifest:
    """A checked manifest: the file, how to read it, the batch's members, and the rows kept from the batch's
    earlier manifest (devices still registered here whose rows left the manifest)."""

    path: str
    kind: str
    device_id_from: str
    device_ids: tuple
    kept: tuple = ()
    update: bool = False

    @property
    def members(self):
        return self.device_ids + tuple(row.device_id for row in self.kept)

    def stored_rows(self):
        """The rows the batch folder keeps (a stream): the file's, then the kept ones. The file is read again:
        should it have changed since it was checked, the run stops before anything is sent."""
        members = iter(self.members)
        try:
            with open(self.path, "rb") as stream:
                for row in rows(stream, self.kind, self.device_id_from):
                    if row.device_id != next(members, None):
                        raise ManifestError([f"row {row.row}: not the device it was when checked"])
                    yield row
        except ManifestError as error:
            raise FactoryError(f"manifest {self.path} changed while it was being registered ({error}): "
                               f"run again") from None
        yield from self.kept


def accept_manifest(path, batch, registry, device_id_from=DEVICE_ID_COLUMN, update=False):
    """Check the manifest at `path` for `batch` (a Batch without members); raises ManifestRefused."""
    kind = manifest_format(path)
    if kind is None:
        raise ManifestRefused(f"manifest {path}: its name must end in .csv or .jsonl (the format it holds)")
    try:
        has_folder = registry.batch_folder(batch).is_dir()
        numbered = has_folder and not registry.has_manifest(batch) and registry.stored_devices(batch)
        taken = registry.other_batches_devices(batch)
    except (OSError, ValueError) as error:
        raise FactoryError(f"cannot read the local registry: {error}") from None
    if numbered:
        raise ManifestRefused(f"batch {batch.batch_id} was registered without a manifest (its devices are "
                              f"{batch.batch_id}-0001, ...): register the manifest as a new batch")
    try:
        with open(path, "rb") as stream:
            device_ids = tuple(check_manifest(stream, kind, device_id_from, taken.get))
    except ManifestError as error:
        problems = "\n".join(f"  {path}: {line}" for line in str(error).splitlines())
        raise ManifestRefused(f"manifest {path} refused ({counted(error.total, 'problem')}); nothing was sent or "
                              f"written:\n{problems}") from None
    except OSError as error:
        raise ManifestRefused(f"manifest {path}: cannot be read ({error.strerror or error})") from None
    try:
        kept = _kept_rows(registry, batch, set(device_ids)) if has_folder and registry.has_manifest(batch) else ()
    except (OSError, ValueError) as error:
        raise FactoryError(f"cannot read batch {batch.batch_id}'s folder: {error}") from None
    return AcceptedManifest(str(path), kind, device_id_from, device_ids, kept, update)


def _kept_rows(registry, batch, new_ids):
    """Rows of the batch's stored manifest that the new one no longer has but whose devices have a config here, or
    a token pending in the journal of an interrupted run: the registrator never removes a device, and settles
    every pending token, so they stay members."""
    pending = PendingTokens(registry.batch_folder(batch)).load()
    kept = []
    for row in registry.manifest_rows(batch):
        if row.device_id not in new_ids and (row.device_id in pending
                                             or registry.config_path(batch, row.device_id).exists()):
            kept.append(replace(row, in_manifest=False))
    return tuple(kept)
