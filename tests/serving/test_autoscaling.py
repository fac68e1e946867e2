"""Autoscaling on a real local Ray: CPU replicas with fractional CPUs scale up under a burst of
concurrent requests and back down once it ends, within bounded time."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from serving.client import GeneratorClient
from tests.serving.conftest import LiveServe

APP = "scale"


def running_replicas() -> int:
    from ray import serve

    deployment = serve.status().applications[APP].deployments["Generator"]
    return deployment.replica_states.get("RUNNING", 0)


def wait_until(condition, timeout_s: float) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, "timed out"
        time.sleep(0.25)
    return time.monotonic() - started


def test_replicas_scale_up_under_a_burst_and_down_after(live_serve: LiveServe) -> None:
    from ray import serve

    live_serve.deploy(
        APP,
        ray_actor_options={"num_cpus": 0.1, "num_gpus": 0},
        batching={"max_batch_size": 1, "batch_wait_timeout_s": 0.0},
        autoscaling={
            "min_replicas": 1,
            "max_replicas": 2,
            "target_ongoing_requests": 1,
            "upscale_delay_s": 0.5,
            "downscale_delay_s": 2,
            "metrics_interval_s": 0.5,
            "look_back_period_s": 1,
        },
    )
    try:
        assert running_replicas() == 1
        stop = threading.Event()
        with live_serve.client(APP) as client:

            def keep_busy() -> None:
                while not stop.is_set():
                    client.generate(GeneratorClient.request("busy", steps=20, seed=1))

            with ThreadPoolExecutor(6) as pool:
                workers = [pool.submit(keep_busy) for _ in range(6)]
                try:
                    wait_until(lambda: running_replicas() == 2, timeout_s=60)
                finally:
                    stop.set()
                [w.result() for w in workers]
        wait_until(lambda: running_replicas() == 1, timeout_s=60)
    finally:
        serve.delete(APP)
