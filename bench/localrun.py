"""Benchmark of deviceRunner.py: a batch's devices run from one process, against the same devices run one process
each, as the charts run them (one pod, one client process per device). Called by bench/run.py; alone:

    python3 bench/localrun.py [--devices 1000] [--processes 50] [--seconds 20]

Both sides connect to the same local fake (MQTT over TLS on loopback) and publish a status event every 5 s. The
one-process side is deviceRunner.py itself, with its --resolve pin. The one-process-per-device side is
bench/one_device.py (the SDK's DeviceClient from the same configs, the shape of the charts' image clients); a
thousand Python processes do not fit in this machine's memory, so it runs --processes of them and the figures
for a thousand are that measurement scaled, labelled as such. Memory is the peak resident set of each process
(VmHWM), summed for the per-device processes; time is from start until every device is connected.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devicefactory.batch import Batch  # noqa: E402
from devicefactory.fakeplatform import FakePlatform  # noqa: E402

BATCH = Batch("Device", "iotpsutil", "runbench")
ONE_DEVICE = Path(__file__).resolve().parent / "one_device.py"


def peak_rss_mb(pid):
    """The process's peak resident set so far (VmHWM), in MB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def connected_count(fake, devices):
    return sum(1 for device in devices
               if (fake.connection_state(BATCH.type_id, device) or {}).get("connectionStatus") == "connected")


def run_one_process(fake, project, env, count, seconds):
    """deviceRunner.py for `count` devices: (seconds until all connected, peak MB, its summary line)."""
    command = [sys.executable, str(ROOT / "deviceRunner.py"), "-b", BATCH.batch_id, "-n", str(count), "--interval",
               "5", "--duration", str(seconds), "--resolve", fake.resolve_pin()]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    devices = list(BATCH.device_ids(count))
    all_connected, peak = None, 0.0
    while process.poll() is None:
        peak = max(peak, peak_rss_mb(process.pid))
        if all_connected is None and connected_count(fake, devices) == count:
            all_connected = time.monotonic() - started
        time.sleep(0.2)
    out, errors = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"bench: deviceRunner.py failed ({process.returncode}): {errors.strip()[-500:]}")
    summary = next(line for line in out.splitlines() if line.startswith(f"Batch {BATCH.batch_id}:"))
    return all_connected, peak, summary


def run_process_per_device(fake, project, env, count, seconds):
    """`count` processes of one device each: (seconds until all connected, summed peak MB)."""
    folder = project / BATCH.registry_folder
    devices = list(BATCH.device_ids(count))
    pin = fake.resolve_pin()
    started = time.monotonic()
    processes = [subprocess.Popen([sys.executable, str(ONE_DEVICE), str(folder / f"{device}.yaml"), pin, str(seconds)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for device in devices]
    all_connected, peaks = None, {process.pid: 0.0 for process in processes}
    while any(process.poll() is None for process in processes):
        for process in processes:
            peaks[process.pid] = max(peaks[process.pid], peak_rss_mb(process.pid))
        if all_connected is None and connected_count(fake, devices) == count:
            all_connected = time.monotonic() - started
        time.sleep(0.2)
    failed = [process for process in processes if process.returncode != 0]
    if failed:
        raise SystemExit(f"bench: {len(failed)} one-device processes failed: {failed[0].stderr.read()[-500:]}")
    return all_connected, sum(peaks.values())


def bench_local_run(count, processes, seconds):
    with tempfile.TemporaryDirectory() as work, FakePlatform(state_dir=work, mqtt_port=0) as fake:
        project = Path(work) / "project"
        project.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WIOTP_")}
        env.update(fake.env(), **fake.device_env())
        registered = subprocess.run([sys.executable, str(ROOT / "deviceRegistrator.py"), "-b", BATCH.batch_id, "-n",
                                     str(count), "-t", BATCH.type_id], cwd=project, env=env, capture_output=True,
                                    text=True)
        if registered.returncode != 0:
            raise SystemExit(f"bench: registration failed: {registered.stderr.strip()[-500:]}")
        one_time, one_peak, summary = run_one_process(fake, project, env, count, seconds)
        time.sleep(1)  # the broker records the disconnections
        each_time, each_peak = run_process_per_device(fake, project, env, processes, seconds)
    scale = count / processes
    print(f"Running {count} devices locally (MQTT over TLS to the local fake on loopback, a status event every 5 s)")
    print(f"{'how':>34} {'devices':>7} {'processes':>9} {'all connected s':>15} {'peak MB':>8} {'MB/device':>9}")
    print(f"{'deviceRunner.py, one process':>34} {count:>7} {1:>9} {_seconds(one_time):>15} {one_peak:>8.0f} "
          f"{one_peak / count:>9.2f}")
    print(f"{'one process per device (measured)':>34} {processes:>7} {processes:>9} {_seconds(each_time):>15} "
          f"{each_peak:>8.0f} {each_peak / processes:>9.2f}")
    print(f"{'one process per device (scaled)':>34} {count:>7} {count:>9} {'-':>15} {each_peak * scale:>8.0f} "
          f"{each_peak / processes:>9.2f}")
    print(f"  memory: one process needs {each_peak * scale / one_peak:.0f}x less than a process per device; "
          f"targets: all {count} connected within 60 s ({_seconds(one_time)} s), under 500 MB ({one_peak:.0f} MB)")
    print("  deviceRunner.py: " + re.sub(r"^Batch \S+: ", "", summary) + "\n")


def _seconds(value):
    return "never" if value is None else f"{value:.1f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1000, help="devices run from one process (default: 1000)")
    parser.add_argument("--processes", type=int, default=50, help="one-device processes measured (default: 50)")
    parser.add_argument("--seconds", type=float, default=20, help="how long each side runs (default: 20)")
    args = parser.parse_args(argv)
    bench_local_run(args.devices, args.processes, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
