"""A batch: the devices of one class and type registered together under one batch id, and what follows from it.

Every script builds one `Batch` from its arguments and passes it on; nothing else spells a device id, a batch's
folder in the local registry or the name of its scripts. The device ids are the original sample's,
`<batchId>-0001`, `<batchId>-0002`, ... (four digits at least, more when a batch needs them), unless the batch
was registered from a manifest (manifest.py): then its members are the manifest's ids, in the manifest's order,
and device number N is the Nth of them.
"""

from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from .ids import id_problem

CLASS_IDS = ("Device", "Gateway")
DEFAULT_CLASS_ID = "Device"
DEFAULT_TYPE_ID = "iotpsutil"
REGISTRY_FOLDER = "localDeviceRegistry"  # relative to the project folder, as in the original sample
# Puts the local registry elsewhere (outside the checkout, where `git clean -xdf` cannot reach the tokens); the
# scripts' --registryDir flag wins over it.
REGISTRY_DIR_VARIABLE = "DEVICEFACTORY_REGISTRY_DIR"
SCRIPT_FOLDER = "bin"
SCRIPT_SUFFIX = ".bat"  # bash scripts, named .bat as in the original sample
# The most devices one batch may hold: one folder of configs, and the platform's bulk API, take 100,000 well
# (a 100,000-device registration sends about 200 requests of 512 KiB).
MAX_DEVICES = 100_000


@dataclass(frozen=True)
class Batch:
    """One batch of devices: class, type and batch id (checked to be ids the platform takes)."""

    class_id: str
    type_id: str
    batch_id: str
    # The ids of a batch registered from a manifest, in its order; None for a numbered batch.
    members: tuple | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.class_id not in CLASS_IDS:
            raise ValueError(f"classId {self.class_id!r} must be one of {', '.join(CLASS_IDS)}")
        for name, value in (("typeId", self.type_id), ("batchId", self.batch_id)):
            problem = id_problem(value)
            if problem:
                raise ValueError(f"{name} {value!r} {problem}")
        if self.members is not None:
            numbers = {device: number for number, device in enumerate(self.members, start=1)}
            if len(numbers) != len(self.members) or not numbers:
                raise ValueError("a batch's manifest must name each device once, and at least one")
            object.__setattr__(self, "_numbers", numbers)  # frozen: the lookup is built once, here

    def with_members(self, device_ids):
        """This batch with the members of its manifest (device ids, in the manifest's order)."""
        return replace(self, members=tuple(device_ids))

    @property
    def size(self):
        """How many devices a manifest batch holds; None for a numbered batch (its size is given with -n)."""
        return None if self.members is None else len(self.members)

    def device_id(self, number):
        """The id of device `number` (1-based): 190523-0001, or the manifest's Nth id."""
        if self.members is not None:
            return self.members[number - 1]
        return f"{self.batch_id}-{number:04d}"

    def device_ids(self, count):
        """The ids of the first `count` devices, in order (a generator: batches can be large)."""
        if self.members is not None:
            return iter(self.members[:count])
        return (self.device_id(number) for number in range(1, count + 1))

    def device_number(self, device_id):
        """The number of a device of this batch from its id, or None if the id is not one of the batch's.

        Exact: batch 19 does not take in 190523-0001, and 19-01 or 19-0001x are no device of batch 19.
        """
        if self.members is not None:
            return self._numbers.get(device_id)
        prefix = self.batch_id + "-"
        if not device_id.startswith(prefix):
            return None
        digits = device_id[len(prefix):]
        if not digits.isascii() or not digits.isdigit():
            return None
        number = int(digits)
        return number if number >= 1 and self.device_id(number) == device_id else None

    @property
    def registry_subfolder(self):
        """Its folder inside the local registry: device/iotpsutil/190523."""
        return PurePosixPath(self.class_id.lower(), self.type_id, self.batch_id)

    @property
    def registry_folder(self):
        """Its folder in the default registry, from the project folder: localDeviceRegistry/device/iotpsutil/190523."""
        return PurePosixPath(REGISTRY_FOLDER, self.registry_subfolder)

    @property
    def script_stem(self):
        """What its scripts' names share: device-iotpsutil-190523."""
        return f"{self.class_id.lower()}-{self.type_id}-{self.batch_id}"

    def script_path(self, action, suffix=""):
        """A script of the batch, relative to the project folder: bin/deploy-device-iotpsutil-190523.bat.

        `suffix` ('-48b62357') tells apart batches whose names would otherwise meet (see batchnames.py)."""
        return f"{SCRIPT_FOLDER}/{action}-{self.script_stem}{suffix}{SCRIPT_SUFFIX}"

    def describe(self, count):
        """For messages: '10 devices of batch 190523 (classId Device, typeId iotpsutil)'."""
        return f"{count} device{'' if count == 1 else 's'} of batch {self.batch_id} (classId {self.class_id}, typeId {self.type_id})"
