"""What the registrator tells the user while it works: a line per device for small batches, a progress bar
on a terminal for large ones, and a summary. It is never handed a token."""

import sys

LINE_PER_DEVICE_LIMIT = 100  # up to this many devices, print the seed's line per device
BAR_WIDTH = 40

OUTCOME_LINES = {
    "registered": "Device registration success: {device}",
    "recovered": "Device registration success: {device} (recovered from an interrupted run)",
    "already-present": "Device already registered: {device} (its config is kept)",
    "failed": "Device registration failed: {device}: {reason}",
    "pending": "Device registration unconfirmed: {device}: {reason}",
}


class Progress:
    """Reports device outcomes as they are known."""

    def __init__(self, type_id, total, out=None, err=None):
        self.type_id, self.total = type_id, total
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.done = 0
        self.per_device = total <= LINE_PER_DEVICE_LIMIT
        self.bar = not self.per_device and self.err.isatty()

    def device(self, device_id, outcome, reason=None):
        self.done += 1
        if self.per_device:
            print(OUTCOME_LINES[outcome].format(device=f"{self.type_id}:{device_id}", reason=reason), file=self.out)
        elif self.bar and (self.done % 200 == 0 or self.done == self.total):
            filled = BAR_WIDTH * self.done // self.total
            self.err.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.done}/{self.total} devices")
            if self.done == self.total:
                self.err.write("\n")
            self.err.flush()

    def warning(self, message):
        if self.bar:
            self.err.write("\n")
        print(f"warning: {message}", file=self.err)

    def summary(self, lines):
        if self.bar and self.done != self.total:
            self.err.write("\n")
        for line in lines:
            print(line, file=self.out)
