"""Custody of the only copy: a config is written over or deleted only on its own platform's word.

Two local fake platforms of different organisations over real HTTPS, configs copied into the wrong folder,
mistyped types, damaged configs, case-only clashes, the registry kept outside the project, and the rough edges.
"""

import fcntl
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (
    STANDIN_HELM,
    clean_environment,
    helm_arguments,
    read_jsonl,
    run_decommissioner,
    run_deployer,
    run_generated_script,
    run_registrator,
    run_status,
)
from devicefactory.batch import Batch
from devicefactory.batchrun import describe_os_error
from devicefactory.custody import ABSENT, DAMAGED, ELSEWHERE, FOREIGN, OURS, Custody, Home
from devicefactory.fakeplatform import FakePlatform
from devicefactory.localregistry import LocalRegistry, render_device_config, write_device_config
from devicefactory.platform import DEFAULT_DOMAIN

ROOT = Path(__file__).resolve().parent.parent
FOLDER = "localDeviceRegistry/device/iotpsutil/19"
OTHER = "localDeviceRegistry/device/iotpsutil/20"


@pytest.fixture
def staging(tmp_path):
    """A second platform: another organisation, with its own API key, CA and devices."""
    with FakePlatform(org_id="stagingorg", state_dir=tmp_path / "staging") as fake:
        yield fake


def register(workdir, fake, batch, count, *extra):
    result = run_registrator(workdir, "-b", batch, "-n", str(count), *extra, fake=fake)
    assert result.returncode == 0, result.stderr
    return result


def snapshot(folder):
    """{name: bytes} of every config in a batch folder."""
    return {path.name: path.read_bytes() for path in sorted(Path(folder).glob("*.yaml"))}


def bulk_requests(fake):
    return [r for r in fake.requests if r["path"].startswith("/api/v0002/bulk/")]


# 1. One owner for custody ---------------------------------------------------------------------------------------

def test_custody_judges_each_file_by_what_it_holds_not_by_its_name(tmp_path):
    registry, batch = LocalRegistry(tmp_path), Batch("Device", "iotpsutil", "19")
    folder = registry.batch_folder(batch)
    folder.mkdir(parents=True)
    home = Home("myorg1", DEFAULT_DOMAIN)
    custody = Custody(registry, batch, home)
    write_device_config(folder, "myorg1", "iotpsutil", "19-0001", "Tok3n!one")
    write_device_config(folder, "otherorg", "iotpsutil", "19-0002", "Tok3n!two")
    (folder / "19-0003.yaml").write_text(render_device_config("myorg1", "iotpsutil", "20-0001", "Tok3n!three"))
    (folder / "19-0004.yaml").write_text("identity: [torn")
    (folder / "19-0005.yaml").write_text(render_device_config("myorg1", "iotpsutil", "19-0005", "Tok3n!five",
                                                              domain="iot.example.com"))
    (folder / "19-0006.yaml").symlink_to(folder / "19-0001.yaml")
    (folder / "19-0008.yaml").write_text(render_device_config("otherorg", "iotpsutil", "20-0002", "Tok3n!eight"))
    (folder / "19-0009.yaml").write_text(render_device_config("myorg1", "iotpsutil", "19-0009", "Tok3n!nine",
                                                              domain=DEFAULT_DOMAIN.upper()))

    kinds = {device: custody.judge(device).kind for device in (f"19-{n:04d}" for n in range(1, 10))}

    assert kinds == {"19-0001": OURS, "19-0002": ELSEWHERE, "19-0003": FOREIGN, "19-0004": DAMAGED,
                     "19-0005": ELSEWHERE, "19-0006": FOREIGN, "19-0007": ABSENT, "19-0008": ELSEWHERE,
                     "19-0009": OURS}
    before = snapshot(folder)
    for device in ("19-0002", "19-0003", "19-0004", "19-0005", "19-0006"):
        assert custody.write(device, "N3w!token") is None
        assert custody.delete(device) is False
    assert snapshot(folder) == before  # nothing else was written over or deleted
    assert set(custody.kept) == {"19-0002", "19-0003", "19-0004", "19-0005", "19-0006"}
    assert custody.kept["19-0003"].describe() == (
        f"{folder}/19-0003.yaml: holds the config of another device, iotpsutil:20-0001 of organisation myorg1 at "
        f"{DEFAULT_DOMAIN}")
    assert custody.kept["19-0004"].describe().startswith(f"{folder}/19-0004.yaml: damaged: repair it (not valid YAML")
    assert "Tok3n" not in "".join(verdict.describe() for verdict in custody.kept.values())
    assert custody.delete("19-0001") is True and not (folder / "19-0001.yaml").exists()
    assert custody.write("19-0007", "N3w!token") == folder / "19-0007.yaml"


def test_every_config_write_and_delete_in_the_code_goes_through_custody():
    # The structural half of the rule: only custody.py writes a config, and every unlink, replace or rename in the
    # package is one of these (temporary files, the journal, fleet values files: none of them a config).
    sources = {path.name: path.read_text() for path in (ROOT / "devicefactory").glob("*.py")}
    writers = sorted(name for name, text in sources.items() if "write_device_config(" in text)
    assert writers == ["custody.py", "localregistry.py"]  # the caller, and its definition
    calls = sorted((name, line.strip()) for name, text in sources.items() for line in text.splitlines()
                   if re.search(r"\bos\.(unlink|remove|replace|rename)\(", line))
    assert calls == [
        ("custody.py", "os.unlink(verdict.path)"),
        ("decommission.py", "os.unlink(fleet / name)"),
        ("files.py", "os.replace(temporary, name, src_dir_fd=self.descriptor, dst_dir_fd=self.descriptor)"),
        ("files.py", "os.replace(temporary, path)"),
        ("files.py", "os.unlink(name, dir_fd=self.descriptor)"),
        ("files.py", "os.unlink(temporary)"),
        ("localregistry.py", "os.unlink(folder / name)"),  # stale temporary files only
        ("pendingtokens.py", "os.unlink(self.path)"),
    ]


@pytest.mark.slow
def test_a_config_copied_into_the_wrong_folder_is_kept_by_the_decommissioner(fake_platform, workdir):
    register(workdir, fake_platform, "19", 3)
    register(workdir, fake_platform, "20", 1)
    copy = workdir / FOLDER / "19-0002.yaml"
    shutil.copyfile(workdir / OTHER / "20-0001.yaml", copy)  # a restore into the wrong folder
    os.chmod(copy, 0o600)

    result = run_decommissioner(workdir, "-b", "19", "-n", "3", "--yes", fake=fake_platform)

    assert result.returncode == 3, result.stderr
    assert copy.read_bytes() == (workdir / OTHER / "20-0001.yaml").read_bytes()  # the only copy of 20-0001's token
    assert fake_platform.devices_of("iotpsutil") == ["20-0001"]
    assert "Batch 19 (3 devices of type iotpsutil, class Device): 3 removed, 0 already gone, 0 failed; " \
           "2 local configs deleted." in result.stdout
    assert ("Needs attention: 1 config file kept as they are (a file that is not its device's own config of this "
            "platform is never written over or deleted):") in result.stdout
    assert (f"  {FOLDER}/19-0002.yaml: holds the config of another device, iotpsutil:20-0001 of organisation myorg1 "
            f"at {DEFAULT_DOMAIN}") in result.stdout
    [record] = [r for r in read_jsonl(workdir / FOLDER / "decommission-report.jsonl") if r["deviceId"] == "19-0002"]
    assert record["configKept"].endswith("holds the config of another device, iotpsutil:20-0001 of organisation "
                                         f"myorg1 at {DEFAULT_DOMAIN}")


@pytest.mark.slow
def test_a_config_copied_into_the_wrong_folder_is_not_written_over_by_the_registrator(fake_platform, workdir):
    register(workdir, fake_platform, "19", 2)
    register(workdir, fake_platform, "20", 1)
    copy = workdir / FOLDER / "19-0003.yaml"
    shutil.copyfile(workdir / OTHER / "20-0001.yaml", copy)
    sent = len(bulk_requests(fake_platform))

    result = run_registrator(workdir, "-b", "19", "-n", "4", fake=fake_platform)

    assert result.returncode == 3, result.stderr
    assert copy.read_bytes() == (workdir / OTHER / "20-0001.yaml").read_bytes()
    assert (f"Device not registered: iotpsutil:19-0003: {FOLDER}/19-0003.yaml: holds the config of another device, "
            f"iotpsutil:20-0001 of organisation myorg1 at {DEFAULT_DOMAIN}: kept as it is") in result.stdout
    assert "2 already present, 0 failed, 1 not registered (their config files need attention)." in result.stdout
    assert fake_platform.devices_of("iotpsutil") == ["19-0001", "19-0002", "19-0004", "20-0001"]
    [add] = bulk_requests(fake_platform)[sent:]
    assert add["status"] == 201


# 2. Deletion needs the config's own platform --------------------------------------------------------------------

@pytest.mark.slow
def test_the_wrong_organisations_credentials_are_refused_before_anything_is_sent(fake_platform, staging, workdir):
    register(workdir, fake_platform, "19", 3)
    staging.preregister("iotpsutil", [])  # the type exists there too: only the configs tell the platforms apart
    before = snapshot(workdir / FOLDER)

    for script, extra in ((run_decommissioner, ["--yes"]), (run_status, []), (run_registrator, [])):
        if script is run_registrator:
            result = run_registrator(workdir, "-b", "19", "-n", "3", fake=staging)
        else:
            result = script(workdir, "-b", "19", "-n", "3", *extra, fake=staging)
        assert result.returncode == 2, result.stderr
        [line] = result.stderr.splitlines()
        assert (f"error: the config {FOLDER}/19-0001.yaml (and 2 other configs) belongs to organisation myorg1 at "
                f"{DEFAULT_DOMAIN}, but the credentials reach organisation stagingorg at {DEFAULT_DOMAIN}: check "
                f"WIOTP_API_KEY and WIOTP_OPTIONS_DOMAIN; ") in line

    assert staging.requests == []  # nothing was sent to the wrong platform
    assert snapshot(workdir / FOLDER) == before
    assert fake_platform.devices_of("iotpsutil") == ["19-0001", "19-0002", "19-0003"]


@pytest.mark.slow
def test_a_config_of_another_domain_is_refused_naming_both(fake_platform, workdir):
    env = clean_environment(**fake_platform.env(), WIOTP_OPTIONS_DOMAIN="iot.example.com")
    assert run_registrator(workdir, "-b", "19", "-n", "2", env=env).returncode == 0
    before = len(fake_platform.requests)

    result = run_decommissioner(workdir, "-b", "19", "-n", "2", "--yes", fake=fake_platform)

    assert result.returncode == 2
    assert (f"belongs to organisation myorg1 at iot.example.com, but the credentials reach organisation myorg1 at "
            f"{DEFAULT_DOMAIN}") in result.stderr
    assert len(fake_platform.requests) == before
    assert len(snapshot(workdir / FOLDER)) == 2
    assert run_decommissioner(workdir, "-b", "19", "-n", "2", "--yes", env=env).returncode == 0  # its own platform


@pytest.mark.slow
def test_a_mistyped_type_stops_the_decommissioner_and_the_status_report(fake_platform, workdir):
    register(workdir, fake_platform, "19", 2)
    before = snapshot(workdir / FOLDER)

    result = run_decommissioner(workdir, "-b", "19", "-n", "2", "-t", "iotpsutl", "--yes", fake=fake_platform)

    assert result.returncode == 1
    assert result.stderr == (
        f"deviceDecommissioner.py: error: device type iotpsutl does not exist in organisation myorg1 "
        f"(https://{fake_platform.address}): check --typeId and the credentials; nothing was removed, nothing "
        f"deleted\n")
    assert bulk_requests(fake_platform)[1:] == []  # only the registration's
    assert snapshot(workdir / FOLDER) == before

    status = run_status(workdir, "-b", "19", "-n", "2", "-t", "iotpsutl", fake=fake_platform)
    assert status.returncode == 1
    assert status.stdout == ""
    assert status.stderr == (
        f"deviceStatus.py: error: device type iotpsutl does not exist in organisation myorg1 "
        f"(https://{fake_platform.address}): no device of batch 19 is on the platform; check --typeId and the "
        f"credentials\n")


@pytest.mark.slow
def test_the_status_report_names_the_local_devices_when_the_type_is_gone(fake_platform, staging, workdir):
    # The configs say staging's organisation, and staging no longer has the type.
    assert run_registrator(workdir, "-b", "19", "-n", "2", fake=staging).returncode == 0
    staging.reset()
    result = run_status(workdir, "-b", "19", "-n", "2", fake=staging)
    assert result.returncode == 1
    assert result.stderr.endswith("check --typeId and the credentials; 2 devices of the batch are known here\n")


# 3. Damaged is not lost -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_damaged_config_is_damaged_everywhere_never_lost(fake_platform, workdir):
    register(workdir, fake_platform, "19", 3)
    damaged = workdir / FOLDER / "19-0002.yaml"
    damaged.write_text(damaged.read_text().replace("token: ", "token: [", 1))  # one character too many

    status = run_status(workdir, "-b", "19", "-n", "3", fake=fake_platform)

    assert status.returncode == 3
    assert "lost" not in status.stdout + status.stderr
    assert ("0 connected, 0 disconnected, 3 with no connection recorded since monitoring was activated, 0 not on the "
            "platform; 2 with a local config, 1 damaged: repair it.") in status.stdout
    assert f"  {FOLDER}/19-0002.yaml: damaged: repair it (" in status.stdout
    records = {r["deviceId"]: r for r in read_jsonl(workdir / FOLDER / "status-report.jsonl")}
    assert (records["19-0002"]["config"], records["19-0001"]["config"]) == ("damaged", "valid")

    text = damaged.read_bytes()
    result = run_decommissioner(workdir, "-b", "19", "-n", "3", "--yes", fake=fake_platform)

    assert result.returncode == 3
    assert "lost" not in result.stdout
    assert damaged.read_bytes() == text  # kept
    assert fake_platform.devices_of("iotpsutil") == []  # its device removed, as the user asked
    assert ("  removed from the platform as asked, their damaged configs kept for you to look at (delete them by "
            "hand once sure): iotpsutil:19-0002") in result.stdout
    assert f"  {FOLDER}/19-0002.yaml: damaged: repair it (" in result.stdout
    assert "3 removed, 0 already gone, 0 failed; 2 local configs deleted." in result.stdout


@pytest.mark.slow
def test_a_fifo_in_place_of_a_config_is_damaged_not_waited_on(fake_platform, workdir):
    register(workdir, fake_platform, "19", 2)
    fifo = workdir / FOLDER / "19-0003.yaml"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer for ever

    for run in (run_status, run_decommissioner, run_registrator):
        result = run(workdir, "-b", "19", "-n", "3", *(["--yes"] if run is run_decommissioner else []),
                     fake=fake_platform, timeout=20)
        assert "Traceback" not in result.stderr
        assert f"{FOLDER}/19-0003.yaml: damaged: repair it (cannot be read (not a regular file))" in (
            result.stdout + result.stderr), run
        assert fifo.is_fifo()


@pytest.mark.slow
def test_a_bad_escape_in_a_config_of_our_own_shape_is_damaged_not_a_traceback(fake_platform, workdir):
    register(workdir, fake_platform, "19", 2)
    damaged = workdir / FOLDER / "19-0002.yaml"
    damaged.write_text(re.sub(r'(?m)^(  token: ".*)"$', r'\1\\q"', damaged.read_text()))  # "\q": no escape

    status = run_status(workdir, "-b", "19", "-n", "2", fake=fake_platform)

    assert "Traceback" not in status.stderr
    assert f"  {FOLDER}/19-0002.yaml: damaged: repair it (not valid YAML (" in status.stdout


@pytest.mark.parametrize("mistype", ["*", "!"])  # an alias or a tag: the YAML error quotes what follows
@pytest.mark.slow
def test_a_damaged_config_s_error_never_quotes_its_token(fake_platform, workdir, mistype):
    register(workdir, fake_platform, "19", 2)
    damaged = workdir / FOLDER / "19-0002.yaml"
    token = re.search(r'(?m)^  token: "(.*)"$', damaged.read_text()).group(1)
    damaged.write_text(damaged.read_text().replace(f'"{token}"', mistype + "abc" + re.sub(r"\W", "", token)))

    status = run_status(workdir, "-b", "19", "-n", "2", fake=fake_platform)

    assert f"  {FOLDER}/19-0002.yaml: damaged: repair it (not valid YAML (" in status.stdout
    assert re.sub(r"\W", "", token) not in status.stdout + status.stderr
    assert re.sub(r"\W", "", token) not in (workdir / FOLDER / "status-report.jsonl").read_text()


# 4. Case-only clashes -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("first, second, what, clash", [
    (["-b", "ab"], ["-b", "AB"], "batchId 'AB'", "'ab'"),
    (["-t", "Sensor"], ["-t", "sensor"], "typeId 'sensor'", "'Sensor'"),
])
@pytest.mark.slow
def test_ids_that_differ_only_in_case_are_refused_by_every_command(fake_platform, workdir, first, second, what,
                                                                   clash):
    base = ["-b", "ab", "-t", "iotpsutil"]
    arguments = dict(zip(base[::2], base[1::2], strict=True))
    arguments.update(dict(zip(first[::2], first[1::2], strict=True)))
    register(workdir, fake_platform, arguments["-b"], 1, "-t", arguments["-t"])
    arguments.update(dict(zip(second[::2], second[1::2], strict=True)))
    flags = ["-b", arguments["-b"], "-t", arguments["-t"], "-n", "1"]
    sent = len(fake_platform.requests)

    for result in (run_registrator(workdir, *flags, fake=fake_platform),
                   run_status(workdir, *flags, fake=fake_platform),
                   run_decommissioner(workdir, *flags, "--yes", fake=fake_platform),
                   run_deployer(workdir, *flags, "--helmChart", "c", "--helmVersion", "3")):
        assert result.returncode == 2, result.stderr
        [line] = result.stderr.splitlines()
        assert f"error: {what} differs only in letter case from {clash}, which has a folder in " in line
        assert "refused everywhere" in line
    assert len(fake_platform.requests) == sent


# 7. Bad input is refused before anything is written ----------------------------------------------------------------

def test_an_mqtt_ca_path_the_deployer_would_refuse_is_refused_by_the_registrator(fake_platform, workdir):
    ca = workdir / "ca,mqtt.pem"
    shutil.copyfile(fake_platform.ca_file, ca)
    env = clean_environment(**fake_platform.env(), WIOTP_OPTIONS_MQTT_CAFILE=str(ca))

    result = run_registrator(workdir, "-b", "19", "-n", "1", env=env)

    assert result.returncode == 2
    assert result.stderr == (f"deviceRegistrator.py: error: WIOTP_OPTIONS_MQTT_CAFILE '{ca}' must be a path with no "
                             f"',', '\\' or line break (helm --values and --set-file would split it)\n")
    assert fake_platform.requests == []
    assert not (workdir / "localDeviceRegistry").exists()


@pytest.mark.parametrize("kind", ["link", "folder"])
@pytest.mark.slow
def test_a_journal_that_is_a_link_or_a_folder_is_one_line(fake_platform, workdir, tmp_path, kind):
    register(workdir, fake_platform, "19", 1)
    journal = workdir / FOLDER / ".pending-tokens.jsonl"
    if kind == "link":
        (tmp_path / "elsewhere").write_text("")
        journal.symlink_to(tmp_path / "elsewhere")
    else:
        journal.mkdir()

    for run in (run_status, run_registrator):
        result = run(workdir, "-b", "19", "-n", "1", fake=fake_platform)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        what = "a symbolic link" if kind == "link" else "not a file"
        [line] = result.stderr.splitlines()
        assert line.endswith(f"refusing to read the pending-token journal {journal.relative_to(workdir)}: "
                             f"it is {what}; "
                             f"move it away and look at what it holds (it may hold tokens)")


@pytest.mark.slow
def test_the_deployer_refuses_a_linked_batch_folder_and_a_held_lock(fake_platform, workdir, tmp_path):
    register(workdir, fake_platform, "19", 2)
    flags = ["-b", "19", "-n", "2", "--helmChart", "c", "--helmVersion", "3"]
    folder = workdir / FOLDER
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a decommission at work holds it
        busy = run_deployer(workdir, *flags)
    finally:
        os.close(descriptor)
    assert busy.returncode == 1
    assert busy.stderr == ("deviceDeployer.py: error: another deviceRegistrator.py, deviceDecommissioner.py or "
                           f"deviceDeployer.py is working on this batch ({FOLDER})\n")
    assert not (workdir / "bin" / "deploy-device-iotpsutil-19.bat").exists()

    moved = tmp_path / "moved"
    folder.rename(moved)
    folder.symlink_to(moved)
    linked = run_deployer(workdir, *flags)
    assert linked.returncode == 1
    assert linked.stderr == (f"deviceDeployer.py: error: refusing to keep tokens there: {FOLDER} is a symbolic link; "
                             f"a folder that holds tokens must be a real folder\n")

    folder.unlink()
    moved.rename(folder)
    assert run_deployer(workdir, *flags).returncode == 0


# 8. Where the tokens live --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_registry_outside_the_checkout_by_flag_and_by_variable(fake_platform, workdir, tmp_path):
    registry = tmp_path / "secrets" / "registry"
    registry.parent.mkdir(mode=0o700)
    outside = registry / "device/iotpsutil/19"

    assert run_registrator(workdir, "-b", "19", "-n", "2", "--registryDir", str(registry),
                           fake=fake_platform).returncode == 0
    assert sorted(path.name for path in outside.glob("*.yaml")) == ["19-0001.yaml", "19-0002.yaml"]
    assert not (workdir / "localDeviceRegistry").exists()  # git clean -xdf in the checkout cannot reach them

    env = clean_environment(**fake_platform.env(), DEVICEFACTORY_REGISTRY_DIR=str(registry))
    fake_platform.connect("iotpsutil", ["19-0001", "19-0002"])
    status = run_status(workdir, "-b", "19", "-n", "2", env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"Report: {outside}/status-report.jsonl" in status.stdout

    helm_log = tmp_path / "helm-log"
    helm_log.mkdir()
    deploy_env = clean_environment(DEVICEFACTORY_REGISTRY_DIR="relative/ignored")  # the flag wins
    deployed = run_deployer(workdir, "-b", "19", "-n", "2", "--helmChart", "wiotp/psutil", "--helmVersion", "3",
                            "--helmCmd", str(STANDIN_HELM), "--registryDir", str(registry), env=deploy_env)
    assert deployed.returncode == 0, deployed.stderr
    ran = run_generated_script(workdir, "bin/deploy-device-iotpsutil-19.bat", helm_log)
    assert ran.returncode == 0, ran.stderr
    values = sorted(arguments[5] for arguments in helm_arguments(helm_log, "upgrade"))
    assert values == [f"{outside}/19-0001.yaml", f"{outside}/19-0002.yaml"]

    removed = run_decommissioner(workdir, "-b", "19", "-n", "2", "--yes", env=env)
    assert removed.returncode == 0, removed.stderr
    assert list(outside.glob("*.yaml")) == []


@pytest.mark.parametrize("where", ["flag", "variable"])
def test_a_registry_folder_helm_could_not_be_given_is_refused(fake_platform, workdir, where):
    bad = str(workdir / "a,b")
    extra, env = (["--registryDir", bad], None) if where == "flag" else (
        [], clean_environment(**fake_platform.env(), DEVICEFACTORY_REGISTRY_DIR=bad))
    result = run_registrator(workdir, "-b", "19", "-n", "1", *extra, fake=fake_platform, env=env)
    assert result.returncode == 2
    name = "argument --registryDir:" if where == "flag" else "DEVICEFACTORY_REGISTRY_DIR"
    assert f"error: {name} " in result.stderr and "must be a path with no ','" in result.stderr
    assert fake_platform.requests == []


# 9. Rough edges ------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_report_line_only_when_the_report_was_written(fake_platform, workdir):
    register(workdir, fake_platform, "19", 1)
    for kind, run, extra in (("status", run_status, []), ("decommission", run_decommissioner, ["--yes"]),
                             ("registration", run_registrator, [])):
        report = workdir / FOLDER / f"{kind}-report.jsonl"
        if report.exists():
            report.unlink()
        report.mkdir()  # the report cannot be written
        result = run(workdir, "-b", "19", "-n", "1", *extra, fake=fake_platform)
        assert "Traceback" not in result.stderr
        assert f"warning: could not write the report {FOLDER}/{kind}-report.jsonl: " in result.stderr
        assert "Report:" not in result.stdout
        if kind == "decommission":
            assert "Batch 19 (1 device of type iotpsutil, class Device): 1 removed, 0 already gone, 0 failed; " \
                   "1 local config deleted." in result.stdout


def test_an_error_names_a_path_not_a_descriptor_number(tmp_path):
    file = tmp_path / "f"
    file.write_text("")
    descriptor = os.open(file, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as raised:
            os.listdir(descriptor)  # the error carries the descriptor's number as its file name
    finally:
        os.close(descriptor)
    assert raised.value.filename == descriptor
    assert describe_os_error(raised.value) == "Not a directory"
    with pytest.raises(OSError) as raised:
        subprocess.run(["true"], cwd=tmp_path / "nowhere", check=True)
    assert describe_os_error(raised.value) == f"No such file or directory ({tmp_path / 'nowhere'})"


def test_the_device_runner_reads_the_registry_the_flag_names(fake_platform, workdir, tmp_path):
    registry = tmp_path / "registry"
    assert run_registrator(workdir, "-b", "19", "-n", "1", "--registryDir", str(registry),
                           fake=fake_platform).returncode == 0
    runner = ROOT / "deviceRunner.py"
    result = subprocess.run([sys.executable, str(runner), "-b", "19", "-n", "2", "--registryDir", str(registry)],
                            cwd=workdir, env=clean_environment(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    # It found the batch there (one config of two), not in the project's localDeviceRegistry/.
    assert result.stderr == "deviceRunner.py: error: no config for 1 device of the batch: 19-0002\n"
