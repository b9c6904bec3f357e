"""Watson IoT Platform identifier rules (typeId, deviceId, batchId as part of a deviceId)."""

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

