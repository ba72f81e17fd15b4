"""The worker's semaphore, as a counter the reader can read: it asks Redis for exactly
as many entries as there are free slots, which `asyncio.Semaphore` cannot tell it."""

from __future__ import annotations

import asyncio


class Slots:
    """Only the reader takes slots and only finishing attempts give them back, so the
    count never races: both happen on the event loop, without an await in between."""

    __slots__ = ("_free", "_has_free", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        # Set while a slot is free (or the reader must wake up to notice a stop).
        self._has_free = asyncio.Event()
        self._has_free.set()

    @property
    def free(self) -> int:
        return self._free

    @property
    def used(self) -> int:
        return self.size - self._free

    def take(self, n: int = 1) -> None:
        if n > self._free:
            raise RuntimeError(f"took {n} slots with only {self._free} free")
        self._free -= n
        if self._free == 0:
            self._has_free.clear()

    def give_back(self) -> None:
        self._free += 1
        self._has_free.set()

    async def wait_free(self) -> None:
        await self._has_free.wait()

    def wake(self) -> None:
        """Wakes a reader waiting for a slot, e.g. so it sees that the worker stops."""
        self._has_free.set()
