"""The local device registry: one private YAML config per registered device, and the batch folder's other files.

Layout (relative to the project folder, as in the original sample; `Batch.registry_folder` names the folder):
    localDeviceRegistry/<classId lower>/<typeId>/<batchId>/<deviceId>.yaml    a device's config (0600)
    localDeviceRegistry/<classId lower>/<typeId>/<batchId>/<kind>-report.jsonl  each script's last report
    localDeviceRegistry/<classId lower>/<typeId>/<batchId>/release-names    the names deviceDeployer.py chose
    localDeviceRegistry/<classId lower>/<typeId>/<batchId>/fleet/<release>.yaml  fleet values files (0600)
Each config is a values file for the charts and a config file for wiotp-sdk's device `parseConfigFile()`.
This module is the one place that knows which files of a batch folder are which.
"""

import json
import os
import re
from pathlib import Path, PurePosixPath

import yaml

from .files import TEMPORARY_SUFFIX, check_private_dirs, make_private_dirs, read_private_text, write_file_atomically

CONFIG_SUFFIX = ".yaml"
REPORT_SUFFIX = "-report.jsonl"
FLEET_FOLDER = "fleet"  # deviceDeployer.py --fleet's values files, one per release (they hold tokens)

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
# Matches exactly what render_device_config writes, so that reading our own files needs no YAML parser.
_JSON_STRING = r'("(?:[^"\\\n]|\\.)*")'
_OWN_CONFIG = re.compile(
    r"(?:#[^\n]*\n)*"
    rf"identity:\n  orgId: {_JSON_STRING}\n  typeId: {_JSON_STRING}\n  deviceId: {_JSON_STRING}\n"
    rf"auth:\n  token: {_JSON_STRING}\n"
    rf"(?:options:\n(?:  domain: {_JSON_STRING}\n)?"
    rf"(?:  mqtt:\n(?:    port: (\d{{1,5}})\n)?(?:    caFile: {_JSON_STRING}\n)?)?)?\Z"
)
try:  # libyaml's loader is several times faster; PyYAML's wheels ship it, source builds may not.
    _YamlLoader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _YamlLoader = yaml.SafeLoader


class DeviceConfigError(ValueError):
    """A device config file that is not YAML, or lacks the identity or token a device needs."""


class LocalRegistry:
    """The local device registry of one project folder (by default the working directory, as the scripts run)."""

    def __init__(self, project_dir="."):
        self.project_dir = Path(project_dir)

    def batch_folder(self, batch):
        """The folder of `batch`'s configs, as this process finds it."""
        return self.project_dir / batch.registry_folder

    def config_path(self, batch, device_id):
        return device_config_path(self.batch_folder(batch), device_id)

    @staticmethod
    def script_config_path(batch, device_id):
        """A config as the generated scripts name it, from the project folder: ./localDeviceRegistry/..."""
        return f"./{PurePosixPath(batch.registry_folder, device_id + CONFIG_SUFFIX)}"

    def report_path(self, batch, kind):
        """Where a script's report on the batch goes: kind 'registration' -> registration-report.jsonl."""
        return self.batch_folder(batch) / f"{kind}{REPORT_SUFFIX}"

    def release_names_path(self, batch):
        """Where deviceDeployer.py records which names the batch's scripts and releases carry (batchnames.py)."""
        return self.batch_folder(batch) / "release-names"

    def fleet_folder(self, batch):
        return self.batch_folder(batch) / FLEET_FOLDER

    @staticmethod
    def script_fleet_values_path(batch, release):
        """A fleet values file as the scripts name it: ./localDeviceRegistry/.../<batchId>/fleet/<release>.yaml."""
        return f"./{PurePosixPath(batch.registry_folder, FLEET_FOLDER, release + CONFIG_SUFFIX)}"

    def stored_devices(self, batch):
        """The devices of `batch` that have a config file, as [(number, device_id)] in device order.

        Files that are no config of this batch's devices (reports, another batch's ids) are passed over.
        Raises FileNotFoundError when the batch has no folder.
        """
        numbered = []
        with os.scandir(self.batch_folder(batch)) as entries:
            for entry in entries:
                if entry.name.endswith(CONFIG_SUFFIX):
                    device_id = entry.name[: -len(CONFIG_SUFFIX)]
                    number = batch.device_number(device_id)
                    if number is not None:
                        numbered.append((number, device_id))
        numbered.sort()
        return numbered

    def check_batch_folder(self, batch):
        """Check, changing nothing, that the batch's folders are safe for tokens. Raises UnsafeFolder (a link,
        another user's folder); returns whether the batch folder exists yet."""
        _, missing = check_private_dirs(self.batch_folder(batch), self.project_dir)
        return not missing

    def prepare_batch_folder(self, batch):
        """Create the batch's missing folders 0700 and tighten open ones; returns the folders it tightened."""
        return make_private_dirs(self.batch_folder(batch), self.project_dir)

    def read_config(self, batch, device_id):
        """The stored config of a device of `batch`, checked to be that device's (identity and a token).
        Raises DeviceConfigError for a missing, torn, unreadable or foreign file."""
        path = self.config_path(batch, device_id)
        config = read_device_config(path)
        identity = config["identity"]
        if identity["typeId"] != batch.type_id or identity["deviceId"] != device_id:
            raise DeviceConfigError(
                f"{path}: holds the config of {identity['typeId']}:{identity['deviceId']}, "
                f"not {batch.type_id}:{device_id}")
        return config

    def checked_devices(self, batch, count):
        """Devices 1..`count` of `batch` with a config here: ([device ids whose config is that device's, in device
        order], {device id: why its config is damaged}). Raises FileNotFoundError when the batch has no folder."""
        valid, damaged = [], {}
        for number, device in self.stored_devices(batch):
            if number > count:
                break
            try:
                self.read_config(batch, device)
            except DeviceConfigError as problem:
                damaged[device] = str(problem)
                continue
            valid.append(device)
        return valid, damaged

    def remove_stale_temporary_files(self, batch):
        """Remove what a killed atomic write left behind. Only under the batch lock: no other writer is at work."""
        folder = self.batch_folder(batch)
        for name in os.listdir(folder):
            if name.startswith(".") and name.endswith(TEMPORARY_SUFFIX):
                os.unlink(folder / name)


def device_config_path(batch_directory, device_id):
    """Where the config of `device_id` lives inside its batch folder."""
    return Path(batch_directory) / (device_id + CONFIG_SUFFIX)


def _yaml_string(value):
    # A JSON string is also a YAML double-quoted scalar: every character of a token comes back exactly.
    return json.dumps(value, ensure_ascii=True)


def render_device_config(org_id, type_id, device_id, token, domain=None, mqtt_port=None, mqtt_ca_file=None):
    """The text of a device config file: identity and auth, and the client options that are not the SDK's
    defaults (`options.domain`, `options.mqtt.port`, `options.mqtt.caFile`, as parseConfigFile() reads them)."""
    text = _CONFIG_TEMPLATE.format(
        type_id=type_id,
        device_id=device_id,
        org_id_json=_yaml_string(org_id),
        type_id_json=_yaml_string(type_id),
        device_id_json=_yaml_string(device_id),
        token_json=_yaml_string(token),
    )
    if domain or mqtt_port or mqtt_ca_file:
        text += "options:\n"
    if domain:
        text += f"  domain: {_yaml_string(domain)}\n"
    if mqtt_port or mqtt_ca_file:
        text += "  mqtt:\n"
    if mqtt_port:
        text += f"    port: {int(mqtt_port)}\n"
    if mqtt_ca_file:
        text += f"    caFile: {_yaml_string(mqtt_ca_file)}\n"
    return text


def write_device_config(batch_directory, org_id, type_id, device_id, token, **options):
    """Write one device's config into its batch folder: private, atomically, never through a link.
    `options` are render_device_config's. Returns its path."""
    path = device_config_path(batch_directory, device_id)
    write_file_atomically(path, render_device_config(org_id, type_id, device_id, token, **options))
    return path


def parse_device_config(text, source="device config"):
    """The config as a dict, checked to hold identity.{orgId,typeId,deviceId} and auth.token."""
    own = _OWN_CONFIG.match(text)
    if own:
        org_id, type_id, device_id, token, domain, port, ca_file = (json.loads(g) if g else None for g in own.groups())
        config = {"identity": {"orgId": org_id, "typeId": type_id, "deviceId": device_id}, "auth": {"token": token}}
        mqtt = {key: value for key, value in (("port", port), ("caFile", ca_file)) if value}
        options = {key: value for key, value in (("domain", domain), ("mqtt", mqtt)) if value}
        if options:
            config["options"] = options
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
    """Read and check one device config file (never through a link)."""
    try:
        text = read_private_text(path)
    except (OSError, UnicodeDecodeError) as error:
        raise DeviceConfigError(f"{path}: cannot be read ({getattr(error, 'strerror', None) or error})") from None
    return parse_device_config(text, source=str(path))
