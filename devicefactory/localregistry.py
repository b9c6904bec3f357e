"""The local device registry: one private YAML config per registered device.

Layout (relative to the working directory, as in the original sample):
    localDeviceRegistry/<classId lower>/<typeId>/<batchId>/<deviceId>.yaml
Each file is a values file for the charts and a config file for wiotp-sdk's device `parseConfigFile()`.
"""

import json
import os
import re
from pathlib import Path

import yaml

REGISTRY_ROOT = Path("localDeviceRegistry")
CONFIG_SUFFIX = ".yaml"
TEMPORARY_SUFFIX = ".tmp"  # write_file_atomically's files before their rename
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700

_CONFIG_TEMPLATE = """\
# Watson IoT Platform device configuration for {type_id}:{device_id}, written by deviceRegistrator.py.
# The platform shows a device token only once: this file holds the only copy. Keep it private.
identity:
  orgId: {org_id_json}
  typeId: {type_id_json}
  deviceId: {device_id_json}
auth:
  token: {token_json}
"""
_DOMAIN_TEMPLATE = """\
options:
  domain: {domain_json}
"""
# Matches exactly what render_device_config writes, so that reading our own files needs no YAML parser.
_JSON_STRING = r'("(?:[^"\\\n]|\\.)*")'
_OWN_CONFIG = re.compile(
    r"(?:#[^\n]*\n)*"
    rf"identity:\n  orgId: {_JSON_STRING}\n  typeId: {_JSON_STRING}\n  deviceId: {_JSON_STRING}\n"
    rf"auth:\n  token: {_JSON_STRING}\n"
    rf"(?:options:\n  domain: {_JSON_STRING}\n)?\Z"
)
try:  # libyaml's loader is several times faster; PyYAML's wheels ship it, source builds may not.
    _YamlLoader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _YamlLoader = yaml.SafeLoader


class DeviceConfigError(ValueError):
    """A device config file that is not YAML, or lacks the identity or token a device needs."""


def batch_dir(class_id, type_id, batch_id, root=REGISTRY_ROOT):
    """The folder that holds one batch's device configs."""
    return Path(root) / class_id.lower() / type_id / batch_id


def device_config_path(batch_directory, device_id):
    """Where the config of `device_id` lives inside its batch folder."""
    return Path(batch_directory) / (device_id + CONFIG_SUFFIX)


def _yaml_string(value):
    # A JSON string is also a YAML double-quoted scalar: every character of a token comes back exactly.
    return json.dumps(value, ensure_ascii=True)


def render_device_config(org_id, type_id, device_id, token, domain=None):
    """The text of a device config file."""
    text = _CONFIG_TEMPLATE.format(
        type_id=type_id,
        device_id=device_id,
        org_id_json=_yaml_string(org_id),
        type_id_json=_yaml_string(type_id),
        device_id_json=_yaml_string(device_id),
        token_json=_yaml_string(token),
    )
    if domain:
        text += _DOMAIN_TEMPLATE.format(domain_json=_yaml_string(domain))
    return text


def write_device_config(batch_directory, org_id, type_id, device_id, token, domain=None):
    """Write one device's config into its batch folder: private, atomically. Returns its path."""
    path = device_config_path(batch_directory, device_id)
    write_file_atomically(path, render_device_config(org_id, type_id, device_id, token, domain))
    return path


def parse_device_config(text, source="device config"):
    """The config as a dict, checked to hold identity.{orgId,typeId,deviceId} and auth.token."""
    own = _OWN_CONFIG.match(text)
    if own:
        org_id, type_id, device_id, token, domain = (json.loads(g) if g else None for g in own.groups())
        config = {"identity": {"orgId": org_id, "typeId": type_id, "deviceId": device_id}, "auth": {"token": token}}
        if domain:
            config["options"] = {"domain": domain}
    else:
        config = _load_yaml(text, source)
    _check_device_config(config, source)
    return config


def _load_yaml(text, source):
    try:
        config = yaml.load(text, Loader=_YamlLoader)
    except yaml.YAMLError as error:
        problem = str(error).splitlines()[0] if str(error) else "unreadable"
        raise DeviceConfigError(f"{source}: not valid YAML ({problem})") from None
    return config


def _check_device_config(config, source):
    if not isinstance(config, dict):
        raise DeviceConfigError(f"{source}: not a device config (expected a mapping with identity and auth)")
    identity, auth = config.get("identity"), config.get("auth")
    if not isinstance(identity, dict):
        raise DeviceConfigError(f"{source}: has no identity section")
    for key in ("orgId", "typeId", "deviceId"):
        if not isinstance(identity.get(key), str) or not identity[key]:
            raise DeviceConfigError(f"{source}: identity.{key} is missing")
    if not isinstance(auth, dict) or not isinstance(auth.get("token"), str) or not auth["token"]:
        raise DeviceConfigError(f"{source}: auth.token is missing")


def read_device_config(path):
    """Read and check one device config file."""
    try:
        with open(path, encoding="utf-8") as config_file:
            text = config_file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise DeviceConfigError(f"{path}: cannot be read ({getattr(error, 'strerror', None) or error})") from None
    return parse_device_config(text, source=str(path))


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
