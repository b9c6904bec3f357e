"""The scripts deviceDeployer.py writes, run with bash against the stand-in helm: deploy and recall with Helm 3
and 2, failures, --parallel, a missing helm, Ctrl-C and kill."""

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (
    STANDIN_HELM,
    helm_arguments,
    helm_calls,
    register_for_real,
    run_deployer,
)
from deployerhelpers import (
    DEPLOY,
    RECALL,
    STANDINS,
    deploy_args,
    device_id,
    register,
    report,
    run_bash,
    upgrade,
    written,
)

# Deploy and recall, Helm 3 and 2


@pytest.mark.slow
def test_helm3_scripts_deploy_and_recall_every_device(registered_project, env, helm_log, tmp_path, fake_platform):
    project = registered_project
    result = run_deployer(project, "-b", "190523", "-n", "3", "--helmChart", "wiotp/psutil",
                          "--helmCmd", str(STANDIN_HELM), "--helmVersion", "3")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == report(3, "from --helmVersion")
    assert written(project) == sorted([Path(DEPLOY).name, Path(RECALL).name])
    for script in (DEPLOY, RECALL):
        assert stat.S_IMODE((project / script).stat().st_mode) == 0o755
        assert str(STANDIN_HELM) in (project / script).read_text()

    deployed = run_bash(project, DEPLOY, env, tmp_path)
    assert (deployed.returncode, deployed.stderr) == (0, "")
    assert deployed.stdout == "".join(
        f'Release "iotpsutil-190523-000{n}" has been upgraded. Happy Helming!\n' for n in (1, 2, 3)
    )
    assert helm_arguments(helm_log) == [upgrade(1), upgrade(2), upgrade(3)]

    for record in helm_log.iterdir():
        record.unlink()
    recalled = run_bash(project, RECALL, env, tmp_path)
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

    assert run_bash(project, DEPLOY, env, tmp_path).returncode == 0
    assert run_bash(project, RECALL, env, tmp_path).returncode == 0
    assert helm_arguments(helm_log) == [
        upgrade(1), upgrade(2), ["delete", "--purge", "iotpsutil-190523-0001"],
        ["delete", "--purge", "iotpsutil-190523-0002"],
    ]

# Failures while the scripts run


@pytest.mark.slow
def test_a_failing_release_does_not_hide(project, env, helm_log, tmp_path):
    assert run_deployer(project, "-b", "190523", "-n", "3", "--helmChart", "wiotp/psutil",
                        "--helmCmd", str(STANDIN_HELM), "--helmVersion", "3").returncode == 0
    env["HELM_STANDIN_FAIL"] = "iotpsutil-190523-0002"
    deployed = run_bash(project, DEPLOY, env, tmp_path)
    assert deployed.returncode == 1
    assert helm_arguments(helm_log) == [upgrade(1), upgrade(2), upgrade(3)]
    assert deployed.stderr == (
        "Error: stand-in helm fails iotpsutil-190523-0002 on request\n"
        "deploy-device-iotpsutil-190523.bat: iotpsutil-190523-0002 failed (exit status 1)\n"
        "deploy-device-iotpsutil-190523.bat: 1 release(s) failed:\n"
        "  iotpsutil-190523-0002\n"
    )
    recalled = run_bash(project, RECALL, env, tmp_path)
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
    assert run_bash(project, DEPLOY, env, tmp_path).returncode == 0
    assert helm_arguments(helm_log) == [upgrade(1, chart), upgrade(2, chart)]

# --parallel


def max_overlap(calls):
    events = sorted([(start, 1) for start, _, _ in calls] + [(end, -1) for _, end, _ in calls])
    running = highest = 0
    for _, change in events:
        running += change
        highest = max(highest, running)
    return highest


@pytest.mark.slow
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
    deployed = run_bash(project, DEPLOY, env, tmp_path)
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
    recalled = run_bash(project, RECALL, env, tmp_path)
    assert (recalled.returncode, recalled.stderr) == (0, "")
    assert sorted(helm_arguments(helm_log)) == [["delete", "--purge", f"iotpsutil-190523-000{n}"] for n in (1, 2, 3)]
    progress = [line for line in recalled.stdout.splitlines() if line.startswith("[")]
    assert [line.split()[0] for line in progress] == ["[1/3]", "[2/3]", "[3/3]"]
    assert sorted(line.split(maxsplit=1)[1] for line in progress) == [f"iotpsutil-190523-000{n} ok" for n in (1, 2, 3)]
    assert not list(tmp_path.glob("recall-device-iotpsutil-190523.*"))


@pytest.mark.slow
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

# The helm command, checked once


@pytest.mark.parametrize("parallel", ["1", "3"])
@pytest.mark.parametrize("script", [DEPLOY, RECALL])
def test_a_missing_helm_stops_the_script_with_one_line(project, env, tmp_path, parallel, script):
    assert run_deployer(project, "-b", "190523", "-n", "3", "--helmChart", "c", "--helmCmd", "no-such-helm",
                        "--helmVersion", "3", "--parallel", parallel).returncode == 0
    ran = run_bash(project, script, env, tmp_path)
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
