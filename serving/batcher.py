"""Batches that fill: requests wait in one queue, and a batch is cut only when the engine is free.

Ray Serve's `@serve.batch` cuts a batch as soon as its wait ends and then queues it behind the one
running, so under a backlog the engine works through many small batches, each cut from whatever
arrived during one short wait. Here the queue is read only once the previous batch has finished:
a backlog becomes full batches, and a lone request still waits at most `batch_wait_timeout_s` for
company. Batches run on one dedicated thread, so work queued on the event loop's default executor
(validation, concept loads, merges) can never hold the engine up, nor the engine hold it up.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BatchQueue(Generic[T, R]):
    """`await submit(item)` → its result, computed by `run(batch)` together with other items.

    `run` is blocking and returns one result per item, in order. An item whose caller went away
    before its batch was cut is handed to `discard` instead (to release what it holds).
    """

    def __init__(
        self,
        run: Callable[[list[T]], Sequence[R]],
        *,
        max_batch_size: int,
        batch_wait_timeout_s: float,
        discard: Callable[[T], None] = lambda _: None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.max_batch_size = max_batch_size
        self.batch_wait_timeout_s = batch_wait_timeout_s
        self._run = run
        self._discard = discard
        self._waiting: deque[tuple[T, asyncio.Future[R], float]] = deque()
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="batch")

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, future, time.monotonic()))
        self._arrived.set()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._serve())
        return await future

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_batch()
            batch = [self._waiting.popleft() for _ in range(min(self.max_batch_size, len(self._waiting)))]
            try:
                results = await loop.run_in_executor(self._executor, self._run, [item for item, _, _ in batch])
            except Exception as e:  # noqa: BLE001 - the whole run failed: every caller of the batch learns why
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            for (_, future, _), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _wait_for_batch(self) -> None:
        """Until `max_batch_size` live items wait, or the oldest has waited `batch_wait_timeout_s`.

        Under a backlog the oldest item has waited longer than that already: the batch is cut at once.
        """
        while True:
            self._drop_cancelled()
            if len(self._waiting) >= self.max_batch_size:
                return
            if self._waiting:
                remaining_s = self._waiting[0][2] + self.batch_wait_timeout_s - time.monotonic()
                if remaining_s <= 0:
                    return
            else:
                remaining_s = None
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining_s)
            except TimeoutError:
                pass

    def _drop_cancelled(self) -> None:
        if not any(future.cancelled() for _, future, _ in self._waiting):
            return
        live: deque[tuple[T, asyncio.Future[R], float]] = deque()
        for entry in self._waiting:
            if entry[1].cancelled():
                self._discard(entry[0])
            else:
                live.append(entry)
        self._waiting = live
