"""The local device registry: one private YAML config per registered device, and the batch folder's other files.

Layout (the registry is localDeviceRegistry/ in the project folder, as in the original sample, unless
--registryDir or DEVICEFACTORY_REGISTRY_DIR put it elsewhere; `Batch.registry_subfolder` names a batch's folder):
    <registry>/<classId lower>/<typeId>/<batchId>/<deviceId>.yaml      a device's config (0600)
    <registry>/<classId lower>/<typeId>/<batchId>/<kind>-report.jsonl  each script's last report
    <registry>/<classId lower>/<typeId>/<batchId>/release-names        the names deviceDeployer.py chose
    <registry>/<classId lower>/<typeId>/<batchId>/fleet/<release>.yaml  fleet values files (0600)
    <registry>/<classId lower>/<typeId>/<batchId>/manifest.jsonl       the accepted manifest of a batch registered
                                                                      from one: its members, in order (no tokens)
Each config is a values file for the charts and a config file for wiotp-sdk's device `parseConfigFile()`.
This module is the one place that knows which files of a batch folder are which; custody.py is the one place
that overwrites or deletes a config.
"""

import fcntl
import json
import os
import re
from pathlib import Path, PurePosixPath

import yaml

from .batch import CLASS_IDS, REGISTRY_DIR_VARIABLE, REGISTRY_FOLDER
from .errors import EXIT_USAGE, FactoryError
from .files import (
    TEMPORARY_SUFFIX,
    UnsafeFolder,
    check_private_dirs,
    make_private_dirs,
    read_private_text,
    write_file_atomically,
)
from .manifest import ManifestRow

CONFIG_SUFFIX = ".yaml"
REPAIR_ADVICE = "damaged: repair it"  # the one wording for a config that exists but does not read as a device's
REPORT_SUFFIX = "-report.jsonl"
FLEET_FOLDER = "fleet"  # deviceDeployer.py --fleet's values files, one per release (they hold tokens)
MANIFEST_NAME = "manifest.jsonl"  # a manifest batch's members: one manifest.ManifestRow record a line

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


class CaseClash(FactoryError):
    """A typeId or batchId that differs only in letter case from one with a folder here: one folder on macOS and
    Windows, two on Linux; refused everywhere, so that a batch folder never holds two batches' configs."""

    exit_code = EXIT_USAGE


class BadRegistryDir(FactoryError):
    """A --registryDir or DEVICEFACTORY_REGISTRY_DIR the generated scripts could not pass to helm."""

    exit_code = EXIT_USAGE


def helm_path_problem(path):
    """Why `path` cannot be passed to helm by the generated scripts (--values and --set-file split at ',', and
    a line break ends a script line), or None."""
    if not path or any(character in path for character in ",\\\n\r"):
        return "must be a path with no ',', '\\' or line break (helm --values and --set-file would split it)"
    return None


def registry_dir_from(flag_value, environ=None):
    """The local registry's folder: --registryDir, else DEVICEFACTORY_REGISTRY_DIR, else None (the default,
    localDeviceRegistry/ in the project folder). Raises BadRegistryDir for one the scripts could not use."""
    environ = os.environ if environ is None else environ
    value, source = (flag_value, "--registryDir") if flag_value is not None else (
        environ.get(REGISTRY_DIR_VARIABLE), REGISTRY_DIR_VARIABLE)
    if value is None:
        return None
    problem = helm_path_problem(value)
    if problem:
        raise BadRegistryDir(f"{source} {value!r} {problem}")
    return Path(value)


class LocalRegistry:
    """The local device registry of one project folder (by default the working directory, as the scripts run):
    localDeviceRegistry/ in it, or `root` when given (--registryDir, DEVICEFACTORY_REGISTRY_DIR)."""

    def __init__(self, project_dir=".", root=None):
        self.project_dir = Path(project_dir)
        self.custom_root = root is not None
        # A custom registry is named by its absolute path: the generated scripts run from the project folder.
        self.root = Path(os.path.abspath(root)) if root is not None else self.project_dir / REGISTRY_FOLDER

    @property
    def base(self):
        """The folder the registry lives in: the folders below it are checked to be private (files.py)."""
        return self.root.parent

    def batch_folder(self, batch):
        """The folder of `batch`'s configs, as this process finds it."""
        return self.root / batch.registry_subfolder

    def config_path(self, batch, device_id):
        return device_config_path(self.batch_folder(batch), device_id)

    def script_config_path(self, batch, device_id):
        """A config as the generated scripts name it, from the project folder: ./localDeviceRegistry/... (or the
        absolute path of a registry put elsewhere)."""
        return self._script_path(PurePosixPath(batch.registry_subfolder, device_id + CONFIG_SUFFIX))

    def _script_path(self, inside):
        if self.custom_root:
            return str(self.root / inside)
        return f"./{PurePosixPath(REGISTRY_FOLDER, inside)}"

    def script_config_prefix(self, batch):
        """What script_config_path puts before a device's file name (./localDeviceRegistry/device/iotpsutil/190523/):
        the deployer names the folder once, not once per device (a batch may hold 100,000)."""
        return self._script_path(PurePosixPath(batch.registry_subfolder)) + "/"

    def report_path(self, batch, kind):
        """Where a script's report on the batch goes: kind 'registration' -> registration-report.jsonl."""
        return self.batch_folder(batch) / f"{kind}{REPORT_SUFFIX}"

    def release_names_path(self, batch):
        """Where deviceDeployer.py records which names the batch's scripts and releases carry (batchnames.py)."""
        return self.batch_folder(batch) / "release-names"

    def fleet_folder(self, batch):
        return self.batch_folder(batch) / FLEET_FOLDER

    def script_fleet_values_path(self, batch, release):
        """A fleet values file as the scripts name it: ./localDeviceRegistry/.../<batchId>/fleet/<release>.yaml."""
        return self._script_path(PurePosixPath(batch.registry_subfolder, FLEET_FOLDER, release + CONFIG_SUFFIX))

    def manifest_path(self, batch):
        """Where a batch registered from a manifest keeps it (as accepted: rows, ids, attributes; no tokens)."""
        return self.batch_folder(batch) / MANIFEST_NAME

    def has_manifest(self, batch):
        return os.path.lexists(self.manifest_path(batch))

    def manifest_rows(self, batch):
        """The stored manifest's ManifestRows, in order (a stream). Raises FileNotFoundError when there is none,
        ValueError for a damaged line."""
        return _manifest_rows_at(self.manifest_path(batch))

    def with_members(self, batch):
        """`batch` with the members of its stored manifest, or `batch` as it is when it has none."""
        if not self.has_manifest(batch):
            return batch
        return batch.with_members(row.device_id for row in self.manifest_rows(batch))

    def write_manifest(self, batch, rows):
        """Keep the accepted manifest (ManifestRows, streamed) in the batch folder, atomically and durably."""
        write_file_atomically(self.manifest_path(batch), (json.dumps(row.record()) + "\n" for row in rows), sync=True)

    def registered_size(self, batch, count_configs=False):
        """How many devices the batch holds here: a manifest's rows, or the highest device number with a
        config (`count_configs`: the number of configs); None when there is no folder or no config."""
        if batch.members is not None:
            return batch.size
        try:
            stored = self.stored_devices(batch)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stored:
            return None
        return len(stored) if count_configs else stored[-1][0]

    def other_batches_devices(self, batch):
        """{device_id: 'batch B (class/type)'} for every device the other batches of `batch`'s type (either
        class) hold here, by a config or as a member of their manifest: a device id belongs to one batch."""
        found = {}
        for class_id in CLASS_IDS:
            type_folder = self.root / class_id.lower() / batch.type_id
            try:
                folders = [entry for entry in os.scandir(type_folder) if entry.is_dir(follow_symlinks=False)]
            except (FileNotFoundError, NotADirectoryError):
                continue
            for folder in folders:
                if folder.name == batch.batch_id and class_id == batch.class_id:
                    continue
                label = f"batch {folder.name} ({class_id.lower()}/{batch.type_id})"
                with os.scandir(folder.path) as entries:
                    for entry in entries:
                        if entry.name.endswith(CONFIG_SUFFIX):
                            found.setdefault(entry.name[: -len(CONFIG_SUFFIX)], label)
                manifest = Path(folder.path, MANIFEST_NAME)
                if os.path.lexists(manifest):
                    for row in _manifest_rows_at(manifest):
                        found.setdefault(row.device_id, label)
        return found

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
        """Check, changing nothing, that the batch's folders are safe for tokens and that no typeId or batchId
        here differs from the batch's only in letter case. Raises UnsafeFolder (a link, another user's folder) or
        CaseClash; returns whether the batch folder exists yet."""
        _, missing = check_private_dirs(self.batch_folder(batch), self.base)
        self.check_case_clash(batch)
        return not missing

    def checked_batch_folder(self, batch):
        """check_batch_folder, its refusals as one-line FactoryErrors (CaseClash: exit 2)."""
        try:
            return self.check_batch_folder(batch)
        except UnsafeFolder as error:
            raise FactoryError(f"refusing to keep tokens there: {error}") from None
        except OSError as error:
            where = error.filename if isinstance(error.filename, str) else self.batch_folder(batch)
            raise FactoryError(f"cannot use {where}: {error.strerror or error}") from None

    def check_case_clash(self, batch):
        """Refuse (CaseClash) a typeId or batchId that differs only in case from a folder already here."""
        class_folder = self.root / batch.class_id.lower()
        for folder, name, what in ((class_folder, batch.type_id, "typeId"),
                                   (class_folder / batch.type_id, batch.batch_id, "batchId")):
            try:
                names = os.listdir(folder)
            except (FileNotFoundError, NotADirectoryError):
                return
            clash = sorted(other for other in names if other != name and other.casefold() == name.casefold())
            if clash:
                raise CaseClash(f"{what} {name!r} differs only in letter case from {clash[0]!r}, which has a folder "
                                f"in {folder}: one folder on macOS and Windows, so refused everywhere; give "
                                f"{what} {clash[0]!r} if you mean that one")

    def prepare_batch_folder(self, batch):
        """Create the batch's missing folders 0700 and tighten open ones; returns those others could write into."""
        return make_private_dirs(self.batch_folder(batch), self.base)

    def read_config(self, batch, device_id):
        """The stored config of a device of `batch`, checked to be that device's (identity and a token).
        Raises DeviceConfigError for a missing, torn, unreadable or foreign file."""
        return _checked_config(batch, device_id, self.config_path(batch, device_id))

    def read_configs(self, batch, device_ids):
        """[(device_id, config)] for `device_ids` of `batch`, each read and checked as read_config does; the
        folder is named once, not once per device (a batch may hold 100,000)."""
        folder = str(self.batch_folder(batch))
        return [(device_id, _checked_config(batch, device_id, f"{folder}/{device_id}{CONFIG_SUFFIX}"))
                for device_id in device_ids]

    def checked_devices(self, batch, count):
        """Devices 1..`count` of `batch` with a config here: ([device ids whose config is that device's, in device
        order], {device id: why its config is damaged}), for a command that only reads them (deviceRunner.py);
        one that writes over or deletes configs judges them through custody.py. Raises FileNotFoundError when the
        batch has no folder."""
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

    def reported_devices(self, batch, kind, outcomes):
        """The device ids that `kind`'s last report on the batch gives one of `outcomes`; an unreadable report, or a
        line that is not a record, gives none (the report is a hint, never a proof)."""
        try:
            text = read_private_text(self.report_path(batch, kind))
        except (OSError, UnicodeDecodeError):
            return set()
        found = set()
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict) or not isinstance(record.get("deviceId"), str):
                continue
            if record.get("outcome") in outcomes:
                found.add(record["deviceId"])
        return found

    def remove_stale_temporary_files(self, batch):
        """Remove what a killed atomic write left behind. Only under the batch lock: no other writer is at work."""
        folder = self.batch_folder(batch)
        for name in os.listdir(folder):
            if name.startswith(".") and name.endswith(TEMPORARY_SUFFIX):
                os.unlink(folder / name)


class BatchLock:
    """One run that changes or reads a batch folder at a time (a registration, a decommission, a deployer run): an
    flock on the folder itself, so taking it writes nothing."""

    def __init__(self, directory):
        self.directory = directory
        self.descriptor = None

    @property
    def held(self):
        return self.descriptor is not None

    BUSY = "another deviceRegistrator.py, deviceDecommissioner.py or deviceDeployer.py is working on this batch"

    def acquire(self):
        descriptor = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise FactoryError(f"{self.BUSY} ({self.directory})") from None
        self.descriptor = descriptor

    def release(self):
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None


def _checked_config(batch, device_id, path):
    """The config at `path`, checked to be the config of `device_id` of `batch` (see LocalRegistry.read_config)."""
    try:
        config = read_device_config(path)
    except DeviceConfigError as problem:
        reason = str(problem).removeprefix(f"{path}: ")
        raise DeviceConfigError(f"{path}: {REPAIR_ADVICE} ({reason})") from None
    identity = config["identity"]
    if identity["typeId"] != batch.type_id or identity["deviceId"] != device_id:
        raise DeviceConfigError(
            f"{path}: holds the config of {identity['typeId']}:{identity['deviceId']}, "
            f"not {batch.type_id}:{device_id}")
    return config


def _manifest_rows_at(path):
    """The ManifestRows of a stored manifest, streamed, never read through a link."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(descriptor, encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            try:
                yield ManifestRow.from_record(json.loads(line))
            except (ValueError, KeyError, TypeError, AttributeError):
                raise ValueError(f"{path}: line {number} is not a manifest row") from None


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
    try:  # an escape JSON does not take (a hand edit) leaves the file to the YAML loader, which judges it
        values = own and [json.loads(g) if g else None for g in own.groups()]
    except ValueError:
        own = None
    if own:
        org_id, type_id, device_id, token, domain, port, ca_file = values
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
        problem = re.sub(r"'[^']*'", "'...'", problem)  # a quoted alias or tag may be the token, mistyped
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
