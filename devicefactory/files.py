"""Generic file safety: private folders checked like OpenSSH's StrictModes, atomic writes that never follow a
symbolic link, and syncing exactly the files a run wrote.

The local registry (token-bearing configs, the journal) and the script writer (public scripts) both write
through here. A folder is safe to hold a token when it is a real folder (not a link), owned by this user and
writable by nobody else: then no other user can plant, swap or delete a file in it.
"""

import errno
import os
import secrets
import shlex
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .errors import FactoryError

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
TEMPORARY_SUFFIX = ".tmp"  # write_file_atomically's files before their rename
SYNC_THREADS = 16  # fsyncs in flight at once: the file system commits them together (about 4x faster here)
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeFolder(OSError):
    """A folder that another user could write to, or a link where a folder should be."""


def folder_problem(path, stat_result):
    """Why a folder (its lstat) may not hold private files, or None: a link, another owner, writable by others."""
    if stat.S_ISLNK(stat_result.st_mode):
        return f"{path} is a symbolic link; a folder that holds tokens must be a real folder"
    if not stat.S_ISDIR(stat_result.st_mode):
        return f"{path} is not a folder"
    if stat_result.st_uid != os.geteuid():
        return f"{path} belongs to user id {stat_result.st_uid}, not to you"
    return None


def is_writable_by_others(stat_result):
    """Whether group or others may write into the folder."""
    return bool(stat_result.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def is_open_to_others(stat_result):
    """Whether group or others may do anything with it: read a token, list the folder, or write."""
    return bool(stat_result.st_mode & 0o077)


def check_private_dirs(directory, base):
    """Check, without changing anything, the folders from `base` (exclusive) down to `directory`.

    Raises UnsafeFolder for a link or a folder of another user; returns (the folders that are open to others,
    to read or to write, and need tightening, the folders that do not exist yet).
    """
    directory, base = Path(directory), Path(base)
    parts = directory.relative_to(base).parts
    _check_base(base)
    open_to_others, missing, current = [], [], base
    for part in parts:
        current = current / part
        try:
            status = os.lstat(current)
        except FileNotFoundError:
            missing.append(current)
            continue
        if missing:  # cannot happen unless the tree changes under us; treat like a missing folder
            raise UnsafeFolder(f"{current} appeared while its parent is missing")
        problem = folder_problem(current, status)
        if problem:
            raise UnsafeFolder(problem)
        if is_open_to_others(status):
            open_to_others.append(current)
    return open_to_others, missing


def _check_base(base):
    # The folder the registry lives in may be shared (a sticky /tmp), but not writable by others without the
    # sticky bit: they could then rename our folder away and put a link in its place.
    status = os.stat(base)
    if is_writable_by_others(status) and not status.st_mode & stat.S_ISVTX:
        raise UnsafeFolder(f"{base} is writable by other users (and not sticky): they could replace "
                           f"the folders below it; use a folder only you can write")


def make_private_dirs(directory, base=None):
    """Create the missing folders from `base` down to `directory` owner-only (0700), and make the existing ones
    0700 too. Returns the folders others could write into, which deserve a warning; one that others could only
    read is tightened silently (git checks folders out 0755: the user did nothing wrong). Raises UnsafeFolder.

    Without `base`, only the folders that do not exist yet are made (below the nearest one that does)."""
    if base is None:
        base = Path(directory)
        if base.is_dir():
            return []
        while not base.exists() and base != base.parent:
            base = base.parent
    open_to_others, missing = check_private_dirs(directory, base)
    for folder in missing:
        try:
            os.mkdir(folder, PRIVATE_DIR_MODE)
        except FileExistsError:
            pass
        status = os.lstat(folder)
        problem = folder_problem(folder, status)  # someone may have raced us to the name
        if problem:
            raise UnsafeFolder(problem)
        os.chmod(folder, PRIVATE_DIR_MODE, follow_symlinks=False)  # umask may have taken bits off
    writable_by_others = [folder for folder in open_to_others if is_writable_by_others(os.lstat(folder))]
    for folder in open_to_others:
        os.chmod(folder, PRIVATE_DIR_MODE, follow_symlinks=False)
    return writable_by_others


def make_file_private(path):
    """Take every group and other permission off a file (never through a link); True when there were some."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        mode = stat.S_IMODE(os.fstat(descriptor).st_mode)
        if not mode & 0o077:
            return False
        os.fchmod(descriptor, mode & 0o700)
        return True
    finally:
        os.close(descriptor)


def open_new_private(path, mode=PRIVATE_FILE_MODE):
    """Open a new file for writing: it must not exist (not even as a link), and starts with `mode`."""
    return os.open(path, _NEW_FILE, mode)


def write_file_atomically(path, text, mode=PRIVATE_FILE_MODE, sync=False):
    """Write `text` (a string, or an iterable of strings streamed one by one) to `path` atomically (readers see
    the old file or the whole new one), private by default.

    The temporary file is new (O_EXCL) and never a link (O_NOFOLLOW); the rename replaces a link at `path`
    itself rather than writing through it.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")
    descriptor = open_new_private(temporary, mode)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            if isinstance(text, str):
                stream.write(text)
            else:
                stream.writelines(text)
            os.fchmod(stream.fileno(), mode)  # the umask may have taken bits off, or added none
            if sync:
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def read_private_text(path):
    """The text of a regular file, never read through a link (nor waited on: a fifo planted there is refused)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    with os.fdopen(descriptor, encoding="utf-8") as stream:
        return stream.read()


def sync_files(paths):
    """fsync each of `paths` (many at once) and then their folders: only what was written, not the machine."""
    paths = list(paths)
    if not paths:
        return
    with ThreadPoolExecutor(max_workers=min(SYNC_THREADS, len(paths))) as pool:
        list(pool.map(_fsync_path, paths))
    for folder in {Path(path).parent for path in paths}:
        sync_directory(folder)


def _fsync_path(path):
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sync_directory(directory):
    """Make the names in `directory` (a new or renamed file) survive a power cut."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class CheckedFolder:
    """An open, checked folder that files are written through by its descriptor, so that no link planted in
    it is followed: `with CheckedFolder(path, mode) as folder: folder.write(name, text, mode)`. Used for bin/
    (scripts others may run: not writable by others) and a batch's fleet/ folder (tokens: private)."""

    def __init__(self, path, mode, private=False):
        self.path = path
        forbidden = 0o077 if private else 0o022
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            pass
        except OSError as error:
            raise FactoryError(f"cannot make {path}: {error.strerror or error}") from None
        self.descriptor = _open_folder(path)
        problem = _checked_folder_problem(path, os.fstat(self.descriptor), forbidden, private)
        if problem:
            os.close(self.descriptor)
            raise FactoryError(f"refusing to write into {path}: {problem}")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        os.close(self.descriptor)

    def write(self, name, text, mode):
        """Replace `name` in the folder with `text`, atomically, as a file of exactly `mode`."""
        temporary = f".{name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            descriptor = os.open(temporary, flags, mode, dir_fd=self.descriptor)
            try:
                with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                    os.fchmod(stream.fileno(), mode)  # the umask may have taken bits off
                    stream.write(text)
                os.replace(temporary, name, src_dir_fd=self.descriptor, dst_dir_fd=self.descriptor)
            except BaseException:
                self.remove(temporary)
                raise
        except OSError as error:
            raise FactoryError(f"cannot write {self.path / name}: {error.strerror or error}") from None

    def names(self):
        try:
            return os.listdir(self.descriptor)
        except OSError as error:  # its filename is the descriptor's number: name the folder instead
            raise FactoryError(f"cannot list {self.path}: {error.strerror or error}") from None

    def remove(self, name):
        try:
            os.unlink(name, dir_fd=self.descriptor)
        except FileNotFoundError:
            pass
        except OSError as error:
            raise FactoryError(f"cannot remove {self.path / name}: {error.strerror or error}") from None


def _open_folder(path):
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise FactoryError(f"refusing to write into {path}: it is a symbolic link, not a folder")
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FactoryError:
        raise
    except NotADirectoryError:
        raise FactoryError(f"cannot write into {path}: it is not a folder") from None
    except OSError as error:
        raise FactoryError(f"cannot open {path}: {error.strerror or error}") from None


def _checked_folder_problem(path, status, forbidden, private):
    if status.st_uid != os.geteuid():
        return f"it is owned by uid {status.st_uid}, not by you (uid {os.geteuid()})"
    mode = stat.S_IMODE(status.st_mode)
    if mode & forbidden:
        can, bits = ("read or write", "rwx") if private else ("write", "w")
        return f"group or others can {can} it (mode {mode:04o}); fix: chmod go-{bits} {shlex.quote(str(path))}"
    return None
