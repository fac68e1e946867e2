"""Serving throughput through Ray Serve's gRPC proxy, under concurrent load:

  (a) base model only, (b) every request a different concept (cold: each fetched on first use; warm:
  the same set again, resident), (c) concepts drawn Zipf-distributed
  from a catalogue of 1000 published ones, with a device+host cache smaller than the catalogue.

    python -m bench.serving [--requests 96] [--concurrency 8] [--steps 10] [--catalogue 1000]

Prints images/s and p50/p95 latency per scenario, the ratios b/a and c/a (measured side by side in
one run), the cache hit rate of (c), and publish → first-image latency; writes
bench/results/serving-{device}.json. Starts its own registry (in-process) and local Ray.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.common import device_name, write_result
from proto import generator_pb2
from serving.basemodels import materialize_tiny
from serving.client import GeneratorClient
from serving.config import ServingConfig
from serving.registry.config import RegistryConfig
from serving.registry.server import start_registry
from shared.artifact import to_bytes
from shared.basemodel import load_base_model
from shared.registry_client import RegistryClient
from shared.synthetic import random_concept

TOKEN = "bench-operator"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_load(client: GeneratorClient, requests: list[generator_pb2.GenerateRequest], concurrency: int) -> dict[str, float]:
    """Send every request with `concurrency` in flight; images/s over the wall time, latency percentiles."""
    latencies: list[float] = []

    def one(message: generator_pb2.GenerateRequest) -> int:
        started = time.perf_counter()
        response = client.generate(message)
        latencies.append(time.perf_counter() - started)
        return len(response.images)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        images = sum(pool.map(one, requests))
    wall = time.perf_counter() - started
    return {
        "images_per_s": images / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": float(np.percentile(latencies, 95)) * 1000,
        "requests": len(requests),
    }


def zipf_ids(catalogue: int, count: int, exponent: float, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, catalogue + 1) ** exponent
    return list(rng.choice(catalogue, size=count, p=weights / weights.sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--catalogue", type=int, default=1000)
    parser.add_argument("--cached", type=int, default=100, help="concepts the device+host tiers hold together")
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--rank", type=int, default=4, help="low-rank factors of the synthetic concepts")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import serve

    from serving.app import run_app

    work = Path(tempfile.mkdtemp(prefix="cdserve-bench-"))
    model_dir = materialize_tiny(work / "tiny")
    spec = load_base_model(model_dir).spec
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    registry_config = RegistryConfig(data_dir=work / "registry", metrics_port=None)
    handle = asyncio.run_coroutine_threadsafe(
        start_registry(registry_config, base_specs=[spec], tokens={TOKEN: "*"}), loop
    ).result()
    target = f"127.0.0.1:{handle.port}"
    registry = RegistryClient(target, token=TOKEN)

    started = time.perf_counter()
    concept_bytes = 0
    for i in range(args.catalogue):
        artifact = to_bytes(*random_concept(spec, f"c{i:04d}", seed=i, rank=args.rank))
        concept_bytes = len(artifact)
        registry.publish(artifact)
    publish_s = time.perf_counter() - started

    budget = args.cached * concept_bytes // 2
    config = ServingConfig(
        grpc_port=free_port(), http_port=free_port(), metrics_export_port=free_port(),
        base_model={"path": model_dir},
        registry={"address": target, "token": TOKEN},
        cache={"device_max_bytes": budget, "host_max_bytes": budget, "disk_dir": work / "concepts", "reg_cache_dir": work / "creg"},
        batching={"max_batch_size": args.concurrency, "batch_wait_timeout_s": 0.01},
        ray_actor_options={"num_cpus": 1, "num_gpus": "auto"},
        limits={"max_steps": max(100, args.steps)},
    )  # fmt: skip
    ray.init(include_dashboard=False, log_to_driver=False)
    run_app(config)
    client = GeneratorClient(f"127.0.0.1:{config.grpc_port}", application=config.app_name)
    stats = serve.get_deployment_handle("Generator", app_name=config.app_name).cache_stats

    def request(i: int, concept: int | None) -> generator_pb2.GenerateRequest:
        if concept is None:
            return GeneratorClient.request("photo of a dog", steps=args.steps, seed=i)
        token = f"<c{concept:04d}>"
        return GeneratorClient.request(f"photo of a {token} dog", concepts=[f"c{concept:04d}"], steps=args.steps, seed=i)

    n = args.requests
    run_load(client, [request(i, None) for i in range(args.concurrency * 2)], args.concurrency)  # warm-up
    results: dict[str, dict[str, float]] = {}
    results["a_base"] = run_load(client, [request(i, None) for i in range(n)], args.concurrency)
    distinct = [request(i, args.catalogue - 1 - i) for i in range(n)]
    results["b_distinct_cold"] = run_load(client, distinct, args.concurrency)  # each concept fetched on first use
    results["b_distinct_warm"] = run_load(client, distinct, args.concurrency)  # the same set, now resident
    before = stats.remote().result()
    zipf = zipf_ids(args.catalogue, n, args.zipf, seed=0)
    results["c_zipf"] = run_load(client, [request(i, c) for i, c in enumerate(zipf)], args.concurrency)
    after = stats.remote().result()
    hits = {t: after["hits"].get(t, 0) - before["hits"].get(t, 0) for t in ("device", "host", "disk", "registry")}
    hit_rate = (hits["device"] + hits["host"]) / max(1, sum(hits.values()))

    fresh = to_bytes(*random_concept(spec, "fresh", seed=99_999, rank=args.rank))
    started = time.perf_counter()
    registry.publish(fresh)
    client.generate(GeneratorClient.request("a <fresh> dog", concepts=["fresh"], steps=args.steps, seed=1))
    publish_to_image_ms = (time.perf_counter() - started) * 1000

    base = results["a_base"]["images_per_s"]
    payload = {
        "device": device_name("cuda" if _has_cuda() else "cpu"),
        "model": "tiny (16x16)",
        "steps": args.steps,
        "concurrency": args.concurrency,
        "catalogue": args.catalogue,
        "concept_bytes": concept_bytes,
        "device_cache_bytes": budget,
        "host_cache_bytes": budget,
        "publish_catalogue_s": publish_s,
        "scenarios": results,
        "ratio_b_over_a": results["b_distinct_warm"]["images_per_s"] / base,
        "ratio_b_cold_over_a": results["b_distinct_cold"]["images_per_s"] / base,
        "ratio_c_over_a": results["c_zipf"]["images_per_s"] / base,
        "zipf_exponent": args.zipf,
        "zipf_tier_hits": hits,
        "zipf_memory_hit_rate": hit_rate,
        "publish_to_first_image_ms": publish_to_image_ms,
    }
    for name, r in results.items():
        print(f"{name:11s} {r['images_per_s']:7.2f} images/s  p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms")
    print(f"ratio b/a {payload['ratio_b_over_a']:.2f} (cold {payload['ratio_b_cold_over_a']:.2f})  c/a {payload['ratio_c_over_a']:.2f}  "
          f"zipf memory hit rate {hit_rate:.2f} {hits}  publish→first image {publish_to_image_ms:.0f} ms")  # fmt: skip
    suffix = "gpu" if _has_cuda() else "cpu"
    print(write_result(f"serving-tiny-{suffix}", payload))
    client.close()
    serve.shutdown()
    ray.shutdown()
    asyncio.run_coroutine_threadsafe(handle.stop(0), loop).result()


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
