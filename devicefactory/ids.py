"""Watson IoT Platform identifier rules, and how a batch names its devices."""

import re

MAX_ID_LENGTH = 36
_ID_CHARACTERS = re.compile(r"[A-Za-z0-9_.-]+\Z")


def id_problem(value):
    """Why `value` is not a usable platform id (typeId, deviceId, ...), or None when it is."""
    if not value:
        return "must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"is {len(value)} characters long; the platform allows at most {MAX_ID_LENGTH}"
    if not _ID_CHARACTERS.match(value):
        return "may hold only letters, digits, '-', '_' and '.'"
    if value in (".", ".."):
        # The platform would take it, but it names a directory, not a folder of its own.
        return "cannot be '.' or '..'"
    return None


def device_id(batch_id, number):
    """The id of device `number` (1-based) of a batch, as the seed names them: 190523-0001."""
    return f"{batch_id}-{number:04d}"


def device_number(batch_id, device_id_):
    """The number of a device of `batch_id` from its id, or None if the id is not one of the batch's."""
    prefix = batch_id + "-"
    if not device_id_.startswith(prefix):
        return None
    digits = device_id_[len(prefix):]
    if not digits.isascii() or not digits.isdigit() or (len(digits) > 4 and digits[0] == "0"):
        return None
    number = int(digits)
    return number if number >= 1 and device_id(batch_id, number) == device_id_ else None
