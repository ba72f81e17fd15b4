"""The per-attempt log budget: a handler in a loop must not flood Redis, the store and
every dashboard with its log (issue #13).

An attempt sends at most `max_lines` log lines and `max_bytes` bytes of log text; each
line is cut to `MAX_LINE_BYTES`. Once a line does not fit, it and every later line are
dropped and counted (the log stays a prefix of what the handler wrote, so what is shown
is never misleadingly patchy), and `take_summary()` says how much was lost when the
attempt ends.
"""

from __future__ import annotations

from apex_worker.protocol import LogLine

#: Longest log line sent, in UTF-8 bytes; longer ones are cut and marked.
MAX_LINE_BYTES = 64 * 1024
_CUT_MARK = " …[truncated]"


class LogBudget:
    __slots__ = (
        "dropped_bytes",
        "dropped_lines",
        "full",
        "max_bytes",
        "max_lines",
        "sent_bytes",
        "sent_lines",
    )

    def __init__(self, max_lines: int, max_bytes: int) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.sent_lines = 0
        self.sent_bytes = 0
        self.dropped_lines = 0
        self.dropped_bytes = 0
        #: A line did not fit: every later one is dropped too.
        self.full = False

    def admit(self, line: LogLine) -> LogLine | None:
        """`line` as it may be sent (its message cut to `MAX_LINE_BYTES`), or None if
        the attempt's budget is spent."""
        data = line.message.encode("utf-8", "replace")
        if len(data) > MAX_LINE_BYTES:
            keep = MAX_LINE_BYTES - len(_CUT_MARK.encode())
            line.message = data[:keep].decode("utf-8", "ignore") + _CUT_MARK
            size = len(line.message.encode("utf-8", "replace"))
        else:
            size = len(data)
        self.full = (
            self.full
            or self.sent_lines + 1 > self.max_lines
            or self.sent_bytes + size > self.max_bytes
        )
        if self.full:
            self.dropped_lines += 1
            self.dropped_bytes += len(data)
            return None
        self.sent_lines += 1
        self.sent_bytes += size
        return line

    def take_summary(self) -> str | None:
        """The line that says what was dropped since the last call, or None if nothing
        was. Lines dropped later (a sync handler's thread outliving its attempt) start a
        new count."""
        if not self.dropped_lines:
            return None
        lines = "line" if self.dropped_lines == 1 else "lines"
        summary = (
            f"{self.dropped_lines} more log {lines} ({self.dropped_bytes} bytes) dropped: "
            "per-attempt log cap"
        )
        self.dropped_lines = self.dropped_bytes = 0
        return summary
