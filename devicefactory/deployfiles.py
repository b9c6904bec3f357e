"""Where deviceDeployer.py writes, made safe: bin/ (the scripts others may run) and a batch's fleet/ folder (tokens).

Each folder is checked as OpenSSH's StrictModes checks: a real folder (no symbolic link), owned by the user, not
writable by group or others (the private one not readable either). Files are then written through the folder's
descriptor: a new temporary file opened with O_EXCL | O_NOFOLLOW, then renamed over the old one, so a reader sees
the old file or the whole new one, and no link planted in the folder is ever followed.
"""

import os
import secrets
import shlex
import stat

from .errors import FactoryError

TEMPORARY_SUFFIX = ".tmp"


class CheckedFolder:
    """An open, checked folder: `with CheckedFolder(path, mode) as folder: folder.write(name, text, mode)`."""

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
        problem = _folder_problem(path, os.fstat(self.descriptor), forbidden, private)
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
        return os.listdir(self.descriptor)

    def remove(self, name):
        try:
            os.unlink(name, dir_fd=self.descriptor)
        except FileNotFoundError:
            pass


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


def _folder_problem(path, status, forbidden, private):
    if status.st_uid != os.geteuid():
        return f"it is owned by uid {status.st_uid}, not by you (uid {os.geteuid()})"
    mode = stat.S_IMODE(status.st_mode)
    if mode & forbidden:
        can, bits = ("read or write", "rwx") if private else ("write", "w")
        return f"group or others can {can} it (mode {mode:04o}); fix: chmod go-{bits} {shlex.quote(str(path))}"
    return None
