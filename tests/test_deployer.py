"""deviceDeployer.py end to end: run the command, then run the scripts it writes with a stand-in helm."""

import os
import re
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml

import deviceDeployer
from conftest import (
    ROOT,
    STANDIN_HELM,
    clean_environment,
    helm_arguments,
    helm_calls,
    run_deployer,
    run_registrator,
)
from devicefactory import batchnames, deployer, helmversion
from devicefactory.batch import Batch
from devicefactory.localregistry import render_device_config, write_device_config
from devicefactory.releasenames import release_name

STANDINS = ROOT / "tests" / "standins"
DEPLOY = "bin/deploy-device-iotpsutil-190523.bat"
RECALL = "bin/recall-device-iotpsutil-190523.bat"
FOLDER = "localDeviceRegistry/device/iotpsutil/190523"


def token(device):
    return f"secret-token-of-{device}"


def register(project, numbers, type_id="iotpsutil", batch_id="190523", class_id="Device"):
    """Write device configs with deviceRegistrator.py's own writer, for any devices `numbers` of a batch (the
    real registrator always registers 1..N; this makes gaps and ids that are slow or odd to register)."""
    batch = Batch(class_id, type_id, batch_id)
    folder = project / batch.registry_folder
    folder.mkdir(parents=True, exist_ok=True)
    for number in numbers:
        device = batch.device_id(number)
        write_device_config(folder, "myorg", type_id, device, token(device))
    return folder


def register_for_real(project, count, fake, *arguments):
    """Register devices 1..count of batch 190523 with deviceRegistrator.py against the fake platform."""
    project.mkdir(exist_ok=True)
    registered = run_registrator(project, "-b", "190523", "-n", str(count), *arguments, fake=fake)
    assert registered.returncode == 0, registered.stderr


@pytest.fixture
def project(tmp_path, fake_platform):
    """A project folder whose path holds a space, with devices 1-3 of batch 190523 registered by the real
    deviceRegistrator.py against the local fake platform."""
    folder = tmp_path / "factory floor"
    register_for_real(folder, 3, fake_platform)
    return folder


@pytest.fixture
def helm_log(tmp_path):
    folder = tmp_path / "helm calls"
    folder.mkdir()
    return folder


@pytest.fixture
def env(helm_log):
    """The environment of a run: the stand-in helm records its calls into helm_log."""
    environment = clean_environment(HELM_STANDIN_LOG=str(helm_log), LC_ALL="C")
    return {name: value for name, value in environment.items()
            if name == "HELM_STANDIN_LOG" or not name.startswith("HELM_STANDIN_")}


def run_script(project, script, env, elsewhere):
    """Run a generated script with bash from another folder, as a user may."""
    return subprocess.run(["bash", str(project / script)], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=60)


def written(project):
    return sorted(path.name for path in (project / "bin").iterdir()) if (project / "bin").exists() else []


def device_id(batch_id, number):
    return Batch("Device", "iotpsutil", batch_id).device_id(number)


def upgrade(n, chart="wiotp/psutil", folder=FOLDER, batch_id="190523", type_id="iotpsutil"):
    device = device_id(batch_id, n)
    return ["upgrade", f"{type_id}-{device}", chart, "-i", "--values", f"./{folder}/{device}.yaml"]


def report(helm_version, how, count=3, pace="one helm command at a time"):
    return (
        f"Using Helm {helm_version} syntax ({how})\n"
        f"Wrote {DEPLOY} and {RECALL} for {count} devices ({pace})\n"
        f"To deploy them: bash {DEPLOY}\n"
        f"To recall them: bash {RECALL}\n"
    )


# The command line


def test_help_explains_every_flag_with_an_example(project):
    result = run_deployer(project, "--help")
    assert result.returncode == 0
    for short, flag in (("-b", "--batchId"), ("-n", "--numberOfDevices"), ("-t", "--typeId"), ("-c", "--classId"),
                        (None, "--helmChart"), (None, "--helmCmd"), (None, "--helmVersion"), (None, "--parallel")):
        assert re.search(rf"^  {short} \S+, {flag} " if short else rf"^  {flag} \S+ ", result.stdout, re.MULTILINE)
    assert "example:\n  python deviceDeployer.py --batchId 190523" in result.stdout
    assert written(project) == []


@pytest.mark.parametrize(
    "arguments, complaint",
    [
        (["-b", "19/05", "-n", "1"],
         "argument -b/--batchId: batchId '19/05' may hold only letters, digits, '-', '_' and '.'"),
        (["-b", "190523", "-n", "0"], "argument -n/--numberOfDevices: '0' is not a positive whole number"),
        (["-b", "190523", "-n", "x"], "argument -n/--numberOfDevices: 'x' is not a positive whole number"),
        (["-b", "190523", "-n", "1", "-t", "t" * 37],
         f"argument -t/--typeId: typeId '{'t' * 37}' is 37 characters long; the platform allows at most 36"),
        (["-b", "190523", "-n", "1", "-c", "Thing"], "argument -c/--classId: invalid choice: 'Thing'"),
        (["-b", "190523", "-n", "1", "--helmVersion", "4"], "argument --helmVersion: invalid choice: 4"),
        (["-b", "190523", "-n", "1", "--parallel", "0"], "argument --parallel: '0' is not a positive whole number"),
        (["-b", "190523", "-n", "1", "--helmCmd", ""], "argument --helmCmd: '' must be non-empty"),
        (["-b", "190523", "-n", "1", "--helmChart", "wiotp/psutil", "--typo"], "unrecognized arguments: --typo"),
        (["-b", "190523", "-n", " 5"], "argument -n/--numberOfDevices: ' 5' is not a positive whole number"),
        (["-b", "190523", "-n", "1_0"], "argument -n/--numberOfDevices: '1_0' is not a positive whole number"),
        (["-b", "190523", "-n", "\u0663"], "argument -n/--numberOfDevices: '\u0663' is not a positive whole number"),
        (["-b", "190523", "-n", "1", "--helmChart=--post-renderer=/tmp/evil"],
         "argument --helmChart: '--post-renderer=/tmp/evil' is not a chart: a chart name or path cannot start with '-'"),
        (["-b", "190523", "-n", "1", "--helmCmd", "helm --kube-context prod"],
         "argument --helmCmd: 'helm --kube-context prod' is not a command name or path: for extra helm flags, "
         "write a small wrapper script and give its path"),
        (["-b", "190523", "-n", "1", "--fleet", "--fleetSize", "5001"],
         "argument --fleetSize: '5001' is more than 5,000 (a release's Secret must stay far under 1 MiB)"),
    ],
)
def test_bad_input_exits_2_with_usage_and_writes_nothing(project, arguments, complaint):
    if "--helmChart" not in arguments:
        arguments = [*arguments, "--helmChart", "wiotp/psutil"]
    result = run_deployer(project, *arguments)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("usage: deviceDeployer.py ")
    assert f"deviceDeployer.py: error: {complaint}" in result.stderr
    assert written(project) == []


# Deploy and recall, Helm 3 and 2


def test_helm3_scripts_deploy_and_recall_every_device(project, env, helm_log, tmp_path, fake_platform):
    result = run_deployer(project, "-b", "190523", "-n", "3", "--helmChart", "wiotp/psutil",
                          "--helmCmd", str(STANDIN_HELM), "--helmVersion", "3")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == report(3, "from --helmVersion")
    assert written(project) == sorted([Path(DEPLOY).name, Path(RECALL).name])
    for script in (DEPLOY, RECALL):
        assert stat.S_IMODE((project / script).stat().st_mode) == 0o755
        assert str(STANDIN_HELM) in (project / script).read_text()

    deployed = run_script(project, DEPLOY, env, tmp_path)
    assert (deployed.returncode, deployed.stderr) == (0, "")
    assert deployed.stdout == "".join(
        f'Release "iotpsutil-190523-000{n}" has been upgraded. Happy Helming!\n' for n in (1, 2, 3)
    )
    assert helm_arguments(helm_log) == [upgrade(1), upgrade(2), upgrade(3)]

    for record in helm_log.iterdir():
        record.unlink()
    recalled = run_script(project, RECALL, env, tmp_path)
    assert (recalled.returncode, recalled.stderr) == (0, "")
    assert helm_arguments(helm_log) == [["uninstall", f"iotpsutil-190523-000{n}"] for n in (1, 2, 3)]
    tokens = [fake_platform.device("iotpsutil", device_id("190523", n))["authToken"] for n in (1, 2, 3)]
    assert not any(token in result.stdout + deployed.stdout + recalled.stdout for token in tokens)


def test_helm2_scripts_run_the_helm_on_path(project, env, helm_log, tmp_path):
    env["PATH"] = f"{STANDINS}{os.pathsep}{env['PATH']}"
    result = run_deployer(project, "--batchId", "190523", "--numberOfDevices", "2",
                          "--helmChart", "wiotp/psutil", "--helmVersion", "2")
    assert result.returncode == 0
    assert result.stdout == report(2, "from --helmVersion", count=2)
    assert "\nhelm delete --purge iotpsutil-190523-0001\n" in (
        project / RECALL).read_text()

    assert run_script(project, DEPLOY, env, tmp_path).returncode == 0
    assert run_script(project, RECALL, env, tmp_path).returncode == 0
    assert helm_arguments(helm_log) == [
        upgrade(1), upgrade(2), ["delete", "--purge", "iotpsutil-190523-0001"],
        ["delete", "--purge", "iotpsutil-190523-0002"],
    ]


# Which Helm syntax


@pytest.mark.parametrize(
    "says, helm_version, version",
    [("v3.14.4+g81c902a", 3, "v3.14.4"), ("Client: v2.17.0+ga690bad", 2, "v2.17.0"), ("v4.0.1+g1234567", 3, "v4.0.1")],
)
def test_the_helm_version_is_asked_without_reaching_a_cluster(project, env, helm_log, says, helm_version, version):
    env["HELM_STANDIN_VERSION"] = says
    result = run_deployer(project, "-b", "190523", "-n", "3", "--helmChart", "wiotp/psutil",
                          "--helmCmd", str(STANDIN_HELM), env=env)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == report(helm_version, f"detected {version} from '{STANDIN_HELM} version --short --client'")
    assert helm_arguments(helm_log) == [["version", "--short", "--client"]]
    recall = "uninstall" if helm_version == 3 else "delete --purge"
    assert f"\n{STANDIN_HELM} {recall} iotpsutil-190523-0003\n" in (project / RECALL).read_text()


def test_a_helm_without_the_client_flag_is_asked_plainly(project, env, helm_log):
    env["PATH"] = f"{STANDINS}{os.pathsep}{env['PATH']}"
    env["HELM_STANDIN_NO_CLIENT"] = "1"
    result = run_deployer(project, "-b", "190523", "-n", "3", "--helmChart", "wiotp/psutil", env=env)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[0] == "Using Helm 3 syntax (detected v3.14.4 from 'helm version --short')"
    assert helm_arguments(helm_log) == [["version", "--short", "--client"], ["version", "--short"]]


def test_an_unknown_helm_version_falls_back_to_helm3_with_a_warning(project, tmp_path):
    missing = tmp_path / "no such" / "helm"
    result = run_deployer(project, "-b", "190523", "-n", "3", "--helmChart", "wiotp/psutil",
                          "--helmCmd", str(missing))
    assert result.returncode == 0
    assert result.stderr == (
        f"deviceDeployer.py: warning: cannot tell the Helm version ('{missing}' was not found);"
        " assuming Helm 3. Choose with --helmVersion.\n"
    )
    assert result.stdout == report(3, "assumed: the Helm version is unknown")
    assert f"\n'{missing}' uninstall iotpsutil-190523-0001\n" in (project / RECALL).read_text()


def test_a_helm_that_prints_no_version_is_reported(monkeypatch):
    monkeypatch.setenv("HELM_STANDIN_VERSION", "no version here")
    with pytest.raises(helmversion.HelmVersionUnknown) as problem:
        helmversion.helm_version(str(STANDIN_HELM))
    assert str(problem.value) == f"'{STANDIN_HELM} version --short' printed no version: no version here"


def test_a_hanging_helm_version_times_out_and_is_ended(monkeypatch):
    monkeypatch.setenv("HELM_STANDIN_VERSION", "hang")
    started = time.monotonic()
    with pytest.raises(helmversion.HelmVersionUnknown) as problem:
        helmversion.helm_version(str(STANDIN_HELM), timeout=0.5)
    assert time.monotonic() - started < 5  # its `sleep 30` was ended with it
    assert str(problem.value) == f"'{STANDIN_HELM} version --short --client' did not answer within 0.5 s"


# Failures while the scripts run


def test_a_failing_release_does_not_hide(project, env, helm_log, tmp_path):
    assert run_deployer(project, "-b", "190523", "-n", "3", "--helmChart", "wiotp/psutil",
                        "--helmCmd", str(STANDIN_HELM), "--helmVersion", "3").returncode == 0
    env["HELM_STANDIN_FAIL"] = "iotpsutil-190523-0002"
    deployed = run_script(project, DEPLOY, env, tmp_path)
    assert deployed.returncode == 1
    assert helm_arguments(helm_log) == [upgrade(1), upgrade(2), upgrade(3)]
    assert deployed.stderr == (
        "Error: stand-in helm fails iotpsutil-190523-0002 on request\n"
        "deploy-device-iotpsutil-190523.bat: iotpsutil-190523-0002 failed (exit status 1)\n"
        "deploy-device-iotpsutil-190523.bat: 1 release(s) failed:\n"
        "  iotpsutil-190523-0002\n"
    )
    recalled = run_script(project, RECALL, env, tmp_path)
    assert recalled.returncode == 1
    assert recalled.stderr.endswith(
        "recall-device-iotpsutil-190523.bat: 1 release(s) failed:\n  iotpsutil-190523-0002\n")


def test_a_chart_path_with_spaces_from_a_project_with_spaces(project, env, helm_log, tmp_path):
    chart = "./charts/psutil chart"
    (project / chart).mkdir(parents=True)
    (project / chart / "Chart.yaml").write_text("apiVersion: v2\nname: psutil\nversion: 1.0.0\n")
    result = run_deployer(project, "-b", "190523", "-n", "2", "--helmChart", chart,
                          "--helmCmd", str(STANDIN_HELM), "--helmVersion", "3")
    assert result.returncode == 0
    assert " 'factory floor'" not in result.stdout  # the printed commands are relative to the project
    assert run_script(project, DEPLOY, env, tmp_path).returncode == 0
    assert helm_arguments(helm_log) == [upgrade(1, chart), upgrade(2, chart)]


# Which devices, in which order, under which names


def test_the_first_n_devices_by_number(project, env, helm_log, tmp_path):
    folder = register(project, [10, 100, 1000, 9999, 10000])
    for stray in ("notes.txt", "190523-01.yaml", "190523-00010.yaml", "190524-0001.yaml", ".190523-0004.yaml.1.tmp"):
        (folder / stray).write_text("not a device config of this batch\n")
    result = run_deployer(project, "-b", "190523", "-n", "8", "--helmChart", "wiotp/psutil",
                          "--helmCmd", str(STANDIN_HELM), "--helmVersion", "3")
    assert (result.returncode, result.stderr) == (0, "")
    assert run_script(project, DEPLOY, env, tmp_path).returncode == 0
    assert helm_arguments(helm_log) == [upgrade(n) for n in (1, 2, 3, 10, 100, 1000, 9999, 10000)]

    assert run_deployer(project, "-b", "190523", "-n", "4", "--helmChart", "wiotp/psutil",
                        "--helmVersion", "3", "--replaceRecall").returncode == 0
    assert (project / DEPLOY).read_text().count("\nhelm upgrade ") == 4
    assert "190523-0010.yaml\n\n" in (project / DEPLOY).read_text()


def test_ids_helm_refuses_map_to_valid_stable_release_names(tmp_path, env, helm_log):
    project = tmp_path / "project"
    project.mkdir()
    type_id, batch_id = "IoT_PS.util", "Batch_19.05"
    long_type, long_batch = "T" * 36, "B" * 31
    register(project, [1, 2], type_id=type_id, batch_id=batch_id)
    register(project, [1], type_id=long_type, batch_id=long_batch, class_id="Gateway")
    for _ in range(2):  # the same names on every run
        assert run_deployer(project, "-b", batch_id, "-n", "2", "-t", type_id, "--helmChart", "c",
                            "--helmCmd", str(STANDIN_HELM), "--helmVersion", "3").returncode == 0
        assert run_deployer(project, "-b", long_batch, "-n", "1", "-t", long_type, "-c", "Gateway",
                            "--helmChart", "c", "--helmCmd", str(STANDIN_HELM), "--helmVersion", "3").returncode == 0
        assert run_script(project, f"bin/deploy-device-{type_id}-{batch_id}.bat", env, tmp_path).returncode == 0
        assert run_script(project, f"bin/deploy-gateway-{long_type}-{long_batch}.bat", env, tmp_path).returncode == 0
    names = [arguments[1] for arguments in helm_arguments(helm_log)]
    assert names == 2 * [
        "iot-ps-util-batch-19-05-0001-5cde8703",
        "iot-ps-util-batch-19-05-0002-cd467674",
        "ttttttt-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-0001-85cb949c",
    ]
    assert names[:3] == [release_name(type_id, f"{batch_id}-0001"), release_name(type_id, f"{batch_id}-0002"),
                         release_name(long_type, f"{long_batch}-0001")]
    values = f"./localDeviceRegistry/gateway/{long_type}/{long_batch}/{long_batch}-0001.yaml"
    assert helm_arguments(helm_log)[2][-1] == values


def test_two_devices_under_one_release_name_is_an_error(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    monkeypatch.setattr(deployer, "release_name", lambda *names: "one-name")
    assert deviceDeployer.main(["-b", "190523", "-n", "2", "--helmChart", "c", "--helmVersion", "3"]) == 1
    assert capsys.readouterr() == (
        "", "deviceDeployer.py: error: devices 190523-0001 and 190523-0002 would share the Helm release name one-name\n"
    )
    assert written(project) == []


# Errors: one line, exit 1, nothing written


@pytest.mark.parametrize(
    "arguments, breakage, message",
    [
        (["-b", "190524", "-n", "1"], None,
         "no batch 190524 here: localDeviceRegistry/device/iotpsutil/190524 does not exist"),
        (["-b", "190523", "-n", "1", "-c", "Gateway"], None,
         "no batch 190523 here: localDeviceRegistry/gateway/iotpsutil/190523 does not exist"),
        (["-b", "190523", "-n", "4"], None,
         f"{FOLDER} holds only 3 device configs of batch 190523; cannot deploy 4"),
        (["-b", "190523", "-n", "2"], ("identity: [not closed\n", None),
         f"{FOLDER}/190523-0002.yaml: damaged: repair it (not valid YAML (while parsing a flow sequence)"),
        (["-b", "190523", "-n", "2"], (render_device_config("myorg", "iotpsutil", "190523-0002", ""), None),
         f"{FOLDER}/190523-0002.yaml: damaged: repair it (auth.token is missing)"),
        (["-b", "190523", "-n", "2"], (render_device_config("myorg", "iotpsutil", "190523-0009", "t"), None),
         f"{FOLDER}/190523-0002.yaml: holds the config of iotpsutil:190523-0009, not iotpsutil:190523-0002"),
        (["-b", "190523", "-n", "2"], (render_device_config("myorg", "iotoshi", "190523-0002", "t"), None),
         f"{FOLDER}/190523-0002.yaml: holds the config of iotoshi:190523-0002, not iotpsutil:190523-0002"),
    ],
)
def test_errors_are_one_line_and_write_nothing(project, arguments, breakage, message):
    if breakage:
        (project / FOLDER / "190523-0002.yaml").write_text(breakage[0])
    result = run_deployer(project, *arguments, "--helmChart", "wiotp/psutil", "--helmVersion", "3")
    assert (result.returncode, result.stdout) == (1, "")
    if message.endswith("(while parsing a flow sequence)"):  # the rest of the line is PyYAML's
        assert result.stderr.startswith(f"deviceDeployer.py: error: {message[:-1]}")
        assert result.stderr.count("\n") == 1
    else:
        assert result.stderr == f"deviceDeployer.py: error: {message}\n"
    assert written(project) == []


def test_an_empty_batch_folder(project):
    (project / "localDeviceRegistry/device/iotpsutil/190600").mkdir()
    result = run_deployer(project, "-b", "190600", "-n", "1", "--helmChart", "c", "--helmVersion", "3")
    assert (result.returncode, result.stderr) == (
        1, "deviceDeployer.py: error: localDeviceRegistry/device/iotpsutil/190600 holds no device configs of"
        " batch 190600; cannot deploy 1\n")


def test_a_config_with_no_identity_is_named(project):
    (project / FOLDER / "190523-0003.yaml").write_text("auth:\n  token: t\n")
    result = run_deployer(project, "-b", "190523", "-n", "3", "--helmChart", "c", "--helmVersion", "3")
    assert (result.returncode, result.stderr) == (
        1, f"deviceDeployer.py: error: {FOLDER}/190523-0003.yaml: damaged: repair it (has no identity section)\n")
    assert written(project) == []


def test_a_hand_edited_config_is_read_as_yaml(project):
    (project / FOLDER / "190523-0003.yaml").write_text(
        "identity: {orgId: myorg, typeId: iotpsutil, deviceId: '190523-0003'}\nauth: {token: t}\n"
    )
    result = run_deployer(project, "-b", "190523", "-n", "3", "--helmChart", "c", "--helmVersion", "3")
    assert (result.returncode, result.stderr) == (0, "")


def test_an_unwritable_bin_is_one_line(project, monkeypatch, capsys):
    (project / "bin").write_text("a file where the folder should be\n")
    monkeypatch.chdir(project)
    assert deviceDeployer.main(["-b", "190523", "-n", "1", "--helmChart", "c", "--helmVersion", "3"]) == 1
    assert capsys.readouterr().err == "deviceDeployer.py: error: cannot write into bin: it is not a folder\n"


# --parallel


def max_overlap(calls):
    events = sorted([(start, 1) for start, _, _ in calls] + [(end, -1) for _, end, _ in calls])
    running = highest = 0
    for _, change in events:
        running += change
        highest = max(highest, running)
    return highest


@pytest.mark.parametrize("parallel", [2, 3])
def test_parallel_runs_up_to_n_at_once_and_reports_each_release(tmp_path, env, helm_log, parallel, fake_platform):
    project = tmp_path / "factory floor"
    register_for_real(project, 8, fake_platform)
    result = run_deployer(project, "-b", "190523", "-n", "8", "--helmChart", "wiotp/psutil",
                          "--helmCmd", str(STANDIN_HELM), "--helmVersion", "3", "--parallel", str(parallel))
    assert result.stdout == report(3, "from --helmVersion", count=8,
                                   pace=f"up to {parallel} helm commands at a time; needs bash 4.3 or later")
    releases = [f"iotpsutil-190523-000{n}" for n in range(1, 9)]
    script_lines = (project / DEPLOY).read_text().splitlines()
    assert [line.split()[1] for line in script_lines if line.startswith("run ")] == releases

    env["HELM_STANDIN_SLEEP"] = "0.25"
    env["TMPDIR"] = str(tmp_path)
    env["HELM_STANDIN_FAIL"] = "iotpsutil-190523-0003 iotpsutil-190523-0006"
    deployed = run_script(project, DEPLOY, env, tmp_path)
    assert deployed.returncode == 1
    calls = helm_calls(helm_log)
    assert sorted(arguments for _, _, arguments in calls) == [upgrade(n) for n in range(1, 9)]
    assert 1 < max_overlap(calls) <= parallel

    progress = [line for line in deployed.stdout.splitlines() if line.startswith("[")]
    assert [line.split()[0] for line in progress] == [f"[{k}/8]" for k in range(1, 9)]
    assert sorted(line.split(maxsplit=1)[1] for line in progress) == [
        f"{release} {'failed' if release.endswith(('3', '6')) else 'ok'}" for release in releases
    ]
    lines = deployed.stdout.splitlines()
    for release in releases:  # each release's helm output comes just before its progress line
        if not release.endswith(("3", "6")):
            said = lines.index(f'Release "{release}" has been upgraded. Happy Helming!')
            assert lines[said + 1].endswith(f"] {release} ok")
    failed = sorted(["iotpsutil-190523-0003", "iotpsutil-190523-0006"])
    assert sorted(deployed.stderr.splitlines()[:2]) == [
        f"Error: stand-in helm fails {release} on request" for release in failed]
    summary = deployed.stderr.splitlines()[2:]
    assert summary[0] == "deploy-device-iotpsutil-190523.bat: 2 of 8 release(s) failed:"
    assert sorted(summary[1:]) == [f"  {release}" for release in failed]
    assert not list(tmp_path.glob("deploy-device-iotpsutil-190523.*"))  # its temporary folder is gone


def test_parallel_recall_with_helm2(project, env, helm_log, tmp_path):
    assert run_deployer(project, "-b", "190523", "-n", "3", "--helmChart", "wiotp/psutil",
                        "--helmCmd", str(STANDIN_HELM), "--helmVersion", "2", "--parallel", "4").returncode == 0
    env["TMPDIR"] = str(tmp_path)
    recalled = run_script(project, RECALL, env, tmp_path)
    assert (recalled.returncode, recalled.stderr) == (0, "")
    assert sorted(helm_arguments(helm_log)) == [["delete", "--purge", f"iotpsutil-190523-000{n}"] for n in (1, 2, 3)]
    progress = [line for line in recalled.stdout.splitlines() if line.startswith("[")]
    assert [line.split()[0] for line in progress] == ["[1/3]", "[2/3]", "[3/3]"]
    assert sorted(line.split(maxsplit=1)[1] for line in progress) == [f"iotpsutil-190523-000{n} ok" for n in (1, 2, 3)]
    assert not list(tmp_path.glob("recall-device-iotpsutil-190523.*"))


def test_a_stopped_parallel_run_finishes_the_running_releases(tmp_path, env, helm_log):
    project = tmp_path / "project"
    register(project, range(1, 7))
    assert run_deployer(project, "-b", "190523", "-n", "6", "--helmChart", "wiotp/psutil",
                        "--helmCmd", str(STANDIN_HELM), "--helmVersion", "3", "--parallel", "2").returncode == 0
    started = tmp_path / "started"
    started.mkdir()
    env.update(HELM_STANDIN_SLEEP="1", HELM_STANDIN_STARTED=str(started))
    script = subprocess.Popen(["bash", str(project / DEPLOY)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while len(list(started.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    script.send_signal(signal.SIGTERM)  # as Ctrl-C would, but only to the script's own shell
    stdout, stderr = script.communicate(timeout=20)
    assert script.returncode == 130
    assert sorted(helm_arguments(helm_log)) == [upgrade(1), upgrade(2)]
    progress = [line for line in stdout.splitlines() if line.startswith("[")]
    assert [line.split()[0] for line in progress] == ["[1/6]", "[2/6]"]
    assert sorted(line.split(maxsplit=1)[1] for line in progress) == [
        "iotpsutil-190523-0001 ok", "iotpsutil-190523-0002 ok"]
    assert stderr == "deploy-device-iotpsutil-190523.bat: interrupted: 4 release(s) were not started\n"


# bin/ and the scripts: not writable by others, never through a link


def deploy_args(*more):
    return ["-b", "190523", "-n", "3", "--helmChart", "wiotp/psutil", "--helmVersion", "3", *more]


def test_bin_is_made_0755_at_most_and_scripts_0755(project, monkeypatch):
    monkeypatch.chdir(project)
    old_umask = os.umask(0)
    try:
        assert deviceDeployer.main(deploy_args()) == 0
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((project / "bin").stat().st_mode) == 0o755
    assert {stat.S_IMODE((project / script).stat().st_mode) for script in (DEPLOY, RECALL)} == {0o755}
    assert not [name for name in os.listdir(project / "bin") if name.endswith(".tmp")]


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o777])
def test_a_bin_others_can_write_is_refused(project, monkeypatch, capsys, mode):
    (project / "bin").mkdir()
    (project / "bin").chmod(mode)
    monkeypatch.chdir(project)
    assert deviceDeployer.main(deploy_args()) == 1
    assert capsys.readouterr().err == (
        f"deviceDeployer.py: error: refusing to write into bin: group or others can write it (mode {mode:04o});"
        " fix: chmod go-w bin\n")
    assert written(project) == []


def test_a_bin_that_is_a_link_is_refused(project, tmp_path, monkeypatch, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (project / "bin").symlink_to(elsewhere)
    monkeypatch.chdir(project)
    assert deviceDeployer.main(deploy_args()) == 1
    assert capsys.readouterr().err == (
        "deviceDeployer.py: error: refusing to write into bin: it is a symbolic link, not a folder\n")
    assert list(elsewhere.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_bin_of_another_user_is_refused(project, monkeypatch, capsys):
    (project / "bin").mkdir()
    os.chown(project / "bin", 4242, -1)  # the batch folder stays ours: only bin/ is another user's
    monkeypatch.chdir(project)
    assert deviceDeployer.main(deploy_args()) == 1
    assert capsys.readouterr().err == (
        "deviceDeployer.py: error: refusing to write into bin: it is owned by uid 4242, not by you (uid 0)\n")


def test_a_link_where_a_script_goes_is_replaced_not_followed(project, tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    (project / "bin").mkdir()
    (project / DEPLOY).symlink_to(victim)
    monkeypatch.chdir(project)
    assert deviceDeployer.main(deploy_args()) == 0
    assert victim.read_text() == "keep me\n"
    assert not (project / DEPLOY).is_symlink()
    assert "helm upgrade iotpsutil-190523-0001" in (project / DEPLOY).read_text()


# The chart: a path must exist and be a chart


@pytest.mark.parametrize("chart, complaint", [
    ("./helm/nope", "no chart folder or archive ./helm/nope here (a path is taken from the project folder)"),
    ("../nope", "no chart folder or archive ../nope here (a path is taken from the project folder)"),
    ("/no/such/chart", "no chart folder or archive /no/such/chart here (a path is taken from the project folder)"),
    ("~/charts/psutil", "'~/charts/psutil': the scripts do not expand '~'; give the chart's path without it"),
    ("/etc", "/etc is a folder but no chart: it has no Chart.yaml"),
    ("/etc/hostname", "/etc/hostname is a file but no chart archive (.tgz)"),
])
def test_a_local_chart_that_does_not_exist_is_refused(project, chart, complaint):
    result = run_deployer(project, "-b", "190523", "-n", "1", "--helmChart", chart, "--helmVersion", "3")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("usage: deviceDeployer.py ")
    assert result.stderr.endswith(f"deviceDeployer.py: error: argument --helmChart: {complaint}\n")
    assert written(project) == []


@pytest.mark.parametrize("chart", ["wiotp/psutil", "psutil", "./charts/psutil", "charts/psutil", str(ROOT / "helm/psutil")])
def test_repository_charts_and_existing_paths_are_taken(project, chart):
    (project / "charts" / "psutil").mkdir(parents=True)
    (project / "charts" / "psutil" / "Chart.yaml").write_text("apiVersion: v2\nname: psutil\nversion: 1.0.0\n")
    result = run_deployer(project, "-b", "190523", "-n", "1", "--helmChart", chart, "--helmVersion", "3")
    assert (result.returncode, result.stderr) == (0, "")


# The helm command, checked once


@pytest.mark.parametrize("parallel", ["1", "3"])
@pytest.mark.parametrize("script", [DEPLOY, RECALL])
def test_a_missing_helm_stops_the_script_with_one_line(project, env, tmp_path, parallel, script):
    assert run_deployer(project, "-b", "190523", "-n", "3", "--helmChart", "c", "--helmCmd", "no-such-helm",
                        "--helmVersion", "3", "--parallel", parallel).returncode == 0
    ran = run_script(project, script, env, tmp_path)
    assert (ran.returncode, ran.stdout) == (2, "")
    assert ran.stderr == (f"{Path(script).name}: cannot find the helm command 'no-such-helm': install Helm, or write"
                          " the scripts again with deviceDeployer.py --helmCmd\n")


# Ctrl-C and kill: no further release starts


def start_script(project, script, env, started):
    """Start a generated script in a process group of its own (as a terminal runs a command); return it once its
    first helm call is running."""
    env.update(HELM_STANDIN_SLEEP="5", HELM_STANDIN_STARTED=str(started))
    running = subprocess.Popen(["bash", str(project / script)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 10
    while not list(started.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # the helm call is sleeping now
    return running


@pytest.mark.parametrize("cancel", [True, False], ids=["helm catches it", "helm dies of it"])
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_process_group_stops_a_sequential_script(project, env, helm_log, tmp_path, signal_number,
                                                                 cancel):
    assert run_deployer(project, *deploy_args("--helmCmd", str(STANDIN_HELM))).returncode == 0
    if cancel:
        env["HELM_STANDIN_CANCEL"] = "1"
    started = tmp_path / "started"
    started.mkdir()
    script = start_script(project, DEPLOY, env, started)
    os.killpg(script.pid, signal_number)  # as Ctrl-C signals a terminal's foreground process group
    stdout, stderr = script.communicate(timeout=20)
    assert script.returncode == 130
    assert len(list(started.iterdir())) == 1  # no further release was started
    lines = stderr.splitlines()
    if cancel:
        assert lines[0] == "Error: upgrade iotpsutil-190523-0001: context canceled: cancelling"
        assert helm_arguments(helm_log) == [upgrade(1)]
    assert lines[-1] == ("deploy-device-iotpsutil-190523.bat: interrupted while iotpsutil-190523-0001 was running;"
                         " no further release was started")
    assert "failed" not in stderr and stdout == ""


def test_a_kill_of_the_script_alone_lets_the_running_release_finish(project, env, helm_log, tmp_path):
    assert run_deployer(project, *deploy_args("--helmCmd", str(STANDIN_HELM))).returncode == 0
    env["HELM_STANDIN_FAIL"] = "iotpsutil-190523-0001"
    started = tmp_path / "started"
    started.mkdir()
    script = start_script(project, DEPLOY, env, started)
    script.send_signal(signal.SIGTERM)
    stdout, stderr = script.communicate(timeout=20)
    assert script.returncode == 130
    assert helm_arguments(helm_log) == [upgrade(1)]
    assert stderr == (
        "Error: stand-in helm fails iotpsutil-190523-0001 on request\n"
        "deploy-device-iotpsutil-190523.bat: interrupted while iotpsutil-190523-0001 was running;"
        " no further release was started\n")


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_process_group_stops_a_parallel_script(tmp_path, env, helm_log, signal_number):
    project = tmp_path / "project"
    register(project, range(1, 7))
    assert run_deployer(project, "-b", "190523", "-n", "6", "--helmChart", "wiotp/psutil", "--helmCmd",
                        str(STANDIN_HELM), "--helmVersion", "3", "--parallel", "2").returncode == 0
    env.update(HELM_STANDIN_CANCEL="1", TMPDIR=str(tmp_path))
    started = tmp_path / "started"
    started.mkdir()
    script = start_script(project, DEPLOY, env, started)
    deadline = time.monotonic() + 10
    while len(list(started.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(script.pid, signal_number)
    stdout, stderr = script.communicate(timeout=20)
    assert script.returncode == 130
    assert len(list(started.iterdir())) == 2
    progress = sorted(line.split(maxsplit=1)[1] for line in stdout.splitlines() if line.startswith("["))
    # The running helm calls got the signal too (the script's jobs do not ignore SIGINT) and cancelled.
    assert progress == [f"iotpsutil-190523-000{n} failed" for n in (1, 2)]
    assert stderr.splitlines()[-1] == "deploy-device-iotpsutil-190523.bat: interrupted: 4 release(s) were not started"


# Batches whose names would meet


def deploy_batch(project, type_id, batch_id, class_id="Device", count=2, *more):
    result = run_deployer(project, "-b", batch_id, "-n", str(count), "-t", type_id, "-c", class_id,
                          "--helmChart", "c", "--helmCmd", str(STANDIN_HELM), "--helmVersion", "3", *more)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout.splitlines()[1].split()[1]  # "Wrote <deploy script> and ..."


def names_in(project, script, env, tmp_path, helm_log):
    for record in helm_log.iterdir():
        record.unlink()
    assert run_script(project, script, env, tmp_path).returncode == 0
    return [arguments[1] for arguments in helm_arguments(helm_log)]


def test_two_colliding_batches_get_their_own_scripts_and_releases(tmp_path, env, helm_log):
    project = tmp_path / "project"
    register(project, [1, 2], type_id="sensor", batch_id="eu-1")
    register(project, [1, 2], type_id="sensor-eu", batch_id="1")
    first = deploy_batch(project, "sensor", "eu-1")
    second = deploy_batch(project, "sensor-eu", "1")
    mine = batchnames.name_suffix(Batch("Device", "sensor", "eu-1"))
    theirs = batchnames.name_suffix(Batch("Device", "sensor-eu", "1"))
    assert mine != theirs and re.fullmatch(r"-[0-9a-f]{8}", mine)
    assert (first, second) == (f"bin/deploy-device-sensor-eu-1{mine}.bat", f"bin/deploy-device-sensor-eu-1{theirs}.bat")
    assert names_in(project, first, env, tmp_path, helm_log) == [f"sensor-eu-1-000{n}{mine}" for n in (1, 2)]
    assert names_in(project, second, env, tmp_path, helm_log) == [f"sensor-eu-1-000{n}{theirs}" for n in (1, 2)]
    recall = first.replace("deploy-", "recall-")
    assert names_in(project, recall, env, tmp_path, helm_log) == [f"sensor-eu-1-000{n}{mine}" for n in (1, 2)]
    # The same names whichever is deployed first, and on every run.
    assert deploy_batch(project, "sensor-eu", "1") == second and deploy_batch(project, "sensor", "eu-1") == first


def test_a_batch_deployed_alone_keeps_its_names_when_a_colliding_one_comes_later(tmp_path, env, helm_log):
    project = tmp_path / "project"
    register(project, [1, 2], type_id="sensor", batch_id="eu-1")
    assert deploy_batch(project, "sensor", "eu-1") == "bin/deploy-device-sensor-eu-1.bat"
    assert "original" in (project / "localDeviceRegistry/device/sensor/eu-1/release-names").read_text()
    register(project, [1, 2], type_id="sensor-eu", batch_id="1")
    theirs = batchnames.name_suffix(Batch("Device", "sensor-eu", "1"))
    assert deploy_batch(project, "sensor-eu", "1") == f"bin/deploy-device-sensor-eu-1{theirs}.bat"
    assert deploy_batch(project, "sensor", "eu-1") == "bin/deploy-device-sensor-eu-1.bat"
    assert names_in(project, "bin/deploy-device-sensor-eu-1.bat", env, tmp_path, helm_log) == [
        "sensor-eu-1-0001", "sensor-eu-1-0002"]
    assert names_in(project, f"bin/deploy-device-sensor-eu-1{theirs}.bat", env, tmp_path, helm_log) == [
        f"sensor-eu-1-0001{theirs}", f"sensor-eu-1-0002{theirs}"]


def test_device_and_gateway_batches_of_one_type_and_batch_get_their_own_releases(tmp_path, env, helm_log):
    project = tmp_path / "project"
    register(project, [1], class_id="Device")
    register(project, [1], class_id="Gateway")
    device = deploy_batch(project, "iotpsutil", "190523", "Device", 1)
    gateway = deploy_batch(project, "iotpsutil", "190523", "Gateway", 1)
    names = names_in(project, device, env, tmp_path, helm_log) + names_in(project, gateway, env, tmp_path, helm_log)
    assert names == [f"iotpsutil-190523-0001{batchnames.name_suffix(Batch(c, 'iotpsutil', '190523'))}"
                     for c in ("Device", "Gateway")]


def test_fleet_names_are_in_the_collision_check(tmp_path):
    project = tmp_path / "project"
    register(project, [1], batch_id="19")
    register(project, [1000], batch_id="19-fleet")  # device 19-fleet-1000 reads like fleet release 1000 of 19
    assert deploy_batch(project, "iotpsutil", "19", "Device", 1, "--fleet").endswith(
        f"{batchnames.name_suffix(Batch('Device', 'iotpsutil', '19'))}.bat")


def test_original_scripts_that_no_batch_records_are_refused(tmp_path):
    project = tmp_path / "project"
    register(project, [1], type_id="sensor", batch_id="eu-1")
    register(project, [1], type_id="sensor-eu", batch_id="1")
    (project / "bin").mkdir()
    (project / "bin/deploy-device-sensor-eu-1.bat").write_text("# written before names were recorded\n")
    result = run_deployer(project, "-b", "1", "-n", "1", "-t", "sensor-eu", "--helmChart", "c", "--helmVersion", "3")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "deviceDeployer.py: error: bin/deploy-device-sensor-eu-1.bat uses the release names that batches 1 (classId"
        " Device, typeId sensor-eu) and eu-1 (classId Device, typeId sensor) would share, and no batch records it as"
        " its own: recall its releases with bin/recall-device-sensor-eu-1.bat if they are deployed, delete both"
        " scripts, and run again\n")
    assert not (project / "localDeviceRegistry/device/sensor-eu/1/release-names").exists()


# Fleet mode


def fleet_upgrade(n, folder=FOLDER, chart="wiotp/psutil", name=None):
    name = name or f"iotpsutil-190523-fleet-{n}"
    return ["upgrade", name, chart, "-i", "--values", f"./{folder}/fleet/{name}.yaml"]


def fleet_values(project, n):
    path = project / FOLDER / "fleet" / f"iotpsutil-190523-fleet-{n}.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return yaml.safe_load(path.read_text())


def write_fleet(project, count, *more, helm_version="3"):
    result = run_deployer(project, "-b", "190523", "-n", str(count), "--helmChart", "wiotp/psutil",
                          "--helmCmd", str(STANDIN_HELM), "--helmVersion", helm_version, "--fleet", *more)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result


@pytest.mark.parametrize("count, size, expected", [
    (4, "4", [[1, 2, 3, 4]]),
    (5, "4", [[1, 2, 3, 4], [5]]),
    (8, "4", [[1, 2, 3, 4], [5, 6, 7, 8]]),
    (9, "4", [[1, 2, 3, 4], [5, 6, 7, 8], [9]]),
    (3, "1", [[1], [2], [3]]),
])
def test_fleet_releases_hold_up_to_k_devices_in_device_order(tmp_path, env, helm_log, count, size, expected):
    project = tmp_path / "project"
    register(project, range(1, count + 1))
    result = write_fleet(project, count, "--fleetSize", size)
    assert result.stdout.splitlines()[1] == (
        f"Wrote {DEPLOY} and {RECALL} for {count} devices in {len(expected)} fleet release"
        f"{'s' if len(expected) > 1 else ''} of up to {size} (one helm command at a time)")
    assert run_script(project, DEPLOY, env, tmp_path).returncode == 0
    assert helm_arguments(helm_log) == [fleet_upgrade(n) for n in range(1, len(expected) + 1)]
    for n, numbers in enumerate(expected, start=1):
        assert fleet_values(project, n) == {
            "identity": {"orgId": "myorg", "typeId": "iotpsutil"},
            "devices": [{"deviceId": device_id("190523", k), "token": token(device_id("190523", k))} for k in numbers],
        }
    assert stat.S_IMODE((project / FOLDER / "fleet").stat().st_mode) == 0o700


def test_fleet_values_match_the_device_configs_with_gaps_and_any_token(tmp_path, env, helm_log):
    project = tmp_path / "project"
    folder = register(project, [1, 2, 5, 10, 11])
    odd_token = 'a"b\\c: #d\n\'e\u00e9'
    write_device_config(folder, "myorg", "iotpsutil", "190523-0005", odd_token)
    write_fleet(project, 4, "--fleetSize", "2")
    configs = [yaml.safe_load((folder / f"{device_id('190523', k)}.yaml").read_text()) for k in (1, 2, 5, 10)]
    listed = fleet_values(project, 1)["devices"] + fleet_values(project, 2)["devices"]
    assert listed == [{"deviceId": c["identity"]["deviceId"], "token": c["auth"]["token"]} for c in configs]
    assert listed[2]["token"] == odd_token
    assert not (project / FOLDER / "fleet" / "iotpsutil-190523-fleet-3.yaml").exists()
    assert run_script(project, DEPLOY, env, tmp_path).returncode == 0
    assert helm_arguments(helm_log) == [fleet_upgrade(1), fleet_upgrade(2)]


def test_fleet_default_size_is_1000(tmp_path):
    project = tmp_path / "project"
    register(project, range(1, 1002))
    write_fleet(project, 1001)
    assert len(fleet_values(project, 1)["devices"]) == 1000
    assert fleet_values(project, 2)["devices"] == [{"deviceId": "190523-1001", "token": token("190523-1001")}]


@pytest.mark.parametrize("helm_version, recall", [("2", ["delete", "--purge"]), ("3", ["uninstall"])])
@pytest.mark.parametrize("parallel", ["1", "2"])
def test_fleet_scripts_with_helm_2_and_3_in_parallel_or_not(tmp_path, env, helm_log, helm_version, recall, parallel):
    project = tmp_path / "project"
    register(project, range(1, 6))
    write_fleet(project, 5, "--fleetSize", "2", "--parallel", parallel, helm_version=helm_version)
    env["TMPDIR"] = str(tmp_path)
    assert run_script(project, DEPLOY, env, tmp_path).returncode == 0
    assert sorted(helm_arguments(helm_log)) == [fleet_upgrade(n) for n in (1, 2, 3)]
    for record in helm_log.iterdir():
        record.unlink()
    assert run_script(project, RECALL, env, tmp_path).returncode == 0
    assert sorted(helm_arguments(helm_log)) == [[*recall, f"iotpsutil-190523-fleet-{n}"] for n in (1, 2, 3)]


def test_fleet_files_no_longer_used_are_removed_with_a_warning(tmp_path):
    project = tmp_path / "project"
    register(project, range(1, 6))
    write_fleet(project, 5, "--fleetSize", "2")
    result = run_deployer(project, "-b", "190523", "-n", "3", "--helmChart", "c", "--helmVersion", "3", "--fleet",
                          "--fleetSize", "2", "--replaceRecall")
    assert result.returncode == 0
    assert result.stderr == (
        "deviceDeployer.py: warning: removed the values files of fleet releases this batch no longer has:"
        " iotpsutil-190523-fleet-3; if they are deployed, recall them with helm uninstall (Helm 2: helm delete"
        " --purge)\n")
    assert sorted(os.listdir(project / FOLDER / "fleet")) == [
        "iotpsutil-190523-fleet-1.yaml", "iotpsutil-190523-fleet-2.yaml"]


def test_a_fleet_folder_others_can_read_is_refused(tmp_path):
    project = tmp_path / "project"
    register(project, [1])
    (project / FOLDER / "fleet").mkdir(mode=0o755)
    (project / FOLDER / "fleet").chmod(0o755)
    result = run_deployer(project, "-b", "190523", "-n", "1", "--helmChart", "c", "--helmVersion", "3", "--fleet")
    assert result.returncode == 1
    assert result.stderr == (
        f"deviceDeployer.py: error: refusing to write into {FOLDER}/fleet: group or others can read or write it"
        f" (mode 0755); fix: chmod go-rwx {FOLDER}/fleet\n")
    assert written(project) == []


def test_fleet_size_needs_fleet(project):
    result = run_deployer(project, "-b", "190523", "-n", "1", "--helmChart", "c", "--fleetSize", "10")
    assert result.returncode == 2 and "deviceDeployer.py: error: argument --fleetSize: needs --fleet" in result.stderr


# Options and the MQTT CA file


def write_config_with_options(folder, number, options, org_id="myorg"):
    device = f"190523-{number:04d}"
    config = {"identity": {"orgId": org_id, "typeId": "iotpsutil", "deviceId": device},
              "auth": {"token": token(device)}, "options": options}
    (folder / f"{device}.yaml").write_text(yaml.safe_dump(config))


def test_a_ca_file_is_passed_with_set_file_per_device_and_per_fleet(tmp_path, env, helm_log):
    project = tmp_path / "project"
    folder = register(project, [1, 2, 3])
    (project / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (project / "other ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    options = {"domain": "example.com", "mqtt": {"port": 8883, "caFile": "ca.pem"}}
    for number in (1, 2):
        write_config_with_options(folder, number, options)
    write_config_with_options(folder, 3, {"mqtt": {"caFile": "other ca.pem"}})
    assert run_deployer(project, "-b", "190523", "-n", "3", "--helmChart", "wiotp/psutil", "--helmCmd",
                        str(STANDIN_HELM), "--helmVersion", "3").returncode == 0
    assert run_script(project, DEPLOY, env, tmp_path).returncode == 0
    assert helm_arguments(helm_log) == [
        [*upgrade(1), "--set-file", "mqttCaCert=ca.pem"], [*upgrade(2), "--set-file", "mqttCaCert=ca.pem"],
        [*upgrade(3), "--set-file", "mqttCaCert=other ca.pem"]]
    assert "--values ./localDeviceRegistry/device/iotpsutil/190523/190523-0003.yaml --set-file 'mqttCaCert=other ca.pem'" \
        in (project / DEPLOY).read_text()

    refused = run_deployer(project, "-b", "190523", "-n", "3", "--helmChart", "c", "--helmVersion", "3", "--fleet")
    assert (refused.returncode, refused.stderr) == (1, (
        "deviceDeployer.py: error: devices 190523-0001 and 190523-0003 have different options; the devices of a fleet"
        " release share one: deploy this batch without --fleet\n"))

    for record in helm_log.iterdir():
        record.unlink()
    write_fleet(project, 2, "--replaceRecall")
    assert run_script(project, DEPLOY, env, tmp_path).returncode == 0
    assert helm_arguments(helm_log) == [[*fleet_upgrade(1), "--set-file", "mqttCaCert=ca.pem"]]
    assert fleet_values(project, 1)["options"] == options


def test_a_missing_ca_file_or_another_org_is_one_line(tmp_path):
    project = tmp_path / "project"
    folder = register(project, [1, 2])
    write_config_with_options(folder, 2, {"mqtt": {"caFile": "/no/such/ca.pem"}})
    result = run_deployer(project, "-b", "190523", "-n", "2", "--helmChart", "c", "--helmVersion", "3")
    assert (result.returncode, result.stderr) == (
        1, "deviceDeployer.py: error: device 190523-0002: options.mqtt.caFile /no/such/ca.pem does not exist\n")
    write_config_with_options(folder, 2, {}, org_id="otherorg")
    result = run_deployer(project, "-b", "190523", "-n", "2", "--helmChart", "c", "--helmVersion", "3", "--fleet")
    assert (result.returncode, result.stderr) == (1, (
        "deviceDeployer.py: error: devices 190523-0001 and 190523-0002 have different identity.orgId; the devices of"
        " a fleet release share one: deploy this batch without --fleet\n"))
    assert written(project) == []


# A recall script is not replaced while it recalls releases the new one would not


def deploy_command(*more):
    return ["-b", "190523", "--helmChart", "wiotp/psutil", "--helmCmd", str(STANDIN_HELM), "--helmVersion", "3", *more]


def test_a_recall_script_for_releases_the_new_one_leaves_out_is_kept_unless_told(tmp_path, env, helm_log):
    project = tmp_path / "project"
    register(project, range(1, 6))
    write_fleet(project, 5, "--fleetSize", "2")
    fleet_recall = (project / RECALL).read_text()
    assert run_deployer(project, *deploy_command("-n", "5", "--fleet", "--fleetSize", "2")).returncode == 0  # the same

    per_device = run_deployer(project, *deploy_command("-n", "5"))
    assert (per_device.returncode, per_device.stdout) == (1, "")
    assert per_device.stderr == (
        f"deviceDeployer.py: error: {RECALL} recalls 3 releases the new script would not (iotpsutil-190523-fleet-1,"
        f" iotpsutil-190523-fleet-2, iotpsutil-190523-fleet-3): if they are deployed, recall them first with bash"
        f" {RECALL}; to write the scripts anyway, run again with --replaceRecall\n")
    assert (project / RECALL).read_text() == fleet_recall

    assert run_script(project, RECALL, env, tmp_path).returncode == 0  # what the message says to do first
    assert run_deployer(project, *deploy_command("-n", "5", "--replaceRecall")).returncode == 0
    fewer = run_deployer(project, *deploy_command("-n", "3", "--parallel", "2"))
    assert fewer.returncode == 1 and "recalls 2 releases the new script would not (iotpsutil-190523-0004," \
        " iotpsutil-190523-0005)" in fewer.stderr
    assert run_deployer(project, *deploy_command("-n", "5", "--parallel", "2")).returncode == 0
    more = run_deployer(project, *deploy_command("-n", "3", "--replaceRecall"))
    assert more.returncode == 0
    assert [line.split()[-1] for line in (project / RECALL).read_text().splitlines()
            if " uninstall " in line and not line.startswith("#")] == [
        release_name("iotpsutil", device_id("190523", n)) for n in (1, 2, 3)]
