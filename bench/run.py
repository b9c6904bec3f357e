#!/usr/bin/env python3
"""Benchmarks of every stage of the factory; prints a table of figures and exits 0.

    python3 tasks.py bench [--helm-seconds 0.2] [--quick]

1. deviceRegistrator.py registering 1,000 / 10,000 / 20,000 devices against the local fake platform (HTTPS on
   loopback): wall time, bulk requests sent against the fewest the 512 KiB limit allows, bytes per request,
   and local CPU per device (the registrator process's own CPU, less a bare start-up measured in the same run).
   Then the same 20,000-device registration by the registrator before the durability change and by today's, and
   syncing 5,000 configs one fsync after another against sync_files.
2. Writing the deploy/recall scripts for 10,000 configs against the original sample's plain loop of yaml.full_load
   over the same files: whole process against whole process (start-up included), and in this process.
3. deviceStatus.py on 20,000 registered and connected devices, then deviceDecommissioner.py removing them: requests
   sent against the fewest the API allows (pages of 1,000; bulk removes under 512 KiB), and wall time.
4. Running a generated deploy script for 1,000 devices against a stand-in helm that sleeps a fixed time per call,
   with --parallel 1, 16 and 32, side by side: wall time and speed-up over --parallel 1.
4. Per-device mode against fleet mode (--fleet, 1,000 devices a release) for 1,000 and 10,000 devices: helm
   commands, Kubernetes objects created (3 per release: a Deployment or StatefulSet, the chart's Secret and Helm's
   release record Secret; pods are made by Kubernetes, not by helm, and are not counted), bytes stored in Secrets
   (the chart's, and Helm's release records as Helm stores them: base64 of gzip of the release's JSON, chart files,
   values and rendered manifest included; rendered by the real Helm engine, helm_python), and script writing time.
   A chart without fleet mode (no templates/statefulset.yaml) gets a labelled estimate for fleet mode instead.
5. deviceRunner.py running 1,000 devices from one process against the same devices run one process each, as the
   charts run them (bench/localrun.py: time until all are connected, peak memory; 50 one-device processes
   measured, their figures scaled to 1,000 and labelled so).
6. deviceRegistrator.py --manifest with a 100,000-row CSV (serial number, model, firmware, location, metadata),
   against the same batch registered with -n 100000 in the same run: wall time, bulk requests against the fewest
   the request limit allows, and the registrator process's peak memory (tracemalloc's peak, and its ru_maxrss),
   so that what the rows add beyond their ids shows; and the same for 50,000 rows.
"""

import argparse
import base64
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devicefactory.batch import Batch  # noqa: E402
from devicefactory.deployer import DeployOptions, write_deploy_scripts  # noqa: E402
from devicefactory.fakeplatform import FakePlatform  # noqa: E402
from devicefactory.files import make_private_dirs, sync_files  # noqa: E402
from devicefactory.fleet import DEFAULT_FLEET_SIZE  # noqa: E402
from devicefactory.localregistry import LocalRegistry, write_device_config  # noqa: E402
from devicefactory.platform import LARGEST_PAGE_SIZE, MAX_REQUEST_BYTES  # noqa: E402
from devicefactory.reporting import SilentReporter  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from localrun import bench_local_run  # noqa: E402

BENCH_BATCH = Batch("Device", "iotpsutil", "bench")

STANDIN_HELM = """#!/usr/bin/env bash
# A stand-in for helm: every call takes the same time, as a cluster's answer would.
sleep {seconds}
"""


def child_cpu_seconds(command, expected_exit=0, **kwargs):
    """Run `command`; return (wall seconds, its CPU seconds, completed process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, **kwargs)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if completed.returncode != expected_exit:
        raise SystemExit(f"bench: {command[1]} failed ({completed.returncode}): {completed.stderr.strip()}")
    return wall, cpu, completed


def bench_registration(sizes):
    rows = []
    with tempfile.TemporaryDirectory() as work, FakePlatform(state_dir=work) as fake:
        env = dict(os.environ, **fake.env())
        # The registrator's start-up (interpreter, SDK import, argument parsing) is not per-device work: measure
        # it alone as a run that stops at the credential check, just after loading the SDK.
        no_credentials = {k: v for k, v in env.items() if not k.startswith("WIOTP_")}
        _, startup_cpu, _ = child_cpu_seconds([sys.executable, str(ROOT / "deviceRegistrator.py"), "-b", "x", "-n", "1"],
                                              expected_exit=2, env=no_credentials)
        for count in sizes:
            fake.reset()
            project = Path(work) / f"project-{len(rows)}-{count}"
            project.mkdir()
            command = [sys.executable, str(ROOT / "deviceRegistrator.py"), "-b", "bench", "-n", str(count)]
            wall, cpu, _ = child_cpu_seconds(command, env=env, cwd=project)
            adds = [r for r in fake.requests if r["path"].endswith("/bulk/devices/add")]
            sizes_sent = [r["bytes"] for r in adds]
            fewest = -(-sum(sizes_sent) // MAX_REQUEST_BYTES)
            assert len(fake.devices_of("iotpsutil")) == count
            rows.append((count, wall, len(adds), fewest, sum(sizes_sent) // len(adds), max(sizes_sent),
                         cpu * 1000 / count, (cpu - startup_cpu) * 1000 / count))
    print("Registration against the local fake platform")
    print(f"{'devices':>8} {'wall s':>7} {'requests':>8} {'fewest':>6} {'mean B/req':>10} {'max B/req':>9}"
          f" {'CPU ms/dev':>10} {'less start-up':>13}")
    for row in rows:
        print(f"{row[0]:>8} {row[1]:>7.2f} {row[2]:>8} {row[3]:>6} {row[4]:>10} {row[5]:>9} {row[6]:>10.3f} {row[7]:>13.3f}")
    print(f"(start-up alone: {startup_cpu:.2f} s CPU; request limit {MAX_REQUEST_BYTES} B)\n")


# The last commit before the durability change (configs checked as the device's, synced with sync_files
# instead of os.sync(), after each request): its registrator is the "before" of bench_durability.
BEFORE_DURABILITY = "79bfdf6"


def bench_durability(count, rounds=3):
    """Registration of `count` devices by the registrator before the durability change and by today's, taking
    turns against one fake platform, with a re-run of the finished batch (which now reads every config)."""
    with tempfile.TemporaryDirectory() as work, FakePlatform(state_dir=work) as fake:
        before = Path(work) / "before"
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE_DURABILITY], capture_output=True)
        if archive.returncode != 0:
            print(f"Durability change: skipped (git cannot give commit {BEFORE_DURABILITY} here)\n")
            return
        before.mkdir()
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
        env = dict(os.environ, **fake.env())
        walls = {"before": [], "after": [], "before, re-run": [], "after, re-run": []}
        for turn in range(rounds):
            for name, root in (("before", before), ("after", ROOT)):
                fake.reset()
                project = Path(work) / f"{name}-{turn}"
                project.mkdir()
                command = [sys.executable, str(root / "deviceRegistrator.py"), "-b", "bench", "-n", str(count)]
                walls[name].append(child_cpu_seconds(command, env=env, cwd=project)[0])
                walls[f"{name}, re-run"].append(child_cpu_seconds(command, env=env, cwd=project)[0])
    print(f"Registration of {count} devices before ({BEFORE_DURABILITY}: os.sync(), configs counted by name) and "
          f"after the durability change (configs checked, only the files written are synced), best of {rounds}")
    best = {name: min(values) for name, values in walls.items()}
    for name in ("before", "after", "before, re-run", "after, re-run"):
        base = best["before" if "re-run" not in name else "before, re-run"]
        print(f"  {name:<16} {best[name]:>7.2f} s wall  ({best[name] / base:.2f}x the time before)")
    print()


def bench_sync(count):
    """Making `count` freshly written configs durable: an fsync each, one after another, against sync_files (the
    registrator's way: many in flight at once, then the folder), on files written the same way."""
    timings = {}
    with tempfile.TemporaryDirectory(dir=ROOT) as work:  # the disk the registry lives on, not a tmpfs
        for turn, name in enumerate(["one fsync after another", "sync_files (16 at a time)"] * 2):
            folder = Path(work) / str(turn)
            folder.mkdir()
            paths = [write_device_config(folder, "myorg1", "iotpsutil", device, "Tok-1-x!y")
                     for device in BENCH_BATCH.device_ids(count)]
            started = time.perf_counter()
            if name.startswith("one"):
                for path in paths:
                    with open(path, "rb") as config:
                        os.fsync(config.fileno())
            else:
                sync_files(paths)
            timings[name] = min(timings.get(name, float("inf")), time.perf_counter() - started)
    print(f"Syncing {count} configs just written (best of 2, taking turns)")
    base = timings["one fsync after another"]
    for name, seconds in timings.items():
        print(f"  {name:<28} {seconds:>6.2f} s  ({base / seconds:.1f}x as fast as one after another)")
    print()


def bench_status_and_decommission(count):
    with tempfile.TemporaryDirectory() as work, FakePlatform(state_dir=work) as fake:
        env = dict(os.environ, **fake.env())
        project = Path(work) / "project"
        project.mkdir()
        make_configs(project, count, org_id=fake.org_id)
        devices = list(BENCH_BATCH.device_ids(count))
        fake.preregister(BENCH_BATCH.type_id, devices)
        fake.connect(BENCH_BATCH.type_id, devices)
        batch_args = ["-b", BENCH_BATCH.batch_id, "-n", str(count), "-t", BENCH_BATCH.type_id]
        pages = lambda rows: -(-rows // LARGEST_PAGE_SIZE)  # noqa: E731
        # The connection state setting, the device type (its class is checked), the type's devices, and their states.
        fewest_status = 1 + 1 + pages(count) + pages(count)
        status_wall, _, _ = child_cpu_seconds([sys.executable, str(ROOT / "deviceStatus.py"), *batch_args], env=env,
                                              cwd=project)
        status_requests = len(fake.requests)
        before = len(fake.requests)
        gone_wall, _, _ = child_cpu_seconds([sys.executable, str(ROOT / "deviceDecommissioner.py"), *batch_args,
                                             "--yes"], env=env, cwd=project)
        removes = [r for r in fake.requests[before:] if r["path"].endswith("/bulk/devices/remove")]
        fewest_removes = 1 + -(-sum(r["bytes"] for r in removes) // MAX_REQUEST_BYTES)  # the type, then removes
        assert fake.devices_of(BENCH_BATCH.type_id) == []
        assert not list(LocalRegistry(project).batch_folder(BENCH_BATCH).glob("*.yaml"))
    print(f"Status and decommission of {count} devices against the local fake platform")
    print(f"{'command':>22} {'wall s':>7} {'requests':>8} {'fewest':>6}")
    print(f"{'deviceStatus':>22} {status_wall:>7.2f} {status_requests:>8} {fewest_status:>6}")
    print(f"{'deviceDecommissioner':>22} {gone_wall:>7.2f} {len(fake.requests) - before:>8} {fewest_removes:>6}\n")


def make_configs(project, count, org_id="myorg1"):
    folder = LocalRegistry(project).batch_folder(BENCH_BATCH)
    make_private_dirs(folder)
    for number, device in enumerate(BENCH_BATCH.device_ids(count), start=1):
        write_device_config(folder, org_id, BENCH_BATCH.type_id, device, f"Tok-{number}-x!y")
    return folder


def write_scripts(project, count, **options):
    """What deviceDeployer.py does, in this process; returns the ScriptsWritten. The benchmark deploys nothing, so
    it replaces its own recall scripts from one form to the other (--replaceRecall)."""
    options.setdefault("replace_recall", True)
    return write_deploy_scripts(BENCH_BATCH, count, DeployOptions(**options), SilentReporter(),
                                LocalRegistry(project)).made


# The original sample's deployer, as a whole process: read every config with yaml.full_load, one after another.
SAMPLE_LOOP = """
import glob, sys, yaml
for path in sorted(glob.glob(sys.argv[1] + "/*.yaml")):
    with open(path) as config_file:
        yaml.full_load(config_file)
"""


def bench_script_writing(count, rounds=3):
    """deviceDeployer.py writing the scripts for `count` configs against the original sample's yaml.full_load loop
    over the same files: as whole processes (interpreter start-up and imports included, as a user waits for them),
    best of `rounds`, taking turns; then in this process."""
    with tempfile.TemporaryDirectory() as work:
        project = Path(work)
        folder = make_configs(project, count)
        for path in folder.iterdir():  # warm the page cache the same way for both
            path.read_bytes()
        deployer = [sys.executable, str(ROOT / "deviceDeployer.py"), "-b", BENCH_BATCH.batch_id, "-n", str(count),
                    "--helmChart", "wiotp/psutil", "--helmVersion", "3", "--replaceRecall"]
        sample = [sys.executable, "-c", SAMPLE_LOOP, str(folder)]
        walls = {"deployer": [], "sample": []}
        for _ in range(rounds):
            walls["deployer"].append(child_cpu_seconds(deployer, cwd=project)[0])
            walls["sample"].append(child_cpu_seconds(sample, cwd=project)[0])
        started = time.perf_counter()
        for path in sorted(folder.glob("*.yaml")):
            with open(path) as config_file:
                yaml.full_load(config_file)
        baseline = time.perf_counter() - started
        started = time.perf_counter()
        write_scripts(project, count, helm_chart="wiotp/psutil", helm_version=3, replace_recall=True)
        ours = time.perf_counter() - started
    deployer_wall, sample_wall = min(walls["deployer"]), min(walls["sample"])
    print(f"Writing the deploy and recall scripts for {count} configs")
    print(f"  whole process, best of {rounds}: deviceDeployer.py {deployer_wall:.3f} s, the sample's yaml.full_load loop"
          f" {sample_wall:.3f} s  ({deployer_wall / sample_wall:.2f}x the sample's time)")
    print(f"  in this process: write_deploy_scripts {ours:.3f} s, the yaml.full_load loop {baseline:.3f} s"
          f"  ({ours / baseline:.2f}x)\n")


def bench_deploy(count, helm_seconds, parallels):
    with tempfile.TemporaryDirectory() as work:
        project = Path(work)
        make_configs(project, count)
        helm = project / "helm-standin"
        helm.write_text(STANDIN_HELM.format(seconds=helm_seconds))
        helm.chmod(0o755)
        walls = {}
        for parallel in parallels:
            written = write_scripts(project, count, helm_chart="wiotp/psutil", helm_cmd=str(helm), helm_version=3,
                                    parallel=parallel)
            started = time.perf_counter()
            completed = subprocess.run(["bash", str(project / written.deploy)], capture_output=True, text=True)
            walls[parallel] = time.perf_counter() - started
            if completed.returncode != 0:
                raise SystemExit(f"bench: the deploy script failed: {completed.stderr[-500:]}")
    print(f"Running a deploy script for {count} devices, stand-in helm sleeping {helm_seconds} s per call")
    print(f"{'--parallel':>10} {'wall s':>8} {'speed-up':>8}")
    for parallel in parallels:
        print(f"{parallel:>10} {walls[parallel]:>8.2f} {walls[parallels[0]] / walls[parallel]:>7.1f}x")
    print()


def helm_release_record(chart, values, name, manifests):
    """The release record Helm 3 keeps in a Secret: base64 of gzip of the release's JSON (Go encodes []byte, the
    chart's templates, files and schema, as base64)."""
    def encoded(files):
        return [{"name": f["name"], "data": base64.b64encode(f["data"].encode()).decode()} for f in files]

    manifest = "".join(f"---\n# Source: {path}\n{text}\n" for path, text in sorted(manifests.items())
                       if not path.endswith("NOTES.txt") and text.strip())
    notes = next((text for path, text in manifests.items() if path.endswith("NOTES.txt")), "")
    release = {
        "name": name, "namespace": "devices", "version": 1, "config": values, "manifest": manifest, "hooks": [],
        "info": {"first_deployed": "2025-11-25T16:32:00Z", "last_deployed": "2025-11-25T16:32:00Z", "deleted": "",
                 "description": "Install complete", "status": "deployed", "notes": notes},
        "chart": {"metadata": chart.metadata, "lock": None, "templates": encoded(chart.templates),
                  "values": chart.values, "schema": base64.b64encode(json.dumps(chart.schema).encode()).decode(),
                  "files": encoded(chart.files)},
    }
    return base64.b64encode(gzip.compress(json.dumps(release).encode())).decode()


def stored_bytes(chart, values, name):
    """Bytes one release stores in Secrets: the chart's Secret (as JSON) plus Helm's release record."""
    manifests = chart.render(values, name=name, namespace="devices")
    secrets = [doc for text in manifests.values() for doc in yaml.safe_load_all(text)
               if isinstance(doc, dict) and doc.get("kind") == "Secret"]
    return sum(len(json.dumps(doc)) for doc in secrets) + len(helm_release_record(chart, values, name, manifests))


def bench_fleet(sizes, chart_path):
    import helm_python

    chart = helm_python.Chart.load(str(chart_path))
    has_fleet = any(t["name"] == "templates/statefulset.yaml" for t in chart.templates)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        project = Path(work)
        make_configs(project, max(sizes))
        registry = LocalRegistry(project)
        one_config = yaml.safe_load(registry.config_path(BENCH_BATCH, BENCH_BATCH.device_id(1)).read_text())
        per_device_bytes = stored_bytes(chart, one_config, "iotpsutil-bench-0001")
        for count in sizes:
            for fleet in (False, True):
                started = time.perf_counter()
                written = write_scripts(project, count, helm_chart="./chart", helm_version=3,
                                        fleet_size=DEFAULT_FLEET_SIZE if fleet else None)
                seconds = time.perf_counter() - started
                if not fleet:
                    stored, how = per_device_bytes * count, "rendered (device 1, x devices)"
                else:
                    fleet_folder = registry.fleet_folder(BENCH_BATCH)
                    values = [(path.stem, yaml.safe_load(path.read_text())) for path in sorted(fleet_folder.iterdir())]
                    if has_fleet:
                        stored, how = sum(stored_bytes(chart, v, name) for name, v in values), "rendered"
                    else:  # the one-device chart's bytes, plus every device's ID and token once more, base64
                        extra = sum(len(base64.b64encode(json.dumps(v).encode())) for _, v in values)
                        stored, how = per_device_bytes * len(values) + extra, "ESTIMATE (chart has no fleet mode)"
                rows.append((count, "fleet" if fleet else "per-device", written.releases, 3 * written.releases,
                             stored, seconds, how))
    print(f"Per-device mode against fleet mode (--fleet, {DEFAULT_FLEET_SIZE} devices a release), chart {chart_path}")
    print(f"{'devices':>8} {'mode':>10} {'helm cmds':>9} {'k8s objects':>11} {'Secret bytes':>12} {'write s':>8}  bytes")
    for count, mode, commands, objects, stored, seconds, how in rows:
        print(f"{count:>8} {mode:>10} {commands:>9} {objects:>11} {stored:>12,} {seconds:>8.2f}  {how}")
    print("(objects: 3 per release, a Deployment or StatefulSet, the chart's Secret and Helm's release record;"
          " pods are made by Kubernetes, not counted)\n")


# Runs a script and reports its peak memory: the Python objects it held at most (tracemalloc: what the code
# keeps, free of the allocator's slack) and the process's peak resident size. The latter is VmHWM, not
# ru_maxrss: Linux carries ru_maxrss over from the forking parent (this benchmark, grown large by then) across exec.
PEAK_MEMORY = """\
import os, runpy, sys, tracemalloc
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))
tracemalloc.start()
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    print(f"peak-traced-bytes {tracemalloc.get_traced_memory()[1]}", file=sys.stderr)
    with open("/proc/self/status") as status:
        hwm = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    print(f"peak-rss-kib {hwm}", file=sys.stderr)
"""


def write_bench_manifest(path, count):
    with open(path, "w", encoding="utf-8", newline="") as stream:
        stream.write("deviceId,serialNumber,manufacturer,model,fwVersion,hwVersion,latitude,longitude,metadata\r\n")
        for number in range(1, count + 1):
            stream.write(f"line7-{number:06d},SN-{number:09d},ACME Devices,X100 pump,4.2.{number % 97},rev C,"
                         f"{52 + number / 1e6:.6f},{4 + number / 1e6:.6f},\"{{\"\"shift\"\": \"\"B\"\", "
                         f"\"\"cell\"\": {number % 40}}}\"\r\n")


def bench_manifest(sizes):
    rows = []
    with tempfile.TemporaryDirectory() as work, FakePlatform(state_dir=work) as fake:
        env = dict(os.environ, **fake.env())
        for count in sizes:
            for how in ("-n", "manifest"):
                fake.reset()
                project = Path(work) / f"project-{how}-{count}"
                project.mkdir()
                if how == "-n":
                    arguments = ["-b", "bench", "-n", str(count)]
                else:
                    write_bench_manifest(project / "line7.csv", count)
                    arguments = ["-b", "bench", "--manifest", "line7.csv"]
                command = [sys.executable, "-c", PEAK_MEMORY, str(ROOT / "deviceRegistrator.py"), *arguments]
                wall, _, completed = child_cpu_seconds(command, env=env, cwd=project)
                traced = int(completed.stderr.split("peak-traced-bytes ", 1)[1].split()[0])
                peak_kib = int(completed.stderr.rsplit("peak-rss-kib ", 1)[1])
                adds = [r for r in fake.requests if r["path"].endswith("/bulk/devices/add")]
                fewest = -(-sum(r["bytes"] for r in adds) // MAX_REQUEST_BYTES)
                assert len(fake.devices_of("iotpsutil")) == count
                if how == "manifest":
                    document = fake.device("iotpsutil", f"line7-{count:06d}")
                    assert document["deviceInfo"]["serialNumber"] == f"SN-{count:09d}", document
                rows.append((count, how, wall, len(adds), fewest, traced / 2**20, peak_kib / 1024))
    print("Registration from a manifest (CSV with deviceInfo, location and metadata) against -n, same run")
    print(f"{'devices':>8} {'how':>9} {'wall s':>7} {'requests':>8} {'fewest':>6} {'peak objects MiB':>16}"
          f" {'peak RSS MiB':>12}")
    for count, how, wall, requests, fewest, traced, peak in rows:
        print(f"{count:>8} {how:>9} {wall:>7.2f} {requests:>8} {fewest:>6} {traced:>16.1f} {peak:>12.1f}")
    by = {(count, how): traced for count, how, _, _, _, traced, _ in rows}
    for count in sizes:
        extra = (by[count, "manifest"] - by[count, "-n"]) * 2**20 / count
        print(f"{count} devices: the manifest's rows cost {extra:.0f} B per device of Python objects beyond -n")
    print("(wall times under tracemalloc, which slows both alike; peak objects: tracemalloc's peak)\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--helm-seconds", type=float, default=0.2, help="the stand-in helm's time per call")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--chart", type=Path, default=ROOT / "helm" / "psutil",
                        help="the chart to render for the per-device/fleet comparison (default: ./helm/psutil)")
    parser.add_argument("--only-fleet", action="store_true", help="run only the per-device/fleet comparison")
    parser.add_argument("--only-local-run", action="store_true", help="run only the deviceRunner.py benchmark")
    parser.add_argument("--only-scripts", action="store_true", help="run only the script writing benchmark")
    parser.add_argument("--only-manifest", action="store_true", help="run only the manifest registration")
    args = parser.parse_args(argv)
    quick = args.quick
    if args.only_scripts:
        bench_script_writing(1000 if quick else 10000)
        return 0
    if args.only_manifest:
        bench_manifest([1000, 2000] if quick else [50000, 100000])
        return 0
    if args.only_fleet:
        bench_fleet([1000] if quick else [1000, 10000], args.chart)
        return 0
    if args.only_local_run:
        bench_local_run(200 if quick else 1000, 10 if quick else 50, 10 if quick else 20)
        return 0
    bench_registration([100, 1000] if quick else [1000, 10000, 20000])
    bench_durability(1000 if quick else 20000)
    bench_sync(1000 if quick else 5000)
    bench_status_and_decommission(1000 if quick else 20000)
    bench_script_writing(1000 if quick else 10000)
    bench_deploy(100 if quick else 1000, args.helm_seconds, [1, 16, 32])
    bench_fleet([1000] if quick else [1000, 10000], args.chart)
    bench_local_run(200 if quick else 1000, 10 if quick else 50, 10 if quick else 20)
    bench_manifest([1000, 2000] if quick else [50000, 100000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
