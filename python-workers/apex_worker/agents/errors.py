"""The provider failure that a later attempt may get past."""

from __future__ import annotations


class ProviderError(RuntimeError):
    """A provider call failed in a way a later attempt may not (a 5xx, a timeout, a cut
    connection, a resolver hiccup): the attempt fails retryable."""
