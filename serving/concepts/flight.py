"""Single-flight: concurrent callers asking for the same missing thing share one computation."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class SingleFlight(Generic[K, T]):
    """`run(key, fn)`: the first caller runs `fn`, every caller arriving meanwhile gets its result
    (or its exception). Nothing is remembered afterwards: caching is the caller's business."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[K, Future[T]] = {}

    def run(self, key: K, fn: Callable[[], T]) -> T:
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = Future()
        if not leader:
            return flight.result()  # type: ignore[union-attr]
        try:
            result = fn()
        except BaseException as e:
            flight.set_exception(e)  # type: ignore[union-attr]
            raise
        else:
            flight.set_result(result)  # type: ignore[union-attr]
            return result
        finally:
            with self._lock:
                del self._flights[key]
