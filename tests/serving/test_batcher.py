"""The batch queue: a batch is cut when the engine is free, so a backlog runs in full batches."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from serving.batcher import BatchQueue


class Engine:
    """Records every batch it runs; `gate` holds the running batch until the test opens it."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def run(self, batch: list[int]) -> list[int]:
        self.batches.append(batch)
        self.threads.add(threading.current_thread().name)
        self.started.set()
        self.gate.wait(10)
        return [item * 10 for item in batch]


def test_a_backlog_runs_in_full_batches_in_arrival_order() -> None:
    engine = Engine()

    async def main() -> list[int]:
        queue = BatchQueue(engine.run, max_batch_size=4, batch_wait_timeout_s=0.5)
        return await asyncio.gather(*(queue.submit(i) for i in range(10)))

    assert asyncio.run(main()) == [i * 10 for i in range(10)]
    assert engine.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_requests_arriving_one_by_one_during_a_batch_form_one_full_batch() -> None:
    """The case `@serve.batch` gets wrong: it cuts each short wait's arrivals into a batch of its own."""
    engine = Engine()

    async def main() -> None:
        queue = BatchQueue(engine.run, max_batch_size=4, batch_wait_timeout_s=0.0)
        engine.gate.clear()
        first = asyncio.ensure_future(queue.submit(0))
        await asyncio.to_thread(engine.started.wait, 10)
        rest = []
        for i in range(1, 5):  # trickle in while batch [0] runs
            rest.append(asyncio.ensure_future(queue.submit(i)))
            await asyncio.sleep(0.01)
        engine.gate.set()
        await asyncio.gather(first, *rest)

    asyncio.run(main())
    assert engine.batches == [[0], [1, 2, 3, 4]]


def test_a_lone_request_waits_for_company_no_longer_than_the_timeout() -> None:
    engine = Engine()

    async def main() -> float:
        queue = BatchQueue(engine.run, max_batch_size=8, batch_wait_timeout_s=0.2)
        started = time.monotonic()
        assert await queue.submit(7) == 70
        return time.monotonic() - started

    waited = asyncio.run(main())
    assert 0.2 <= waited < 5.0 and engine.batches == [[7]]


def test_a_caller_gone_before_its_batch_is_discarded_not_run() -> None:
    engine, discarded = Engine(), []

    async def main() -> None:
        queue = BatchQueue(engine.run, max_batch_size=2, batch_wait_timeout_s=0.0, discard=discarded.append)
        engine.gate.clear()
        running = asyncio.ensure_future(queue.submit(0))
        await asyncio.to_thread(engine.started.wait, 10)
        gone, kept = asyncio.ensure_future(queue.submit(1)), asyncio.ensure_future(queue.submit(2))
        await asyncio.sleep(0.01)
        gone.cancel()
        engine.gate.set()
        assert await asyncio.gather(running, kept) == [0, 20]

    asyncio.run(main())
    assert engine.batches == [[0], [2]] and discarded == [1]


def test_batches_run_on_one_thread_of_their_own_and_a_failure_reaches_every_caller() -> None:
    calls: list[str] = []

    def failing(batch: list[int]) -> list[int]:
        calls.append(threading.current_thread().name)
        raise RuntimeError("engine broke")

    async def main() -> None:
        queue = BatchQueue(failing, max_batch_size=2, batch_wait_timeout_s=0.0)
        results = await asyncio.gather(queue.submit(1), queue.submit(2), queue.submit(3), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)

    asyncio.run(main())
    assert len(set(calls)) == 1 and calls[0].startswith("batch")


def test_a_batch_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        BatchQueue(lambda batch: batch, max_batch_size=0, batch_wait_timeout_s=0.0)
