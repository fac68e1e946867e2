"""A least-recently-used map bounded by bytes, with pinning.

Not thread-safe on purpose: `ConceptStore` owns one lock for all its tiers, so that a move between
tiers is one atomic step.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class _Slot(Generic[V]):
    value: V
    nbytes: int
    pins: int = 0


class ByteLRU(Generic[K, V]):
    """Entries with a size; `put` evicts unpinned entries, least recently used first, until the
    total fits `max_bytes`. Pinned entries (in use by a request) are never evicted, so the total may
    exceed the budget while they are pinned; the next `put` or `unpin` brings it back down."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._slots: OrderedDict[K, _Slot[V]] = OrderedDict()
        self.resident_bytes = 0

    def __contains__(self, key: K) -> bool:
        return key in self._slots

    def __len__(self) -> int:
        return len(self._slots)

    def keys(self) -> list[K]:
        """Least recently used first."""
        return list(self._slots)

    def get(self, key: K) -> V | None:
        """The value, marked most recently used; None when absent."""
        slot = self._slots.get(key)
        if slot is None:
            return None
        self._slots.move_to_end(key)
        return slot.value

    def put(self, key: K, value: V, nbytes: int, *, pin: bool = False) -> list[tuple[K, V]]:
        """Insert or replace as most recently used (`pin`: and pin it in the same step); returns the
        evicted (key, value) pairs. An entry larger than the whole budget is not kept unless pinned.
        """
        old = self._slots.pop(key, None)
        pins = 0
        if old is not None:
            self.resident_bytes -= old.nbytes
            pins = old.pins
        self._slots[key] = _Slot(value, nbytes, pins + int(pin))
        self.resident_bytes += nbytes
        return self._shrink()

    def pop(self, key: K) -> V | None:
        """Remove regardless of pins (the entry became invalid); the value or None."""
        slot = self._slots.pop(key, None)
        if slot is None:
            return None
        self.resident_bytes -= slot.nbytes
        return slot.value

    def pin(self, key: K) -> None:
        self._slots[key].pins += 1

    def unpin(self, key: K) -> list[tuple[K, V]]:
        """Release one pin (a no-op for an entry removed meanwhile); returns what had to go."""
        slot = self._slots.get(key)
        if slot is not None and slot.pins > 0:
            slot.pins -= 1
        return self._shrink()

    def pins(self, key: K) -> int:
        slot = self._slots.get(key)
        return slot.pins if slot else 0

    def _shrink(self) -> list[tuple[K, V]]:
        evicted: list[tuple[K, V]] = []
        for key in list(self._unpinned_oldest_first()):
            if self.resident_bytes <= self.max_bytes:
                break
            evicted.append((key, self.pop(key)))  # type: ignore[arg-type]
        return evicted

    def _unpinned_oldest_first(self) -> Iterator[K]:
        return (key for key, slot in self._slots.items() if slot.pins == 0)
