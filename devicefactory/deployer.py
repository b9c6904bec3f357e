"""deviceDeployer.py's work: read a batch's device configs, then write the scripts that deploy and recall them.

Nothing is written until every config asked for has been read and checked.
"""

import os
import shlex
import sys
from collections import namedtuple
from pathlib import Path

from . import deployscripts, helmversion
from .deployscripts import Batch, Release
from .errors import EXIT_OK, FactoryError
from .ids import device_number, id_problem
from .localregistry import CONFIG_SUFFIX, DeviceConfigError, batch_dir, read_device_config, write_file_atomically
from .releasenames import release_name

PROG = "deviceDeployer.py"
DEFAULT_TYPE_ID = "iotpsutil"
DEFAULT_CLASS_ID = "Device"
CLASS_IDS = ("Device", "Gateway")
HELM_VERSIONS = (2, 3)
FALLBACK_HELM_VERSION = 3
SCRIPT_MODE = 0o755

ScriptsWritten = namedtuple("ScriptsWritten", "deploy recall devices")
ScriptsWritten.__doc__ = "The two scripts written, relative to the project folder, and how many devices they hold."


def deploy(batch_id, number_of_devices, helm_chart, type_id=DEFAULT_TYPE_ID, class_id=DEFAULT_CLASS_ID,
           helm_cmd="helm", helm_version=None, parallel=1):
    """The deviceDeployer.py command: check the batch, settle the Helm syntax, write both scripts, report."""
    batch = load_batch(".", class_id, type_id, batch_id, number_of_devices)
    helm_version, how = choose_helm_version(helm_version, helm_cmd)
    print(f"Using Helm {helm_version} syntax ({how})")
    written = save_scripts(".", batch, helm_chart, helm_cmd, helm_version, parallel)
    pace = ("one helm command at a time" if parallel == 1 else
            f"up to {parallel} helm commands at a time; needs bash {deployscripts.MIN_BASH_PARALLEL} or later")
    print(f"Wrote {written.deploy} and {written.recall} for {_count(written.devices, 'device')} ({pace})")
    print(f"To deploy them: bash {shlex.quote(written.deploy)}")
    print(f"To recall them: bash {shlex.quote(written.recall)}")
    return EXIT_OK


def write_scripts(base_dir, *, batch_id, number_of_devices, helm_chart, type_id=DEFAULT_TYPE_ID,
                  class_id=DEFAULT_CLASS_ID, helm_cmd="helm", helm_version=3, parallel=1):
    """Read the first `number_of_devices` configs of a batch under `base_dir`, write both scripts into its bin/."""
    batch = load_batch(base_dir, class_id, type_id, batch_id, number_of_devices)
    return save_scripts(base_dir, batch, helm_chart, helm_cmd, helm_version, parallel)


def load_batch(base_dir, class_id, type_id, batch_id, number_of_devices):
    """The first `number_of_devices` devices of a batch, in device-number order, each config read and checked."""
    for name, value in (("typeId", type_id), ("batchId", batch_id)):
        if id_problem(value):
            raise FactoryError(f"{name} {value!r} {id_problem(value)}")
    folder = batch_dir(class_id, type_id, batch_id)  # as the scripts name it, from the project folder
    shown_folder = Path(base_dir) / folder  # as this process finds it, and names it in messages
    devices = _devices_in(shown_folder, batch_id)
    if len(devices) < number_of_devices:
        held = f"only {_count(len(devices), 'device config')}" if devices else "no device configs"
        raise FactoryError(f"{shown_folder} holds {held} of batch {batch_id}; cannot deploy {number_of_devices}")
    releases, devices_by_release = [], {}
    for device_id in devices[:number_of_devices]:
        _check_config(os.path.join(shown_folder, device_id + CONFIG_SUFFIX), type_id, device_id)
        name = release_name(type_id, device_id)
        if name in devices_by_release:
            raise FactoryError(
                f"devices {devices_by_release[name]} and {device_id} would share the Helm release name {name}"
            )
        devices_by_release[name] = device_id
        releases.append(Release(name, f"./{folder.as_posix()}/{device_id}{CONFIG_SUFFIX}"))
    return Batch(class_id, type_id, batch_id, releases)


def _devices_in(folder, batch_id):
    """The device ids of a batch folder's configs, by device number; other files are no business of ours."""
    numbered = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(CONFIG_SUFFIX):
                    device_id = entry.name[: -len(CONFIG_SUFFIX)]
                    number = device_number(batch_id, device_id)
                    if number is not None:
                        numbered.append((number, device_id))
    except (FileNotFoundError, NotADirectoryError):
        raise FactoryError(f"no batch {batch_id} here: {folder} does not exist") from None
    except OSError as error:
        raise FactoryError(f"cannot read {folder}: {error.strerror or error}") from None
    numbered.sort()
    return [device_id for _, device_id in numbered]


def _check_config(path, type_id, device_id):
    try:
        identity = read_device_config(path)["identity"]
    except DeviceConfigError as error:
        raise FactoryError(str(error)) from None
    if identity["typeId"] != type_id or identity["deviceId"] != device_id:
        raise FactoryError(
            f"{path}: holds the config of {identity['typeId']}:{identity['deviceId']}, not {type_id}:{device_id}"
        )


def choose_helm_version(requested, helm_cmd):
    """The Helm major version to write commands for, and how it was chosen; warns if it had to guess."""
    if requested:
        return requested, "from --helmVersion"
    try:
        major, version, asked = helmversion.helm_version(helm_cmd)
    except helmversion.HelmVersionUnknown as problem:
        print(f"{PROG}: warning: cannot tell the Helm version ({problem}); assuming Helm {FALLBACK_HELM_VERSION}."
              f" Choose with --helmVersion.", file=sys.stderr)
        return FALLBACK_HELM_VERSION, "assumed: the Helm version is unknown"
    if major < 2:
        print(f"{PROG}: warning: '{asked}' says {version}, which this tool cannot drive; assuming Helm"
              f" {FALLBACK_HELM_VERSION}. Choose with --helmVersion.", file=sys.stderr)
        return FALLBACK_HELM_VERSION, f"assumed: {version} is not Helm 2 or later"
    # Helm 4 deletes releases as Helm 3 does.
    return min(major, 3), f"detected {version} from '{asked}'"


def save_scripts(base_dir, batch, helm_chart, helm_cmd="helm", helm_version=3, parallel=1):
    """Write the deploy and recall scripts of `batch` into `base_dir`/bin, executable, each atomically."""
    scripts = {
        deployscripts.script_path("deploy", batch): deployscripts.deploy_script(
            batch, helm_chart, helm_cmd, helm_version, parallel),
        deployscripts.script_path("recall", batch): deployscripts.recall_script(
            batch, helm_cmd, helm_version, parallel),
    }
    target = Path(base_dir) / deployscripts.SCRIPT_FOLDER
    try:
        target.mkdir(exist_ok=True)
        for target_path, text in scripts.items():
            target = Path(base_dir) / target_path
            write_file_atomically(target, text, mode=SCRIPT_MODE)
    except OSError as error:
        raise FactoryError(f"cannot write {target}: {error.strerror or error}") from None
    deploy_path, recall_path = scripts
    return ScriptsWritten(deploy_path, recall_path, len(batch.releases))


def _count(number, thing):
    return f"{number} {thing}{'' if number == 1 else 's'}"
