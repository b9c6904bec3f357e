"""Custody of the only copy: the one place that writes over or deletes a device config.

A device's config holds the only copy of its token (the platform shows a token once). A file name is not an
identity: a config copied or restored into the wrong folder, two batch ids that differ only in case, or the
wrong organisation's credentials would otherwise let a run write over or delete another device's token. So every
write over, and every deletion of, a config goes through `Custody`, which first reads the file and checks that
it is exactly the device in question: orgId, typeId, deviceId and platform (`options.domain`, the SDK's default
domain when absent) against the platform the run talks to. A file that holds anything else is never written
over or deleted: it is kept and named in `Custody.kept` (path and what it holds, never its token), and the run
ends with "needs attention" (exit 3).

Verdicts on a config file:
    absent     no file
    ours       that very device of the run's platform: may be written over or deleted
    damaged    a file that does not read as a device config (torn, edited, unreadable): "damaged: repair it"
    foreign    a config of another device (typeId or deviceId) of the run's platform: kept
    elsewhere  a config of another organisation or domain (of any device): the run talks to the wrong platform
"""

import os
from dataclasses import dataclass, field

from .errors import EXIT_USAGE, FactoryError
from .localregistry import CONFIG_SUFFIX, REPAIR_ADVICE, DeviceConfigError, read_device_config, write_device_config
from .platform import DEFAULT_DOMAIN
from .reporting import counted

ABSENT, OURS, DAMAGED, FOREIGN, ELSEWHERE = "absent", "ours", "damaged", "foreign", "elsewhere"


class ConfigsOfAnotherPlatform(FactoryError):
    """The batch's configs belong to another organisation or domain than the run's credentials: bad input."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Home:
    """The platform a config belongs to, or a run talks to: an organisation at a domain."""

    org_id: str
    domain: str

    def __post_init__(self):
        object.__setattr__(self, "domain", self.domain.lower())  # host names are case-insensitive

    def __str__(self):
        return f"organisation {self.org_id} at {self.domain}"


def home_of(config):
    """The platform a (parsed) config belongs to: its orgId and its options.domain, or the SDK's default."""
    options = config.get("options")
    domain = options.get("domain") if isinstance(options, dict) else None
    return Home(config["identity"]["orgId"], domain if isinstance(domain, str) and domain else DEFAULT_DOMAIN)


@dataclass(frozen=True)
class Verdict:
    """What a config file holds, judged against the device it is named for and the run's platform."""

    kind: str  # ABSENT, OURS, DAMAGED, FOREIGN or ELSEWHERE
    path: object
    detail: str = ""  # why it is damaged, or what it holds (never a token)
    home: Home | None = None

    def describe(self):
        """One line: the path, and what it holds or why it cannot be read."""
        if self.kind == DAMAGED:
            return f"{self.path}: {REPAIR_ADVICE} ({self.detail})"
        return f"{self.path}: holds {self.detail}"


@dataclass
class Survey:
    """The configs of a batch's devices 1..N, judged: valid device ids in device order, and the others."""

    valid: list = field(default_factory=list)
    damaged: dict = field(default_factory=dict)  # device id -> Verdict
    foreign: dict = field(default_factory=dict)
    elsewhere: dict = field(default_factory=dict)

    @property
    def kept(self):
        """{device id: Verdict} of every file that is neither absent nor the device's own config here."""
        return {**self.damaged, **self.foreign, **self.elsewhere}


class Custody:
    """Writes over and deletes the configs of one batch, only when each file is that very device of `home`."""

    def __init__(self, registry, batch, home):
        self.registry, self.batch, self.home = registry, batch, home
        self.folder = registry.batch_folder(batch)
        self._folder_name = str(self.folder)
        self.kept = {}  # device id -> Verdict: files this run left alone although it meant to write or delete them

    @classmethod
    def of_run(cls, registry, batch, platform):
        """The custody of `batch`'s configs for a run that talks to `platform` (its organisation and domain)."""
        return cls(registry, batch, Home(platform.org_id, platform.domain))

    def judge(self, device_id):
        """Read the config file of `device_id` and say what it holds (see the module's docstring)."""
        path = os.path.join(self._folder_name, device_id + CONFIG_SUFFIX)  # a string: thousands are judged per run
        try:
            config = read_device_config(path)
        except DeviceConfigError as problem:
            if not os.path.lexists(path):
                return Verdict(ABSENT, path)
            if os.path.islink(path):  # never read, written or deleted through: what it points at is not ours to judge
                return Verdict(FOREIGN, path, f"a symbolic link to {os.readlink(path)}, not a config file")
            return Verdict(DAMAGED, path, str(problem).removeprefix(f"{path}: "))
        identity = config["identity"]
        home = home_of(config)
        holds = f"{identity['typeId']}:{identity['deviceId']} of {home}"
        if home != self.home:  # whichever device it is: the run talks to another platform than the configs'
            return Verdict(ELSEWHERE, path, holds, home)
        if (identity["typeId"], identity["deviceId"]) != (self.batch.type_id, device_id):
            return Verdict(FOREIGN, path, f"the config of another device, {holds}", home)
        return Verdict(OURS, path, holds, home)

    def survey(self, device_ids):
        """Judge the config of each of `device_ids` that has a file (stored_devices' order)."""
        survey = Survey()
        by_kind = {DAMAGED: survey.damaged, FOREIGN: survey.foreign, ELSEWHERE: survey.elsewhere}
        for device in device_ids:
            verdict = self.judge(device)
            if verdict.kind == OURS:
                survey.valid.append(device)
            elif verdict.kind != ABSENT:
                by_kind[verdict.kind][device] = verdict
        return survey

    def survey_batch(self, count):
        """Judge the configs of devices 1..`count` of the batch that have a file. FileNotFoundError: no folder."""
        return self.survey([device for number, device in self.registry.stored_devices(self.batch) if number <= count])

    def refuse_another_platform(self, survey, doing):
        """Raise ConfigsOfAnotherPlatform, naming both platforms, when a config of the survey belongs to another
        organisation or domain than the run's: `doing` says what is refused ('nothing was removed')."""
        if not survey.elsewhere:
            return
        device, verdict = next(iter(survey.elsewhere.items()))
        others = len(survey.elsewhere) - 1
        more = f" (and {counted(others, 'other config')})" if others else ""
        raise ConfigsOfAnotherPlatform(
            f"the config {verdict.path}{more} belongs to {verdict.home}, but the credentials reach {self.home}: "
            f"check WIOTP_API_KEY and WIOTP_OPTIONS_DOMAIN; {doing}")

    def write(self, device_id, token, **options):
        """Write the device's config, over nothing or over its own config only. Returns the path written, or None
        when the file holds something else (then it is kept, and named in `kept`)."""
        verdict = self.judge(device_id)
        if verdict.kind not in (ABSENT, OURS):
            self.kept[device_id] = verdict
            return None
        return write_device_config(self.folder, self.home.org_id, self.batch.type_id, device_id, token, **options)

    def delete(self, device_id):
        """Delete the device's config if it is that very device's of the run's platform. Returns whether a file
        was deleted; a file that holds anything else is kept and named in `kept`."""
        verdict = self.judge(device_id)
        if verdict.kind == ABSENT:
            return False
        if verdict.kind != OURS:
            self.kept[device_id] = verdict
            return False
        try:
            os.unlink(verdict.path)
        except FileNotFoundError:
            return False
        return True


def attention_lines(kept, most=20):
    """Summary lines for the files a run kept: "Needs attention: ..." and one line each (up to `most`)."""
    if not kept:
        return []
    lines = [f"Needs attention: {counted(len(kept), 'config file')} kept as they are (a file that is not its device's "
             f"own config of this platform is never written over or deleted):"]
    verdicts = list(kept.values())
    lines += [f"  {verdict.describe()}" for verdict in verdicts[:most]]
    if len(verdicts) > most:
        lines.append(f"  ... and {len(verdicts) - most} more")
    return lines
