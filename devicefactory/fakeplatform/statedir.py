"""The fake platform's state folder (`--state-dir`): what it keeps there between runs, and how.

- `ca.pem`      the CA certificate clients trust (REQUESTS_CA_BUNDLE); not secret, mode 0644.
- `ca-key.pem`  the CA's private key, so that a restarted fake serves a certificate ca.pem still verifies; 0600.
- `state.json`  the organisation, API key and token, and the registry with every device token; 0600.

Only a fake started with `persist=True` (the command) writes the last two; any fake whose folder holds them
loads them. One fake at a time may use a folder (an flock on it). The folder is made 0700 and must be the user's own and writable by no one else (as OpenSSH's
StrictModes checks); every file is written whole to a temporary name, synced and renamed over the old one.
"""

import fcntl
import json
import os
import stat
from pathlib import Path

import trustme

from devicefactory.files import make_private_dirs, write_file_atomically

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
STATE_FILE = "state.json"
FORMAT = 1  # the version of state.json's layout
PUBLIC_FILE_MODE = 0o644
PRIVATE_FILE_MODE = 0o600


class StateError(Exception):
    """The state folder cannot be used: unsafe, unreadable, or holding a state that does not fit."""


def prepare(directory):
    """Create `directory` (0700) if missing, and check that it is safe to keep tokens in."""
    try:
        make_private_dirs(directory)
    except OSError as error:
        raise StateError(f"{directory}: cannot be created: {error.strerror or error}") from None
    _check(directory)


def lock(directory):
    """Hold the folder for one fake: an flock on the folder itself, released when the returned descriptor is
    closed (or the process ends, even by kill -9). A second fake on a folder in use would overwrite the first
    one's saved registry with its own: it is refused instead."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise StateError(f"{directory}: another fake platform is using this state folder; stop it first, "
                         "or give this one another --state-dir") from None
    return descriptor


def _check(directory):
    try:
        info = os.stat(directory)
    except OSError as error:
        raise StateError(f"{directory}: cannot be read: {error.strerror or error}") from None
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StateError(f"{directory}: must be owned by you and writable by no one else")


def load(directory):
    """The saved state ({"org_id", "api_key", "api_token", "registry"}), or None if the folder holds none."""
    path = Path(directory) / STATE_FILE
    if not path.exists():
        return None
    _check(directory)  # trust no state from a folder others could have written
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise StateError(f"{path}: cannot be read: {getattr(error, 'strerror', None) or error}") from None
    try:
        state = json.loads(text)
        if state.get("format") != FORMAT:
            raise ValueError(f"format {state.get('format')!r} is not {FORMAT}")
        if not all(isinstance(state.get(key), str) for key in ("org_id", "api_key", "api_token")):
            raise ValueError("org_id, api_key or api_token is missing")
        if not isinstance(state.get("registry"), dict):
            raise ValueError("the registry is missing")
    except (ValueError, AttributeError) as error:
        raise StateError(f"{path}: is not a saved fake platform state ({error})") from None
    return state


def save(directory, org_id, api_key, api_token, registry_snapshot):
    state = {"format": FORMAT, "org_id": org_id, "api_key": api_key, "api_token": api_token,
             "registry": registry_snapshot}
    write_file_atomically(Path(directory) / STATE_FILE, json.dumps(state, separators=(",", ":")),
                          mode=PRIVATE_FILE_MODE, sync=True)


def load_ca(directory):
    """The saved CA, or None when the folder has no CA key."""
    directory = Path(directory)
    try:
        key = (directory / CA_KEY_FILE).read_bytes()
        certificate = (directory / CA_FILE).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StateError(f"{directory}: the saved CA cannot be read: {error.strerror or error}") from None
    try:
        return trustme.CA.from_pem(certificate, key)
    except ValueError as error:
        raise StateError(f"{directory}: the saved CA is damaged ({error})") from None


def save_ca(directory, ca, with_key):
    """Write ca.pem, and with `with_key` the CA's private key too."""
    directory = Path(directory)
    if with_key:
        write_file_atomically(directory / CA_KEY_FILE, ca.private_key_pem.bytes().decode("ascii"),
                              mode=PRIVATE_FILE_MODE, sync=True)
    write_file_atomically(directory / CA_FILE, ca.cert_pem.bytes().decode("ascii"), mode=PUBLIC_FILE_MODE,
                          sync=with_key)
    return directory / CA_FILE
