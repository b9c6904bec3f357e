"""The connection state of every device of a batch: the body of deviceStatus.py.

For each device 1..N of the batch: is the platform holding it, is it connected now or when did it last
disconnect (the platform's client connection state API, which records clients only while the feature is
active: a device with no state has made no connection since then), and is its config in the local registry.
Devices are matched by their exact ids (Batch.device_id), never by prefix. The answer is a grid of device numbers
as the original sample's "Device Connection State Report" printed it, a summary, what needs action, and
status-report.jsonl.

Configs are judged by custody.py before anything is sent: configs of another organisation or domain than the
credentials' stop the report (exit 2), since its advice would be the wrong platform's; a config that exists but
does not read as its device is "damaged: repair it", never a lost token. A device type the platform does not
hold is said in one line. Cost: a few requests per page of the type's listing, a GET for each device known here
(a config, a pending token, the registration report) that the listing does not show, whatever -n says.
"""

import time
from collections import Counter
from dataclasses import dataclass, field

from .batchrun import PlatformOptions, check_batch_folder, open_platform, write_report
from .custody import REPAIR_ADVICE, Custody, Survey, attention_lines
from .errors import EXIT_DEVICES_FAILED, EXIT_OK, FactoryError
from .localregistry import LocalRegistry
from .outcomes import row_fields, summary_head
from .pendingtokens import PendingTokens
from .platform import LARGEST_PAGE_SIZE, ConnectionMonitoringOff, describe_endpoint
from .registration import REPORT_KIND as REGISTRATION_REPORT
from .reporting import counted, listed
from .results import RunResult

RECHECK_LIMIT = 100  # devices held with no config here that are asked for on their own
# The registration report's outcomes of devices the platform may hold: a listing that lags must not hide them.
REGISTERED_OUTCOMES = ("registered", "recovered", "already-present", "pending")
CONFIG_VALID, CONFIG_MISSING, CONFIG_DAMAGED, CONFIG_KEPT = "valid", "missing", "damaged", "not-its-own"
REPORT_KIND = "status"
CONNECTED, DISCONNECTED, NO_STATE, NOT_ON_PLATFORM = STATES = (
    "connected", "disconnected", "no-connection-recorded", "not-on-platform")
# A device with no state document may have connected before the feature was activated (deactivating it deletes
# every state): "never connected" would not be true.
STATE_LABELS = {CONNECTED: "connected", DISCONNECTED: "disconnected",
                NO_STATE: "no connection recorded since monitoring was activated", NOT_ON_PLATFORM: "not-on-platform"}
GRID_COLUMNS = 10  # numbers per line, as the original sample printed them
FIRST_POLL_SECONDS = 2.0  # --wait asks again after 2 s, then 4, 8, ... 30 s between polls
MAX_POLL_SECONDS = 30.0
_COLOURS = {CONNECTED: "\x1b[32m", DISCONNECTED: "\x1b[31m", NOT_ON_PLATFORM: "\x1b[33m"}
_RESET = "\x1b[0m"
_RULE = "=" * 49


@dataclass(frozen=True)
class StatusOptions:
    """--timeout/--retries, --wait, and whether stdout is a terminal that shows colours."""

    platform: PlatformOptions = field(default_factory=PlatformOptions)
    wait_seconds: float = 0.0
    colour: bool = False
    by: str = "deviceId"  # how the report names devices: deviceId, or serialNumber (a manifest batch's)


@dataclass
class DeviceStatus:
    """What is known of one device: its state (one of STATES), whether a config is here, and the times of its state
    document, under the platform's names (None where the platform has none). `config` says more of the config:
    valid, missing, damaged (repair it) or not-its-own (another device's, a link)."""

    device_id: str
    state: str
    local_config: bool
    last_connect_time: str | None = None
    last_disconnect_time: str | None = None
    last_activity_time: str | None = None
    config: str = ""
    row: object = None  # a manifest batch's device: its manifest.ManifestRow

    def __post_init__(self):
        self.config = self.config or (CONFIG_VALID if self.local_config else CONFIG_MISSING)

    def record(self):
        """Its line of status-report.jsonl (no token: the config is only checked, never copied)."""
        record = {"deviceId": self.device_id, "state": self.state, "localConfig": self.local_config,
                  "config": self.config,
                  "lastConnectTime": self.last_connect_time, "lastDisconnectTime": self.last_disconnect_time,
                  "lastActivityTime": self.last_activity_time}
        if self.row is not None:
            record.update(row_fields(self.row))
        return record


def check_status(batch, count, options, reporter, registry=None, clock=time.monotonic, sleep=time.sleep):
    """deviceStatus.py's work: the state of devices 1..`count` of `batch`, waiting up to
    `options.wait_seconds` for every device to connect. The batch folder is only read (and the report written
    into it when it exists): a batch with no folder here gets no folder."""
    platform = open_platform(options.platform, reporter)
    registry = registry or LocalRegistry()
    folder_exists = check_batch_folder(registry, batch)
    custody = Custody.of_run(registry, batch, platform)
    survey = custody.survey_batch(count) if folder_exists else Survey()
    custody.refuse_another_platform(survey, "no advice is given for the wrong platform")
    local = set(survey.valid)
    # Tokens of an interrupted registration: their devices have no config yet, but nothing is lost.
    pending = set(PendingTokens(registry.batch_folder(batch)).load()) if folder_exists else set()
    known = local | pending | set(survey.kept)
    if folder_exists:
        known |= registry.reported_devices(batch, REGISTRATION_REPORT, REGISTERED_OUTCOMES)
    # Asked once, before the registry: while the feature is off the platform records no state, whatever the state
    # listing answers (a 403, or perhaps an empty list that would make every device look idle).
    if not platform.connection_monitoring_active():
        raise ConnectionMonitoringOff()
    device_ids = list(batch.device_ids(count))
    if not platform.check_device_type(batch.type_id, batch.class_id):  # a wrong --classId is refused here
        verb = "is" if len(known) == 1 else "are"
        here = f"; {counted(len(known), 'device')} of the batch {verb} known here" if known else ""
        raise FactoryError(f"device type {batch.type_id} does not exist in organisation {platform.org_id} "
                           f"({describe_endpoint(platform.config)}): no device of batch {batch.batch_id} is on the "
                           f"platform; check --typeId and the credentials{here}")
    held = platform.get_devices(batch.type_id, device_ids, page_size=LARGEST_PAGE_SIZE, one_by_one_up_to=1,
                                confirm_absent=known)
    if held:
        # A lagging listing can still show devices removed moments ago: before a few devices are called held with
        # their tokens lost, the platform is asked for each on its own (for a whole lost registry, the listing is
        # taken as it is: a GET per device would cost more than the report).
        unexplained = [device for device in held if device not in local]
        if 0 < len(unexplained) <= RECHECK_LIMIT:
            confirmed = platform.get_devices(batch.type_id, unexplained, one_by_one_up_to=len(unexplained))
            held = {device: document for device, document in held.items() if device in local or device in confirmed}
    statuses = {device: DeviceStatus(device, NOT_ON_PLATFORM if device not in held else NO_STATE,
                                     device in local, config=_config_state(device, local, survey))
                for device in device_ids}
    if batch.members is not None:
        for row in registry.manifest_rows(batch):
            if row.device_id in statuses:
                statuses[row.device_id].row = row
    report_path = registry.report_path(batch, REPORT_KIND) if folder_exists else None
    written = False
    _update(statuses, platform.connection_states(batch.type_id, batch.class_id, held))
    try:
        if options.wait_seconds:
            _wait_for_connections(batch, statuses, platform, options.wait_seconds, reporter, clock, sleep)
    finally:  # stopped while waiting (Ctrl-C, the platform gone): the report holds the last states known
        reporter.close()
        if report_path is not None:
            written = write_report(report_path, (status.record() for status in statuses.values()), reporter)
    lines = report_lines(batch, list(statuses.values()), options.colour, options.by)
    lines += action_lines(batch, registry, list(statuses.values()), pending)
    lines += attention_lines(survey.kept)
    if report_path is None:
        lines.append(f"No report written: {registry.batch_folder(batch)} does not exist (no configs of this batch here)")
    elif written:
        lines.append(f"Report: {report_path}")
    healthy = all(s.state == CONNECTED and s.local_config for s in statuses.values())
    return RunResult(lines, EXIT_OK if healthy else EXIT_DEVICES_FAILED)


def _config_state(device, local, survey):
    if device in local:
        return CONFIG_VALID
    if device in survey.damaged:
        return CONFIG_DAMAGED
    return CONFIG_KEPT if device in survey.kept else CONFIG_MISSING


def _update(statuses, states):
    """Apply the platform's state documents ({device_id: document}) to the devices it holds."""
    for device, document in states.items():
        status = statuses[device]
        if status.state == NOT_ON_PLATFORM:
            continue
        status.state = CONNECTED if document.get("connectionStatus") == CONNECTED else DISCONNECTED
        status.last_connect_time = document.get("lastConnectTime")
        status.last_disconnect_time = document.get("lastDisconnectTime")
        status.last_activity_time = document.get("lastActivityTime")


def _wait_for_connections(batch, statuses, platform, wait_seconds, reporter, clock, sleep):
    """Ask again, 2 s doubling to 30 s apart and never past the deadline, until every device is connected."""
    absent = sum(1 for s in statuses.values() if s.state == NOT_ON_PLATFORM)
    if absent:
        reporter.warning(f"not waiting: {counted(absent, 'device')} not on the platform can never connect")
        return
    deadline = clock() + wait_seconds
    reporter.start(len(statuses), unit="device", description="connected")
    reporter.advance(sum(1 for s in statuses.values() if s.state == CONNECTED))
    delay = FIRST_POLL_SECONDS
    while True:
        waiting = [device for device, s in statuses.items() if s.state != CONNECTED]
        remaining = deadline - clock()
        if not waiting or remaining <= 0:
            return
        sleep(min(delay, remaining))
        delay = min(delay * 2, MAX_POLL_SECONDS)
        _update(statuses, platform.connection_states(batch.type_id, batch.class_id, waiting))
        for device in waiting:
            if statuses[device].state == CONNECTED:
                reporter.item(f"Device connected: {batch.type_id}:{device}")


def report_lines(batch, statuses, colour, by="deviceId"):
    """The original sample's Device Connection State Report: a grid of device numbers, coloured on a terminal
    (green connected, red disconnected, plain no connection recorded, yellow not on the platform); piped, each
    state names its numbers in words. Then the summary line. A manifest batch's devices are named by id, or by
    serial number (`by`)."""
    counts = Counter(s.state for s in statuses)
    heading = f"{batch.type_id}:{batch.batch_id}-x" if batch.members is None else (
        f"{batch.type_id}, batch {batch.batch_id}, by {by}")
    lines = [_RULE, "Device Connection State Report", "", heading, ""]
    label = (lambda s: _number(batch, s.device_id)) if batch.members is None else (lambda s: _label(s, by))
    join = _ranges if batch.members is None else (lambda names: ", ".join(names) or "-")
    if colour:
        lines.append(" / ".join(_paint(STATE_LABELS[state], state) for state in STATES) + "   (* no local config)")
        lines.append(_RULE)
        lines += _grid(statuses, label)
    else:
        lines.append(_RULE)
        for state in STATES:
            numbers = [label(s) for s in statuses if s.state == state]
            lines.append(f"{STATE_LABELS[state]} ({len(numbers)}): {join(numbers)}")
        numbers = [label(s) for s in statuses if not s.local_config]
        lines.append(f"no local config ({len(numbers)}): {join(numbers)}")
    lines.append("")
    with_config = sum(1 for s in statuses if s.local_config)
    damaged = sum(1 for s in statuses if s.config == CONFIG_DAMAGED)
    damaged_note = f", {damaged} {REPAIR_ADVICE}" if damaged else ""
    lines.append(summary_head(batch, len(statuses),
        f"{counts[CONNECTED]} connected, {counts[DISCONNECTED]} disconnected, {counts[NO_STATE]} "
        f"with no connection recorded since monitoring was activated, {counts[NOT_ON_PLATFORM]} not on the platform; "
        f"{with_config} with a local config{damaged_note}."))
    return lines


def action_lines(batch, registry, statuses, pending=frozenset()):
    """What the user must do: a device held with no config has lost its token, unless the token is pending in the
    journal of an interrupted registration; a config whose device is gone cannot connect."""
    lines = []
    # A damaged config (or a file that is another device's) is no lost token: custody's lines name it to repair.
    unconfigured = [s.device_id for s in statuses
                    if s.state != NOT_ON_PLATFORM and s.config == CONFIG_MISSING]
    waiting = [f"{batch.type_id}:{device}" for device in unconfigured if device in pending]
    if waiting:
        lines.append(f"Needs action: {counted(len(waiting), 'device')} on the platform whose tokens are pending in "
                     f"the journal of an interrupted registration (nothing is lost): run deviceRegistrator.py "
                     f"again to write their configs: {listed(waiting)}")
    lost = [f"{batch.type_id}:{device}" for device in unconfigured if device not in pending]
    if lost:
        lines.append(f"Needs action: {counted(len(lost), 'device')} on the platform without a local config, so their "
                     f"tokens are lost: remove them with deviceDecommissioner.py and register them again: {listed(lost)}")
    orphans = [str(registry.config_path(batch, s.device_id)) for s in statuses
               if s.state == NOT_ON_PLATFORM and s.local_config]
    if orphans:
        lines.append(f"Needs action: {counted(len(orphans), 'config')} whose device the platform does not hold: delete "
                     f"them and run deviceRegistrator.py to register the devices again: {listed(orphans)}")
    return lines


def _number(batch, device_id):
    """A device's number as its id spells it: 0001, ..., 10000."""
    return device_id[len(batch.batch_id) + 1:]


def _label(status, by):
    """A manifest batch's device as the report names it: its id, or its serial number (its id in brackets when
    its row gives none)."""
    if by == "serialNumber":
        serial = status.row.serial_number if status.row is not None else None
        return serial if serial else f"({status.device_id})"
    return status.device_id


def _grid(statuses, label):
    width = max(len(label(s)) for s in statuses) + 1
    lines = []
    for start in range(0, len(statuses), GRID_COLUMNS):
        cells = []
        for status in statuses[start:start + GRID_COLUMNS]:
            text = (label(status) + ("" if status.local_config else "*")).ljust(width)
            cells.append(_paint(text, status.state))
        lines.append(" ".join(cells).rstrip())
    return lines


def _paint(text, state):
    colour = _COLOURS.get(state)
    return f"{colour}{text}{_RESET}" if colour else text


def _ranges(numbers):
    """'0001-0005, 0008' from consecutive device numbers (as their ids spell them); '-' for none."""
    if not numbers:
        return "-"
    runs, first, last = [], numbers[0], numbers[0]
    for number in numbers[1:]:
        if int(number) == int(last) + 1:
            last = number
            continue
        runs.append(first if first == last else f"{first}-{last}")
        first = last = number
    runs.append(first if first == last else f"{first}-{last}")
    return ", ".join(runs)
