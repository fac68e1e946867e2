"""Wakes Watch streams when the event log grows, and what a quiet one sends instead of an event.

The log itself lives in the metadata store.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True)
class Heartbeat:
    """Sent on an idle watch: nothing new up to `sequence`."""

    sequence: int
    time_ms: int


class EventHub:
    """The latest committed sequence number, with waiting for it to pass a cursor.

    Watchers read events from the store, then wait here; because the predicate compares numbers,
    an event committed between the read and the wait is never missed.
    """

    def __init__(self, latest_sequence: int) -> None:
        self._latest = latest_sequence
        self._closed = False
        self._changed = asyncio.Condition()

    @property
    def latest(self) -> int:
        return self._latest

    @property
    def closed(self) -> bool:
        return self._closed

    async def publish(self, sequence: int) -> None:
        async with self._changed:
            self._latest = max(self._latest, sequence)
            self._changed.notify_all()

    async def wait_beyond(self, cursor: int, timeout_s: float) -> bool:
        """True once an event after `cursor` exists (or the hub closed); False after `timeout_s`."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self._latest > cursor or self._closed), timeout_s)
            except TimeoutError:
                return False
        return True

    async def close(self) -> None:
        """End every watch (graceful stop), so that shutdown does not wait for their grace."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()
