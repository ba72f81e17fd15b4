"""Exceptions a handler raises to say what should happen to its failed attempt.

Any other exception fails the attempt as retryable (the orchestrator retries while the
task has retries left). These two carry an explicit decision:

    raise Retry(after_s=30)          # e.g. a provider answered 429 with Retry-After: 30
    raise NoRetry("bad request")     # retrying cannot help; fail the task now
"""

from __future__ import annotations


class Retry(Exception):
    """Fail this attempt, retry no sooner than `after_s` seconds (when retries are left)."""

    def __init__(self, message: str = "handler asked for a retry", *, after_s: float | None = None):
        super().__init__(message)
        self.after_s = after_s


class NoRetry(Exception):
    """Fail this attempt and do not retry the task, whatever retries it has left."""
