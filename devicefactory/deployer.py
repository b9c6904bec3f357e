"""deviceDeployer.py's work: read a batch's device configs, then write the scripts that deploy and recall them
(and, in fleet mode, the fleet values files the scripts pass).

Nothing is written until every config asked for has been read and checked.
"""

import dataclasses
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from . import batchnames, deployscripts, fleet, helmversion
from .batch import SCRIPT_FOLDER
from .deployscripts import Release
from .errors import ExitCode, FactoryError
from .files import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, TEMPORARY_SUFFIX, CheckedFolder
from .localregistry import CONFIG_SUFFIX, BatchLock, DeviceConfigError, LocalRegistry, helm_path_problem
from .releasenames import fleet_release_name, release_name
from .reporting import counted, listed
from .results import RunResult

HELM_VERSIONS = (2, 3)
FALLBACK_HELM_VERSION = 3
SCRIPT_FOLDER_MODE = 0o755
SCRIPT_MODE = 0o755
LOCAL_CHART_PREFIXES = ("/", "./", "../", "~")  # a --helmChart that starts so is a path on this machine


@dataclass(frozen=True)
class DeployOptions:
    """How the scripts deploy: the chart, the helm command and its syntax (2 or 3; None: ask helm), the pace, the
    devices per fleet release (None: one release per device), and whether to write over a recall script that
    recalls releases the new one would not (--replaceRecall)."""

    helm_chart: str
    helm_cmd: str = "helm"
    helm_version: int | None = None
    parallel: int = 1
    fleet_size: int | None = None
    replace_recall: bool = False


@dataclass(frozen=True)
class ScriptsWritten:
    """The two scripts written (relative to the project folder), for how many devices and releases, and how."""

    deploy: str
    recall: str
    devices: int
    releases: int
    options: DeployOptions
    helm_version_source: str

    @property
    def lines(self):
        parallel = self.options.parallel
        pace = ("one helm command at a time" if parallel == 1 else
                f"up to {parallel} helm commands at a time; needs bash {deployscripts.MIN_BASH_PARALLEL} or later")
        how_many = counted(self.devices, "device")
        if self.options.fleet_size is not None:
            how_many += f" in {counted(self.releases, 'fleet release')} of up to {self.options.fleet_size}"
        return [
            f"Using Helm {self.options.helm_version} syntax ({self.helm_version_source})",
            f"Wrote {self.deploy} and {self.recall} for {how_many} ({pace})",
            f"To deploy them: bash {shlex.quote(self.deploy)}",
            f"To recall them: bash {shlex.quote(self.recall)}",
        ]


@dataclass(frozen=True)
class FleetRelease:
    """One fleet release to write: its Release (name, values file, CA file) and its values file's text."""

    release: Release
    values_text: str


def write_deploy_scripts(batch, count, options, reporter, registry=None):
    """The deviceDeployer.py command: check the first `count` configs of `batch`, choose its names, settle the
    Helm syntax, and write both scripts into the project's bin/ (and the fleet values files in fleet mode).
    Returns a RunResult whose `made` is the ScriptsWritten."""
    registry = registry or LocalRegistry()
    # The same checks as the other commands (no link, not another user's folder, no case-only clash), and the
    # batch lock: a decommission at work would remove the fleet values files the new scripts name.
    if not registry.checked_batch_folder(batch):
        raise FactoryError(f"no batch {batch.batch_id} here: {registry.batch_folder(batch)} does not exist")
    lock = BatchLock(registry.batch_folder(batch))
    lock.acquire()
    try:
        return _write_deploy_scripts(batch, count, options, reporter, registry)
    finally:
        lock.release()


def _write_deploy_scripts(batch, count, options, reporter, registry):
    devices = load_devices(registry, batch, count)
    names = batchnames.choose_names(registry, batch)
    ca_files = _ca_files(registry, devices)
    if options.fleet_size is None:
        fleets = []
        prefix = registry.script_config_prefix(batch)
        releases = [Release(release_name(batch.type_id, device_id, names.suffix),
                            prefix + device_id + CONFIG_SUFFIX, ca_files[device_id])
                    for device_id, _ in devices]
    else:
        fleets = plan_fleets(registry, batch, devices, options.fleet_size, names.suffix, ca_files)
        releases = [planned.release for planned in fleets]
    labels = ([f"devices {device_id}" for device_id, _ in devices] if options.fleet_size is None else
              [f"fleet releases {number}" for number in range(1, len(releases) + 1)])
    _check_unique([release.name for release in releases], labels)
    helm_version, how = choose_helm_version(options.helm_version, options.helm_cmd, reporter)
    options = dataclasses.replace(options, helm_version=helm_version)
    scripts = {
        batch.script_path(action, names.suffix): script(batch, releases, options, names.suffix, len(devices))
        for action, script in (("deploy", deployscripts.deploy_script), ("recall", deployscripts.recall_script))
    }
    recall_path = batch.script_path("recall", names.suffix)
    _check_recall_replacement(registry, recall_path, scripts[recall_path], options.replace_recall)
    with CheckedFolder(registry.project_dir / SCRIPT_FOLDER, SCRIPT_FOLDER_MODE) as script_folder:
        if names.to_record:
            record = registry.release_names_path(batch)
            with CheckedFolder(record.parent, PRIVATE_DIR_MODE) as batch_folder:
                batch_folder.write(record.name, batchnames.record_text(names), PRIVATE_FILE_MODE)
        if options.fleet_size is not None:
            write_fleet_files(registry, batch, fleets, reporter)
        for path, text in scripts.items():
            script_folder.write(Path(path).name, text, SCRIPT_MODE)
    deploy, recall = scripts
    written = ScriptsWritten(deploy, recall, len(devices), len(releases), options, how)
    return RunResult(written.lines, ExitCode.OK, made=written)


def load_devices(registry, batch, count):
    """[(device_id, config)] for the first `count` devices of `batch`, in device order, each config checked."""
    folder = registry.batch_folder(batch)
    try:
        device_ids = [device for _, device in registry.stored_devices(batch)]
    except (FileNotFoundError, NotADirectoryError):
        raise FactoryError(f"no batch {batch.batch_id} here: {folder} does not exist") from None
    except OSError as error:
        raise FactoryError(f"cannot read {folder}: {error.strerror or error}") from None
    if len(device_ids) < count:
        held = f"only {counted(len(device_ids), 'device config')}" if device_ids else "no device configs"
        raise FactoryError(f"{folder} holds {held} of batch {batch.batch_id}; cannot deploy {count}")
    try:
        return registry.read_configs(batch, device_ids[:count])
    except DeviceConfigError as error:
        raise FactoryError(str(error)) from None


def ca_file_of(config):
    """The MQTT CA file a device config names (options.mqtt.caFile), or None."""
    mqtt = (config.get("options") or {}).get("mqtt") or {}
    return mqtt.get("caFile") if isinstance(mqtt, dict) else None


def _ca_files(registry, devices):
    """{device_id: its CA file or None}, each file checked to exist (relative paths from the project folder)."""
    found, checked = {}, set()
    for device_id, config in devices:
        ca_file = ca_file_of(config)
        if ca_file is not None and ca_file not in checked:
            problem = helm_path_problem(ca_file) if isinstance(ca_file, str) else "must be a path"
            if problem:
                raise FactoryError(f"device {device_id}: options.mqtt.caFile {ca_file!r} {problem}")
            if not (registry.project_dir / ca_file).is_file():
                raise FactoryError(f"device {device_id}: options.mqtt.caFile {ca_file} does not exist")
            checked.add(ca_file)
        found[device_id] = ca_file
    return found


def plan_fleets(registry, batch, devices, fleet_size, suffix, ca_files):
    """The fleet releases of `devices`: up to `fleet_size` each, in device order, sharing orgId and options."""
    first_id, first = devices[0]
    for device_id, config in devices[1:]:
        for what, value in (("identity.orgId", config["identity"]["orgId"] != first["identity"]["orgId"]),
                            ("options", (config.get("options") or None) != (first.get("options") or None))):
            if value:
                raise FactoryError(f"devices {first_id} and {device_id} have different {what}; the devices of a fleet"
                                   " release share one: deploy this batch without --fleet")
    planned = []
    for number, members in enumerate(fleet.chunks(devices, fleet_size), start=1):
        name = fleet_release_name(batch.type_id, batch.batch_id, number, suffix)
        text = fleet.render_fleet_values(first["identity"]["orgId"], batch.type_id, first.get("options"),
                                         [(device_id, config["auth"]["token"]) for device_id, config in members])
        release = Release(name, registry.script_fleet_values_path(batch, name), ca_files[first_id])
        planned.append(FleetRelease(release, text))
    return planned


def write_fleet_files(registry, batch, fleets, reporter):
    """Write each fleet release's values file (0600, in the batch's private fleet/ folder) and remove those of
    releases a earlier run wrote that this one no longer has, saying so."""
    files = {f"{planned.release.name}{CONFIG_SUFFIX}": planned.values_text for planned in fleets}
    with CheckedFolder(registry.fleet_folder(batch), PRIVATE_DIR_MODE, private=True) as folder:
        for name, text in files.items():
            folder.write(name, text, PRIVATE_FILE_MODE)
        unused = sorted(name for name in folder.names() if name not in files and name.endswith(CONFIG_SUFFIX))
        for name in folder.names():
            if name in unused or (name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)):
                folder.remove(name)
    if unused:
        gone = ", ".join(name[: -len(CONFIG_SUFFIX)] for name in unused)
        reporter.warning(f"removed the values files of fleet releases this batch no longer has: {gone}; if they are"
                         " deployed, recall them with helm uninstall (Helm 2: helm delete --purge)")


def _check_recall_replacement(registry, recall_path, new_text, replace):
    """Refuse to write over a recall script that recalls releases the new one would not (a batch deployed in the
    other form, with another --fleetSize or fewer devices): they would stay deployed with nothing to recall them."""
    try:
        old_text = (registry.project_dir / recall_path).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):  # no script yet (a bin/ that is no folder is refused later)
        return
    except (OSError, UnicodeDecodeError) as error:
        raise FactoryError(f"cannot read {recall_path}: {getattr(error, 'strerror', None) or error}") from None
    kept = set(deployscripts.recalled_releases(new_text))
    dropped = [release for release in deployscripts.recalled_releases(old_text) if release not in kept]
    if dropped and not replace:
        raise FactoryError(
            f"{recall_path} recalls {counted(len(dropped), 'release')} the new script would not ({listed(dropped, 3)}):"
            f" if they are deployed, recall them first with bash {shlex.quote(recall_path)}; to write the scripts"
            f" anyway, run again with --replaceRecall")


def _check_unique(names, labels):
    """Refuse two releases of one run under one name; labels[i] says what release i is ('devices 190523-0001')."""
    seen = {}
    for name, label in zip(names, labels, strict=True):
        if name in seen:
            raise FactoryError(f"{seen[name]} and {label.split()[-1]} would share the Helm release name {name}")
        seen[name] = label


def local_chart_problem(chart, project_dir="."):
    """Why `chart` cannot be deployed from here, or None. A chart that starts with /, ./, ../ or ~ (or is . or ..)
    is a path and must exist; any other name is a path if it exists here, else a `repo/chart` left to helm."""
    if not (chart.startswith(LOCAL_CHART_PREFIXES) or chart in (".", "..")):
        return None
    if chart.startswith("~"):
        return f"{chart!r}: the scripts do not expand '~'; give the chart's path without it"
    path = Path(project_dir, chart)
    if not os.path.exists(path):
        return f"no chart folder or archive {chart} here (a path is taken from the project folder)"
    if path.is_dir() and not (path / "Chart.yaml").is_file():
        return f"{chart} is a folder but no chart: it has no Chart.yaml"
    if not path.is_dir() and not chart.endswith((".tgz", ".tar.gz")):
        return f"{chart} is a file but no chart archive (.tgz)"
    return None


def choose_helm_version(requested, helm_cmd, reporter):
    """The Helm major version to write commands for, and how it was chosen; warns if it had to guess."""
    if requested:
        return requested, "from --helmVersion"
    try:
        major, version, asked = helmversion.helm_version(helm_cmd)
    except helmversion.HelmVersionUnknown as problem:
        reporter.warning(f"cannot tell the Helm version ({problem}); assuming Helm {FALLBACK_HELM_VERSION}."
                         f" Choose with --helmVersion.")
        return FALLBACK_HELM_VERSION, "assumed: the Helm version is unknown"
    if major < 2:
        reporter.warning(f"'{asked}' says {version}, which this tool cannot drive; assuming Helm"
                         f" {FALLBACK_HELM_VERSION}. Choose with --helmVersion.")
        return FALLBACK_HELM_VERSION, f"assumed: {version} is not Helm 2 or later"
    # Helm 4 deletes releases as Helm 3 does.
    return min(major, 3), f"detected {version} from '{asked}'"
