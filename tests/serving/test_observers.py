"""The fan-out observer: every cache event reaches every observer, with its arguments."""

from __future__ import annotations

from serving.concepts.observer import CacheStats, Observers


def test_every_event_reaches_every_observer() -> None:
    first, second = CacheStats(), CacheStats()
    observers = Observers(first, second)
    observers.hit("device")
    observers.miss("disk")
    observers.evicted("host", 3)
    observers.resident("device", 1024)
    observers.loaded("registry", 0.5)
    observers.merged(0.25)
    observers.watch_lag(1.5)
    for stats in (first, second):
        assert stats.snapshot() == {
            "hits": {"device": 1},
            "misses": {"disk": 1},
            "evictions": {"host": 3},
            "resident_bytes": {"device": 1024},
            "loads": {"registry": 1},
            "merges": 1,
            "last_watch_lag_s": 1.5,
        }
