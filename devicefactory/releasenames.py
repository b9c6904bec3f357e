"""Helm release names: `<typeId>-<deviceId>` for a device as in the original sample, `<typeId>-<batchId>-fleet-<n>`
for a fleet release, each mapped to a name Helm accepts when needed."""

import hashlib
import re

# Helm names a release with a lowercase DNS-1123 label and refuses names longer than 53 characters.
MAX_RELEASE_NAME_LENGTH = 53
HASH_LENGTH = 8
_VALID_RELEASE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_NOT_IN_LABEL = re.compile(r"[^a-z0-9-]")


def release_name_problem(name):
    """Why Helm would refuse `name` as a release name, or None when it is fine."""
    if len(name) > MAX_RELEASE_NAME_LENGTH:
        return f"is {len(name)} characters long; Helm allows at most {MAX_RELEASE_NAME_LENGTH}"
    if not _VALID_RELEASE_NAME.match(name):
        return "must be lowercase letters, digits and '-', starting and ending with a letter or digit"
    return None


def release_name(type_id, device_id, suffix=""):
    """The release of one device: `<typeId>-<deviceId>` if Helm takes it, else a stable, valid stand-in.

    A stand-in is the name lowercased, with other characters turned into '-', cut down to fit, and ended
    with a hash of the original name, so that two devices never share one by accident. `suffix` ('-48b62357',
    see batchnames.py) ends the device part, for batches whose names would otherwise meet.
    """
    device_id += suffix
    name = f"{type_id}-{device_id}"
    if release_name_problem(name) is None:
        return name
    suffix = "-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:HASH_LENGTH]
    room = MAX_RELEASE_NAME_LENGTH - len(suffix)
    # The end of a device id tells the devices of a batch apart, and the type is the same for all of them:
    # so cut the type first, then the start of the device id.
    device_part = _label(device_id)[-room:]
    type_room = room - len(device_part) - 1
    readable = f"{_label(type_id)[:type_room]}-{device_part}" if type_room > 0 else device_part
    readable = readable.strip("-")  # a label starts and ends with a letter or digit
    return readable + suffix if readable else suffix[1:]


def fleet_release_name(type_id, batch_id, number, suffix=""):
    """The release of fleet `number` (1-based) of a batch: `<typeId>-<batchId>-fleet-<n>`, mapped as a device's."""
    return release_name(type_id, f"{batch_id}-fleet-{number}", suffix)


def _label(value):
    return _NOT_IN_LABEL.sub("-", value.lower())
