"""The text of the deploy and recall scripts: one helm command per device (or per fleet release), in device order.

How they deploy comes from the deployer's DeployOptions (deployer.py). The scripts are bash, named `.bat` as in
the original sample. Each names its files relative to the project
folder, so it first moves to the folder above its own `bin/`, then checks once that the helm command exists.
Ctrl-C or SIGTERM stops them: no further release starts, the running ones are reported, and they exit 130.
"""

import functools
import importlib.resources
import re
import shlex
from collections import namedtuple

# What the scripts need: `+=` on arrays (3.1) for the plain ones, `wait -n` (4.3) for the parallel ones.
MIN_BASH = "3.2"
MIN_BASH_PARALLEL = "4.3"  # also in bash/parallel.bash's check
RUNTIME_FOLDER = "bash"  # the scripts' runtime: preamble, helm check, sequential or parallel (see runtime())

_RELEASE_WORD = re.compile(r"[a-z0-9][-a-z0-9]*\Z")  # a release name as Helm takes it (releasenames.py)

Release = namedtuple("Release", "name values_path ca_file", defaults=(None,))
Release.__doc__ = ("One Helm release: its name, its values file relative to the project folder, and the MQTT CA "
                   "file its devices' configs name (options.mqtt.caFile), if any.")


def deploy_command(release, helm_chart, helm_cmd="helm"):
    """The arguments that install or upgrade one release (the original sample's `helm upgrade ... -i`), passing the
    MQTT CA file to the chart when the configs name one."""
    command = [helm_cmd, "upgrade", release.name, helm_chart, "-i", "--values", release.values_path]
    if release.ca_file:
        command += ["--set-file", f"mqttCaCert={release.ca_file}"]
    return command


def recall_command(release, helm_version, helm_cmd="helm"):
    """The arguments that delete one device's release, in the syntax of Helm 2 or 3."""
    if helm_version == 2:
        return [helm_cmd, "delete", "--purge", release.name]
    return [helm_cmd, "uninstall", release.name]


def deploy_script(batch, releases, options, suffix="", devices=None):
    """The deploy script: `helm upgrade <release> <chart> -i --values <values>` for each release.

    `suffix` ends the script's name (see batchnames.py); `devices` is how many devices the releases hold
    (default: one each)."""
    what = (
        f"Deploy {_what(batch, releases, options, devices)} with Helm chart {_comment_word(options.helm_chart)}"
        f" (Helm {options.helm_version} syntax)."
    )
    commands = [deploy_command(release, options.helm_chart, options.helm_cmd) for release in releases]
    return _script("deploy", batch, suffix, releases, what, commands, options)


def recall_script(batch, releases, options, suffix="", devices=None):
    """The recall script: `helm uninstall <release>` (Helm 3) or `helm delete --purge <release>` (Helm 2)."""
    verb = "delete --purge" if options.helm_version == 2 else "uninstall"
    what = (f"Recall {_what(batch, releases, options, devices)}: helm {verb} each release"
            f" (Helm {options.helm_version} syntax).")
    commands = [recall_command(release, options.helm_version, options.helm_cmd) for release in releases]
    return _script("recall", batch, suffix, releases, what, commands, options)


def recalled_releases(text):
    """The releases a recall script (ours, maybe edited by hand) recalls, in order: the last word of each
    `helm uninstall <release>` or `helm delete --purge <release>` line, run directly or by `run <release> ...`."""
    releases = []
    for line in text.splitlines():
        if " uninstall " not in line and " --purge " not in line or line.startswith("#"):
            continue
        words = line.split()
        # Our own lines end with the release, a word shlex.quote leaves bare: no need to parse them as shell.
        if _RELEASE_WORD.match(words[-1]) and (words[-2] == "uninstall" or words[-3:-1] == ["delete", "--purge"]):
            releases.append(words[-1])
            continue
        try:  # a line edited by hand (a comment after it, quotes): read it as the shell would
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if words[:1] == ["run"] and len(words) > 2:
            words = words[2:]
        if len(words) == 3 and words[1] == "uninstall" or len(words) == 4 and words[1:3] == ["delete", "--purge"]:
            releases.append(words[-1])
    return releases


def _what(batch, releases, options, devices):
    described = batch.describe(len(releases) if devices is None else devices)
    if options.fleet_size is None:
        return described
    count = len(releases)
    return f"{described} as {count} fleet release{'' if count == 1 else 's'} of up to {options.fleet_size} devices"


def _comment_word(text):
    # Quoted like the commands below, and kept on one line so that it cannot end the comment.
    return shlex.quote(text).replace("\n", "\\n").replace("\r", "\\r")


def _script(action, batch, suffix, releases, what, commands, options):
    header = [
        "#!/usr/bin/env bash",
        f"# {what}",
        f"# Generated by deviceDeployer.py. Run it from anywhere with: bash {batch.script_path(action, suffix)}",
    ]
    unit = "device" if options.fleet_size is None else "fleet release"
    if options.parallel > 1:
        return _parallel_script(header, action, batch, suffix, releases, commands, options, unit)
    lines = header + [
        f"# One helm command per {unit}, in device order: edit or delete lines as you need.",
        "# A failed release does not stop the others: they are listed at the end, and the script exits 1.",
        "# Ctrl-C (or kill) stops the script: no further release starts, and it exits 130.",
        f"# Needs bash {MIN_BASH} or later.",
        runtime("preamble"),
        f"helm_cmd={shlex.quote(options.helm_cmd)}",
        runtime("helm-check"),
        runtime("sequential"),
    ]
    # Exactly the original sample's lines: the ERR trap above notes a failing one and lets the script go on.
    lines += [shlex.join(command) for command in commands]
    lines += ["", "finish"]
    return "\n".join(lines) + "\n"


def _parallel_script(header, action, batch, suffix, releases, commands, options, unit):
    parallel = options.parallel
    lines = header + [
        f"# Runs up to {parallel} helm commands at a time (set max_parallel below). Each `run <release> <command>`",
        f"# line is one {unit}, in device order: edit or delete lines as you need (and keep total in step).",
        "# Each release's helm output is shown when it finishes, then a progress line: [37/1000] <release> ok",
        "# A failed release does not stop the others: they are listed at the end, and the script exits 1.",
        "# Ctrl-C stops starting new releases; the script waits for the running ones and reports them.",
        f"# Needs bash {MIN_BASH_PARALLEL} or later (for wait -n).",
        runtime("preamble"),
        f"helm_cmd={shlex.quote(options.helm_cmd)}",
        runtime("helm-check"),
        f"max_parallel={parallel}  # at most this many helm commands run at once",
        f"total={len(commands)}  # how many run lines follow: the progress lines count up to it",
        f"log_prefix={shlex.quote(f'{action}-{batch.script_stem}{suffix}')}  # names the folder of their output",
        runtime("parallel"),
    ]
    lines += [f"run {shlex.quote(release.name)} {shlex.join(command)}"
              for command, release in zip(commands, releases, strict=True)]
    lines += ["", "finish"]
    return "\n".join(lines) + "\n"


@functools.cache
def runtime(name):
    """The text of devicefactory/bash/<name>.bash, spliced into every script so that each stays self-contained
    (real files, so that shellcheck reads them: `python3 tasks.py lint`)."""
    return importlib.resources.files(__package__).joinpath(RUNTIME_FOLDER, f"{name}.bash").read_text("utf-8")
