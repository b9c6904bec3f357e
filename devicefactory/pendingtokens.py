"""The pending-token journal: every token is on disk before the platform sees it.

The platform shows a device's token once, in the answer to the request that registers it. The factory makes
each token itself and appends it here, flushed to disk, before sending that request. Whatever happens next
(a kill -9, a lost answer, a full disk), the next run finds the token here, asks the platform whether the
device was registered with it, and then writes the device's config or drops the token.

One JSON object per line, in a private file inside the batch folder:
    {"id": "190523-0001", "token": "...", "nonce": "..."}   a token about to be sent
    {"id": "190523-0001", "forget": true}                  the platform refused the device: drop its token
A torn last line (a crash in the middle of an append) is ignored: its request had not been sent yet. Any
other line that is not one of these records (a damaged disk block, a hand edit) is skipped and counted, so
that the run can say so; the good lines are still used.
"""

import json
import os
import stat
from pathlib import Path

from .errors import FactoryError
from .files import PRIVATE_FILE_MODE, read_private_text, sync_directory, write_file_atomically

JOURNAL_NAME = ".pending-tokens.jsonl"


class PendingTokens:
    """The journal of one batch folder."""

    def __init__(self, batch_directory):
        self.path = Path(batch_directory) / JOURNAL_NAME

    def load(self):
        """{device_id: (token, nonce)} for every token still pending."""
        return self.read()[0]

    def read(self):
        """({device_id: (token, nonce)} for every token still pending, [numbers of the lines that were not
        records]). The journal is never read through a link."""
        pending, bad_lines = {}, []
        try:
            status = os.lstat(self.path)
        except FileNotFoundError:
            return pending, bad_lines
        if not stat.S_ISREG(status.st_mode):
            what = "a symbolic link" if stat.S_ISLNK(status.st_mode) else "not a file"
            raise FactoryError(f"refusing to read the pending-token journal {self.path}: it is {what}; move it away "
                               f"and look at what it holds (it may hold tokens)")
        try:
            text = read_private_text(self.path)
        except FileNotFoundError:
            return pending, bad_lines
        except UnicodeDecodeError:
            text = open(self.path, encoding="utf-8", errors="replace").read()  # the bad bytes fail as lines below
        lines = text.split("\n")
        for number, line in enumerate(lines, start=1):
            if not line:
                continue
            record = _record(line)
            if record is None:
                if number < len(lines):  # the last line, unended, is a torn append: nothing was sent for it
                    bad_lines.append(number)
                continue
            device_id, token, nonce = record
            if token is None:
                pending.pop(device_id, None)
            else:
                pending[device_id] = (token, nonce)
        return pending, bad_lines

    def record(self, entries):
        """Append (device_id, token, nonce) entries and wait until they are on disk."""
        self._append((json.dumps({"id": d, "token": t, "nonce": n}) for d, t, n in entries), sync=True)

    def forget(self, device_ids):
        """Drop the tokens of devices the platform refused (no sync: a lost line only means a re-check)."""
        self._append((json.dumps({"id": device_id, "forget": True}) for device_id in device_ids), sync=False)

    def rewrite(self, pending):
        """Replace the journal by what is still pending, or remove it when nothing is.

        The caller has synced the configs that took over the other tokens: they must be on disk first."""
        if not pending:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                return
            sync_directory(self.path.parent)
            return
        lines = "".join(json.dumps({"id": d, "token": t, "nonce": n}) + "\n" for d, (t, n) in pending.items())
        write_file_atomically(self.path, lines, sync=True)

    def _append(self, lines, sync):
        text = "".join(line + "\n" for line in lines)
        if not text:
            return
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC,
                             PRIVATE_FILE_MODE)
        try:
            size = os.fstat(descriptor).st_size
            if size and os.pread(descriptor, 1, size - 1) != b"\n":
                text = "\n" + text  # end a torn line first, or it would swallow this record
            data = text.encode("utf-8")
            while data:
                written = os.write(descriptor, data)
                data = data[written:]
            if sync:
                os.fsync(descriptor)
                if not size:
                    sync_directory(self.path.parent)  # a new journal's name must survive a power cut too
        finally:
            os.close(descriptor)



def _record(line):
    """(device_id, token or None for a forget record, nonce) from one journal line, or None if it is not one."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not record["id"]:
        return None
    if record.get("forget") is True:
        return record["id"], None, None
    token, nonce = record.get("token"), record.get("nonce")
    if isinstance(token, str) and token and isinstance(nonce, str):
        return record["id"], token, nonce
    return None
