"""Through Ray Serve's gRPC proxy: requests that pile up while a batch runs share the next batches,
which run at the configured maximum (reported by every response's `batch_requests`)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from serving.client import GeneratorClient
from tests.serving.conftest import LiveServe

APP = "fill"
MAX_BATCH = 4


def test_a_backlog_runs_in_batches_of_the_configured_maximum(live_serve: LiveServe) -> None:
    live_serve.deploy(
        APP,
        batching={"max_batch_size": MAX_BATCH, "batch_wait_timeout_s": 0.0},
        queue={"max_ongoing_requests": 4 * MAX_BATCH, "max_queued_requests": 64},
    )
    with live_serve.client(APP) as client:
        running = threading.Event()
        with ThreadPoolExecutor(2 * MAX_BATCH + 1) as pool:
            # A long request holds the engine; the backlog arrives while it runs, one by one.
            blocker = pool.submit(
                client.generate_with_progress,
                GeneratorClient.request("a long one", steps=60, seed=1),
                lambda _: running.set(),
            )
            assert running.wait(120)
            backlog = [GeneratorClient.request(f"photo of dog {i}", steps=2, seed=i) for i in range(2 * MAX_BATCH)]
            responses = list(pool.map(client.generate, backlog))
            assert blocker.result().batch_requests == 1
    assert [r.batch_requests for r in responses] == [MAX_BATCH] * (2 * MAX_BATCH)
