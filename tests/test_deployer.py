"""deviceDeployer.py, the command: its flags, which Helm syntax it writes, what it refuses (one line, exit 1 or 2,
nothing written), where it writes, and the recall script it will not replace."""

import os
import re
import stat
import time

import pytest

import deviceDeployer
from conftest import (
    ROOT,
    STANDIN_HELM,
    helm_arguments,
    run_deployer,
)
from deployerhelpers import (
    DEPLOY,
    FOLDER,
    RECALL,
    STANDINS,
    deploy_args,
    device_id,
    register,
    report,
    run_bash,
    write_fleet,
    written,
)
from devicefactory import helmversion
from devicefactory.localregistry import render_device_config
from devicefactory.releasenames import release_name

# The command line


def test_help_explains_every_flag_with_an_example(project):
    result = run_deployer(project, "--help")
    assert result.returncode == 0
    for short, flag in (("-b", "--batchId"), ("-n", "--numberOfDevices"), ("-t", "--typeId"), ("-c", "--classId"),
                        (None, "--helmChart"), (None, "--helmCmd"), (None, "--helmVersion"), (None, "--parallel")):
        assert re.search(rf"^  {short} \S+, {flag} " if short else rf"^  {flag} \S+ ", result.stdout, re.MULTILINE)
    assert "example:\n  python3 deviceDeployer.py --batchId 190523" in result.stdout
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

# bin/ and the scripts: not writable by others, never through a link


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

# A recall script is not replaced while it recalls releases the new one would not


def deploy_command(*more):
    return ["-b", "190523", "--helmChart", "wiotp/psutil", "--helmCmd", str(STANDIN_HELM), "--helmVersion", "3", *more]


@pytest.mark.slow
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

    assert run_bash(project, RECALL, env, tmp_path).returncode == 0  # what the message says to do first
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
