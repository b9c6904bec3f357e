"""What a script tells its user while it works, in one form for every script.

Library code reports through a `Reporter` and never prints: a line per device for small batches (the original
sample's output), a progress bar with rate and time left on a terminal for large ones (tqdm, on stderr), and
warnings as `<script>: warning: ...`. A reporter is never handed a token.
"""

import os
import sys

from tqdm import tqdm

LINE_PER_DEVICE_LIMIT = 100  # up to this many devices, a line per device, as the original sample printed


MOST_LISTED = 20  # names shown in one summary line; the rest are counted


def counted(number, noun):
    """'1 device', '2 devices'."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def listed(names, most=MOST_LISTED):
    """Up to `most` names, comma-separated, and how many more there are."""
    names = list(names)
    shown = ", ".join(names[:most])
    return shown + (f" ... and {len(names) - most} more" if len(names) > most else "")


def failure_lines(type_id, failures, most=MOST_LISTED):
    """Summary lines for failed devices, [(device_id, reason)]: one each, up to `most`, then how many more."""
    lines = [f"  failed: {type_id}:{device}: {reason}" for device, reason in failures[:most]]
    if len(failures) > most:
        lines.append(f"  ... and {len(failures) - most} more")
    return lines


class Reporter:
    """Where one script's progress lines, bar and warnings go."""

    def __init__(self, prog, out=None, err=None):
        self.prog = prog
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.per_device = True
        self._bar = None

    def start(self, total, unit="device", description=None):
        """Begin counting `total` items: lines when there are few, else a bar on a terminal (nothing when piped)."""
        self.close()
        self.per_device = total <= LINE_PER_DEVICE_LIMIT
        if not self.per_device and self.err.isatty():
            columns, rows = _terminal_size(self.err)
            self._bar = tqdm(total=total, unit=unit, desc=description, file=self.err, mininterval=0.2,
                             ncols=min(columns, 100), nrows=rows, leave=True)

    def item(self, line):
        """One item done: `line` is printed when the batch is small enough for a line per device."""
        if self.per_device:
            self._write(line, self.out)
        elif self._bar is not None:
            self._bar.update(1)

    def advance(self, count=1):
        """Items done that have no line of their own (polling, paging)."""
        if self._bar is not None:
            self._bar.update(count)

    def gauge(self, count, line):
        """A count that goes up and down (devices connected now): the bar shows it on a terminal; else `line`."""
        if self._bar is not None:
            self._bar.n = count
            self._bar.refresh()
        else:
            self._write(line, self.out)

    def warning(self, message):
        self._write(f"{self.prog}: warning: {message}", self.err)

    def info(self, message):
        """A line for the user that is neither a device's outcome nor a warning."""
        self._write(message, self.out)

    def close(self):
        """End the bar, if one is showing."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _write(self, line, stream):
        if self._bar is not None:
            self._bar.clear()  # a line printed under a bar would be overwritten by its next refresh
            print(line, file=stream, flush=True)
            self._bar.refresh()
        else:
            print(line, file=stream, flush=True)


def _terminal_size(stream):
    """(columns, rows) of the terminal; a terminal that reports no size (a serial console, a fresh pty) would
    get a bar of no width, or none at all: assume 80 x 24 there."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return 80, 24
    return size.columns or 80, size.lines or 24


class SilentReporter(Reporter):
    """Reports nothing: for benchmarks and tests that call library code directly."""

    def __init__(self):
        super().__init__("silent")

    def start(self, total, unit="device", description=None):
        self.per_device = total <= LINE_PER_DEVICE_LIMIT

    def _write(self, line, stream):
        pass
