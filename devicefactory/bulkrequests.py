"""Bulk requests: what one device's entry of a bulk add or remove holds, and how a batch is cut under the size
limit."""


from .platform import encode_json

# Each device carries the nonce of the run that made its token, so that a later run can tell a device
# registered with that token (ours: keep the token) from one someone else registered (theirs: drop it).
METADATA_KEY = "deviceFactory"


def bulk_add_entry(type_id, device_id, token, nonce, batch_id, row=None):
    """One device of a `POST /bulk/devices/add` body; `row` (a manifest.ManifestRow) adds its deviceInfo,
    location and metadata (the factory's own key beside the row's)."""
    entry = {"typeId": type_id, "deviceId": device_id, "authToken": token}
    if row is not None and row.device_info:
        entry["deviceInfo"] = row.device_info
    if row is not None and row.location is not None:
        entry["location"] = row.location
    entry["metadata"] = {**(row.metadata or {} if row is not None else {}),
                         METADATA_KEY: {"batchId": batch_id, "nonce": nonce}}
    return entry


def bulk_remove_entry(type_id, device_id):
    """One device of a `POST /bulk/devices/remove` body."""
    return {"typeId": type_id, "deviceId": device_id}


def registered_with_nonce(device_document, nonce):
    """Whether the platform's device was registered by the run that made `nonce`: True (ours: keep the token),
    False (another nonce, or no factory metadata at all: every device the factory registers carries one), or
    None (factory metadata without a readable nonce: cannot tell, so the token is kept)."""
    metadata = (device_document or {}).get("metadata")
    if not isinstance(metadata, dict) or METADATA_KEY not in metadata:
        return False
    ours = metadata[METADATA_KEY]
    if not isinstance(ours, dict) or not isinstance(ours.get("nonce"), str):
        return None
    return ours["nonce"] == nonce


def body_size(entries):
    """Bytes of the JSON body that sends `entries`."""
    return len(encode_json(list(entries)).encode("utf-8"))


def split_under_limit(entries, limit):
    """Cut `entries` into consecutive runs whose request bodies each fit in `limit` bytes, as few as possible.

    A generator that reads `entries` as it goes: a batch's entries (and tokens) need not all be in memory."""
    current, current_size = [], 2  # "[" and "]"
    for entry in entries:
        size = len(encode_json(entry).encode("utf-8"))
        separator = 2 if current else 0  # json.dumps puts ", " between items
        if 2 + size > limit:
            raise ValueError(f"one device entry alone ({size} bytes) exceeds the {limit}-byte request limit")
        if current and current_size + separator + size > limit:
            yield current
            current, current_size, separator = [], 2, 0
        current.append(entry)
        current_size += separator + size
    if current:
        yield current
