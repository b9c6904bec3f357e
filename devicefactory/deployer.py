"""deviceDeployer.py's work: read a batch's device configs, then write the scripts that deploy and recall them.

Nothing is written until every config asked for has been read and checked.
"""

import dataclasses
import shlex
from dataclasses import dataclass

from . import deployscripts, helmversion
from .batch import SCRIPT_FOLDER
from .deployscripts import Release
from .errors import EXIT_OK, FactoryError
from .files import write_file_atomically
from .localregistry import DeviceConfigError, LocalRegistry, read_device_config
from .releasenames import release_name

HELM_VERSIONS = (2, 3)
FALLBACK_HELM_VERSION = 3
SCRIPT_MODE = 0o755


@dataclass(frozen=True)
class ScriptsWritten:
    """The two scripts written (relative to the project folder), for how many devices, and how."""

    deploy: str
    recall: str
    devices: int
    options: deployscripts.DeployOptions
    helm_version_source: str

    @property
    def lines(self):
        parallel = self.options.parallel
        pace = ("one helm command at a time" if parallel == 1 else
                f"up to {parallel} helm commands at a time; needs bash {deployscripts.MIN_BASH_PARALLEL} or later")
        return [
            f"Using Helm {self.options.helm_version} syntax ({self.helm_version_source})",
            f"Wrote {self.deploy} and {self.recall} for {_count(self.devices, 'device')} ({pace})",
            f"To deploy them: bash {shlex.quote(self.deploy)}",
            f"To recall them: bash {shlex.quote(self.recall)}",
        ]

    exit_code = EXIT_OK


def write_deploy_scripts(batch, count, options, reporter, registry=None):
    """The deviceDeployer.py command: check the first `count` configs of `batch`, settle the Helm syntax, and
    write both scripts into the project's bin/."""
    registry = registry or LocalRegistry()
    releases = load_releases(registry, batch, count)
    helm_version, how = choose_helm_version(options.helm_version, options.helm_cmd, reporter)
    options = dataclasses.replace(options, helm_version=helm_version)
    scripts = {
        batch.script_path("deploy"): deployscripts.deploy_script(batch, releases, options),
        batch.script_path("recall"): deployscripts.recall_script(batch, releases, options),
    }
    target = registry.project_dir / SCRIPT_FOLDER
    try:
        target.mkdir(exist_ok=True)
        for path, text in scripts.items():
            target = registry.project_dir / path
            write_file_atomically(target, text, mode=SCRIPT_MODE)
    except OSError as error:
        raise FactoryError(f"cannot write {target}: {error.strerror or error}") from None
    return ScriptsWritten(batch.script_path("deploy"), batch.script_path("recall"), len(releases), options, how)


def load_releases(registry, batch, count):
    """One Release for each of the first `count` devices of `batch`, in device order, each config checked."""
    folder = registry.batch_folder(batch)
    try:
        devices = [device for _, device in registry.stored_devices(batch)]
    except (FileNotFoundError, NotADirectoryError):
        raise FactoryError(f"no batch {batch.batch_id} here: {folder} does not exist") from None
    except OSError as error:
        raise FactoryError(f"cannot read {folder}: {error.strerror or error}") from None
    if len(devices) < count:
        held = f"only {_count(len(devices), 'device config')}" if devices else "no device configs"
        raise FactoryError(f"{folder} holds {held} of batch {batch.batch_id}; cannot deploy {count}")
    releases, devices_by_release = [], {}
    for device_id in devices[:count]:
        _check_config(registry.config_path(batch, device_id), batch.type_id, device_id)
        name = release_name(batch.type_id, device_id)
        if name in devices_by_release:
            raise FactoryError(
                f"devices {devices_by_release[name]} and {device_id} would share the Helm release name {name}"
            )
        devices_by_release[name] = device_id
        releases.append(Release(name, registry.script_config_path(batch, device_id)))
    return releases


def _check_config(path, type_id, device_id):
    try:
        identity = read_device_config(path)["identity"]
    except DeviceConfigError as error:
        raise FactoryError(str(error)) from None
    if identity["typeId"] != type_id or identity["deviceId"] != device_id:
        raise FactoryError(
            f"{path}: holds the config of {identity['typeId']}:{identity['deviceId']}, not {type_id}:{device_id}"
        )


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


def _count(number, thing):
    return f"{number} {thing}{'' if number == 1 else 's'}"
