"""`python3 tasks.py demo` (or `python3 -m devicefactory.demo`): the whole flow on this machine, with no IBM account.

Starts the local fake platform (its state kept in ./.fakeplatform/, git-ignored, so that a second run finds the
batch registered, as the real platform would) with its MQTT broker on a free port, registers a small batch with
deviceRegistrator.py, runs some of its devices with deviceRunner.py (real MQTT connections from the SDK's own
clients, reaching the broker through the runner's --resolve pin, so the machine needs no hosts entry): first seven
of them for a moment, then six that stay connected, so that one has disconnected again. It shows deviceStatus.py's
report, stops the runner, then writes the batch's deploy and recall scripts with deviceDeployer.py (for the chart in
./helm/psutil) and shows their first lines.
"""

import argparse
import datetime
import itertools
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from .batch import Batch

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".fakeplatform"  # the same folder `python -m devicefactory.fakeplatform` keeps its state in
DEMO_DEVICES = 10
DEMO_CONNECTED = 7  # devices the demo connects, and then all but the last of them again (one has disconnected)
SHOWN_COMMANDS = 3


def run(command, env):
    print("$ " + shlex.join(["python3"] + command[1:]), flush=True)
    completed = subprocess.run(command, env=env, cwd=ROOT)
    print(flush=True)
    return completed.returncode


def start_runner(command, env):
    """deviceRunner.py in the background, until it shows every device connected; returns the process (or None)."""
    print("$ " + shlex.join(["python3"] + command[1:]) + " &", flush=True)
    runner = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    for line in runner.stdout:
        print(line, end="", flush=True)
        if line.startswith("connected now: "):
            count, _, total = line.removeprefix("connected now: ").partition(" of ")
            if count == total.strip():
                print(flush=True)
                return runner
    runner.wait()
    return None


def stop_runner(runner):
    print("$ kill -INT %1   # Ctrl-C: every device disconnects cleanly", flush=True)
    runner.send_signal(signal.SIGINT)
    for line in runner.stdout:
        print(line, end="", flush=True)
    print(flush=True)
    return runner.wait()


def show_first_commands(path):
    """The script's header comment and its first helm command lines, as a user would grep them."""
    print(f"--- {path}: its header and first {SHOWN_COMMANDS} commands")
    with open(ROOT / path, encoding="utf-8") as script:
        lines = script.readlines()
    header = list(itertools.takewhile(lambda line: line.startswith("# ") and not line.startswith("# --- "), lines[1:]))
    commands = [line for line in lines if line.startswith("helm ")]
    print("".join(header + commands[:SHOWN_COMMANDS]))


def build_parser():
    return argparse.ArgumentParser(prog="python3 tasks.py demo", description=__doc__.partition("\n\n")[2].strip(),
                                   epilog="It takes no arguments; run it again to see a rerun find the batch.")


def main(argv=None):
    build_parser().parse_args(argv)
    # Imported here so that --help answers without the fake's dependencies.
    from .fakeplatform import FakePlatform
    from .fakeplatform.statedir import StateError

    batch = Batch("Device", "iotpsutil", datetime.date.today().strftime("%y%m%d"))
    arguments = ["--batchId", batch.batch_id, "--numberOfDevices", str(DEMO_DEVICES), "--typeId", batch.type_id,
                 "--classId", batch.class_id]
    try:
        with FakePlatform(state_dir=STATE_DIR, persist=True, mqtt_port=0) as fake:
            status = _register_and_report(fake, batch, arguments)
    except StateError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    if status:
        return status
    status = run([sys.executable, "deviceDeployer.py", *arguments, "--helmChart", "./helm/psutil", "--helmVersion", "3"],
                 os.environ)
    if status:
        return status
    for kind in ("deploy", "recall"):
        show_first_commands(batch.script_path(kind))
    print(f"Device configs (private, git-ignored): {batch.registry_folder}/")
    print(f"The fake platform has stopped; its registry is kept in {STATE_DIR.name}/. To start it again with the same "
          f"devices, API key and CA, and get the export lines that point the scripts at it:")
    print(f"  python3 -m devicefactory.fakeplatform --state-dir {STATE_DIR.name}")
    return 0


def _register_and_report(fake, batch, arguments):
    """Register the batch on the running fake, run some of its devices and show the status report."""
    print(f"Local fake Watson IoT Platform at https://{fake.address} (org {fake.org_id}, local credentials; "
          f"its registry is kept in {STATE_DIR.name}/), its MQTT broker for {fake.messaging_host} on "
          f"127.0.0.1:{fake.mqtt_port}; the commands below get its settings in WIOTP_* variables\n")
    env = dict(os.environ, **fake.env(), **fake.device_env())
    status = run([sys.executable, "deviceRegistrator.py", *arguments], env)
    if status:
        return status
    connected = list(batch.device_ids(DEMO_CONNECTED))
    missing = [device for device in connected if fake.device(batch.type_id, device) is None]
    if missing:  # configs here from an earlier demo whose fake state was removed
        print(f"demo: the fake platform does not hold {', '.join(missing)}, though their configs are in "
              f"{batch.registry_folder}/: was {STATE_DIR.name}/ removed? Remove that batch folder too, and run "
              f"the demo again.", file=sys.stderr)
        return 1
    # No hosts entry for the messaging host: the runner's pin sends it to the fake's broker, TLS still checked.
    runner = [sys.executable, "deviceRunner.py", "--batchId", batch.batch_id, "--typeId", batch.type_id,
              "--classId", batch.class_id, "--resolve", fake.resolve_pin(), "--interval", "2"]
    if run([*runner, "--numberOfDevices", str(DEMO_CONNECTED), "--duration", "2"], env):
        print(f"demo: the devices did not all connect; configs from an older demo ({batch.registry_folder}/) "
              f"may lack the fake's MQTT settings: remove that folder and {STATE_DIR.name}/, and run the demo "
              f"again.", file=sys.stderr)
        return 1
    background = start_runner([*runner, "--numberOfDevices", str(DEMO_CONNECTED - 1)], env)
    if background is None:
        return 1
    try:
        if run([sys.executable, "deviceStatus.py", *arguments], env) not in (0, 3):  # 3: some are not connected
            return 1
    finally:
        stop_runner(background)
    return 0


if __name__ == "__main__":
    from .projectpython import FAKE_MODULES, use_project_python

    use_project_python("python3 tasks.py demo", FAKE_MODULES, module="devicefactory.demo")
    sys.exit(main())
