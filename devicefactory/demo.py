"""`python -m devicefactory.demo`: the whole flow on this machine, with no IBM account.

Starts the local fake platform (its state kept in ./.fakeplatform/, git-ignored, so that a second run finds the
batch registered, as the real platform would), registers a small batch with deviceRegistrator.py, marks some of its devices
connected (as deployed devices would connect) and shows deviceStatus.py's report, then writes the batch's deploy
and recall scripts with deviceDeployer.py (for the chart in ./helm/psutil) and shows their first lines.
"""

import datetime
import os
import shlex
import subprocess
import sys
from pathlib import Path

from .batch import Batch
from .fakeplatform import FakePlatform

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".fakeplatform"  # the same folder `python -m devicefactory.fakeplatform` keeps its state in
DEMO_DEVICES = 10
DEMO_CONNECTED = 7  # devices the demo marks connected on the fake, and then one of them disconnected
SHOWN_COMMANDS = 3


def run(command, env):
    print("$ " + shlex.join(["python"] + command[1:]), flush=True)
    completed = subprocess.run(command, env=env, cwd=ROOT)
    print(flush=True)
    return completed.returncode


def show_first_commands(path):
    """The script's header comment and its first helm command lines, as a user would grep them."""
    print(f"--- {path}: its header and first {SHOWN_COMMANDS} commands")
    with open(ROOT / path, encoding="utf-8") as script:
        lines = [line for line in script if line.startswith(("# ", "helm "))]
    header = [line for line in lines if line.startswith("# ")]
    commands = [line for line in lines if line.startswith("helm ")]
    print("".join(header + commands[:SHOWN_COMMANDS]))


def main():
    batch = Batch("Device", "iotpsutil", datetime.date.today().strftime("%y%m%d"))
    arguments = ["--batchId", batch.batch_id, "--numberOfDevices", str(DEMO_DEVICES), "--typeId", batch.type_id,
                 "--classId", batch.class_id]
    with FakePlatform(state_dir=STATE_DIR, persist=True) as fake:
        print(f"Local fake Watson IoT Platform at https://{fake.address} (org {fake.org_id}, local credentials; "
              f"its registry is kept in {STATE_DIR.name}/)")
        for name in ("WIOTP_API_KEY", "WIOTP_OPTIONS_HTTP_HOST", "REQUESTS_CA_BUNDLE"):
            print(f"$ export {name}={fake.env()[name]}")
        print("$ export WIOTP_API_TOKEN=...\n")
        env = dict(os.environ, **fake.env())
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
        fake.connect(batch.type_id, connected)
        fake.disconnect(batch.type_id, connected[-1:])
        print(f"(the fake now shows {DEMO_CONNECTED} devices as having connected, and the last of them as "
              f"disconnected again, as deployed devices would)")
        if run([sys.executable, "deviceStatus.py", *arguments], env) not in (0, 3):  # 3: some are not connected
            return 1
    status = run([sys.executable, "deviceDeployer.py", *arguments, "--helmChart", "./helm/psutil", "--helmVersion", "3"], os.environ)
    if status:
        return status
    for kind in ("deploy", "recall"):
        show_first_commands(batch.script_path(kind))
    print(f"Device configs (private, git-ignored): {batch.registry_folder}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
