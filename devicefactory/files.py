"""Generic file safety: private folders, atomic writes, syncing a folder entry.

The local registry (token-bearing configs) and the script writer (public scripts) both write through here.
"""

import os
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
TEMPORARY_SUFFIX = ".tmp"  # write_file_atomically's files before their rename


def make_private_dirs(directory):
    """Create `directory` and its missing parents, owner-only (0700)."""
    directory = Path(directory)
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR_MODE)
        except FileExistsError:
            pass
        os.chmod(folder, PRIVATE_DIR_MODE)  # umask may have taken bits off


def write_file_atomically(path, text, mode=PRIVATE_FILE_MODE, sync=False):
    """Write `text` to `path` atomically (readers see the old file or the whole new one), private by default."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}{TEMPORARY_SUFFIX}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
            if sync:
                stream.flush()
                os.fsync(stream.fileno())
            os.fchmod(stream.fileno(), mode)  # the umask may have taken bits off, or added none
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def sync_directory(directory):
    """Make the names in `directory` (a new or renamed file) survive a power cut."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
