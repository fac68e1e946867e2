"""Metrics hooks of the concept store, free of any metrics library.

The store reports events by tier; `serving.metrics` turns them into Prometheus series inside Ray,
`CacheStats` counts them in plain Python (tests, benchmarks, the replica's stats). Labels are tiers
and outcomes only, never concept ids (unbounded).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Literal, Protocol

Tier = Literal["device", "host", "disk", "registry", "merged"]
TIERS: tuple[Tier, ...] = ("device", "host", "disk", "registry", "merged")


class CacheObserver(Protocol):
    def hit(self, tier: Tier) -> None:
        """A lookup was answered by `tier`."""

    def miss(self, tier: Tier) -> None:
        """`tier` did not hold the entry (the lookup went on to the next one)."""

    def evicted(self, tier: Tier, count: int = 1) -> None: ...

    def resident(self, tier: Tier, nbytes: int) -> None:
        """Bytes now held by `tier` (a gauge)."""

    def loaded(self, tier: Tier, seconds: float) -> None:
        """A concept was brought from `tier` into the device tier in `seconds` (decode, validate, move)."""

    def merged(self, seconds: float) -> None:
        """A merged set was computed (a merged-set cache miss)."""

    def watch_lag(self, seconds: float) -> None:
        """Time from a registry event's commit to the replica applying it."""


class CacheStats:
    """Counts of every event, thread-safe; `hit_rate()` is what the benchmark reports."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()
        self.evictions: Counter[str] = Counter()
        self.resident_bytes: dict[str, int] = {}
        self.loads: Counter[str] = Counter()
        self.merges = 0
        self.last_watch_lag_s = 0.0

    def hit(self, tier: Tier) -> None:
        with self._lock:
            self.hits[tier] += 1

    def miss(self, tier: Tier) -> None:
        with self._lock:
            self.misses[tier] += 1

    def evicted(self, tier: Tier, count: int = 1) -> None:
        with self._lock:
            self.evictions[tier] += count

    def resident(self, tier: Tier, nbytes: int) -> None:
        with self._lock:
            self.resident_bytes[tier] = nbytes

    def loaded(self, tier: Tier, seconds: float) -> None:
        with self._lock:
            self.loads[tier] += 1

    def merged(self, seconds: float) -> None:
        with self._lock:
            self.merges += 1

    def watch_lag(self, seconds: float) -> None:
        with self._lock:
            self.last_watch_lag_s = seconds

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "hits": dict(self.hits),
                "misses": dict(self.misses),
                "evictions": dict(self.evictions),
                "resident_bytes": dict(self.resident_bytes),
                "loads": dict(self.loads),
                "merges": self.merges,
                "last_watch_lag_s": self.last_watch_lag_s,
            }

    def hit_rate(self) -> float:
        """Share of concept lookups answered by memory (device or host) without decoding a file."""
        with self._lock:
            memory = self.hits["device"] + self.hits["host"]
            total = memory + self.hits["disk"] + self.hits["registry"]
            return memory / total if total else 0.0


class Observers:
    """Fans every event out to several observers (e.g. Prometheus and plain counters)."""

    def __init__(self, *observers: CacheObserver) -> None:
        self._observers = observers

    def _tell_each(self, event: Callable[[CacheObserver], None]) -> None:
        for observer in self._observers:
            event(observer)

    def hit(self, tier: Tier) -> None:
        self._tell_each(lambda o: o.hit(tier))

    def miss(self, tier: Tier) -> None:
        self._tell_each(lambda o: o.miss(tier))

    def evicted(self, tier: Tier, count: int = 1) -> None:
        self._tell_each(lambda o: o.evicted(tier, count))

    def resident(self, tier: Tier, nbytes: int) -> None:
        self._tell_each(lambda o: o.resident(tier, nbytes))

    def loaded(self, tier: Tier, seconds: float) -> None:
        self._tell_each(lambda o: o.loaded(tier, seconds))

    def merged(self, seconds: float) -> None:
        self._tell_each(lambda o: o.merged(seconds))

    def watch_lag(self, seconds: float) -> None:
        self._tell_each(lambda o: o.watch_lag(seconds))
