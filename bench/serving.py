"""Serving throughput through Ray Serve's gRPC proxy, under enough concurrent clients to fill batches:

  (a) base model only; (b) every request of a batch a different concept (cold: each fetched on
  first use; steady: resident); (c) concepts drawn Zipf-distributed from a catalogue of published
  ones, with device and host tiers smaller than the catalogue (cold: from an empty cache; steady:
  after a warm-up of the same traffic). With `--sweep`: throughput against the number of distinct
  concepts per batch and against the catalogue size, plotted to bench/results/serving-*-sweep.png.

    python -m bench.serving [--model tiny|sd15] [--device cpu|cuda] [--sweep] [--profile]

Per scenario: images/s, latency p50/p95/p99, mean batch fill (requests per batch over the maximum)
and queue time; the ratios b/a and c/a (steady state, measured side by side in one run); concept
load latency per tier, the merge of two concepts and publish → first image. Writes
bench/results/serving-{model}-{cpu|gpu}.{json,md}. Starts its own registry (in-process) and Ray.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import device_name, results_heading, write_result
from proto import generator_pb2
from serving.client import GeneratorClient
from serving.config import ServingConfig
from serving.registry.config import RegistryConfig
from serving.registry.server import start_registry
from shared.artifact import to_bytes
from shared.basemodel import BaseSpec, load_base_model
from shared.registry_client import RegistryClient
from tests.support.synthetic import random_concept

TOKEN = "bench-operator"
MiB = 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Load:
    """What the clients saw of one scenario."""

    wall_s: float
    latencies_s: list[float] = field(default_factory=list)
    batch_requests: list[int] = field(default_factory=list)
    queue_ms: list[float] = field(default_factory=list)
    images: int = 0

    def summary(self, max_batch: int) -> dict[str, float]:
        ms = np.asarray(self.latencies_s) * 1000.0
        return {
            "requests": len(self.latencies_s),
            "images_per_s": self.images / self.wall_s,
            "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)),
            "mean_batch_requests": statistics.fmean(self.batch_requests),
            "mean_batch_fill": statistics.fmean(self.batch_requests) / max_batch,
            "queue_p50_ms": float(np.percentile(self.queue_ms, 50)),
        }


def run_load(client: GeneratorClient, requests: Sequence[generator_pb2.GenerateRequest], concurrency: int) -> Load:
    """Send every request with `concurrency` in flight; images/s over the wall time of the whole set."""
    load = Load(0.0)
    lock = threading.Lock()

    def one(message: generator_pb2.GenerateRequest) -> None:
        started = time.perf_counter()
        response = client.generate(message)
        with lock:
            load.latencies_s.append(time.perf_counter() - started)
            load.batch_requests.append(response.batch_requests)
            load.queue_ms.append(response.timings.queue_ms)
            load.images += len(response.images)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, requests))
    load.wall_s = time.perf_counter() - started
    return load


def zipf_ids(catalogue: int, count: int, exponent: float, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, catalogue + 1) ** exponent
    return [int(i) for i in rng.choice(catalogue, size=count, p=weights / weights.sum())]


def concept_id(i: int) -> str:
    return f"c{i:04d}"


def publish_catalogue(registry: RegistryClient, spec: BaseSpec, args: argparse.Namespace) -> dict[str, Any]:
    """Low-rank concepts (rank `--rank`), every `--full-every`-th one full (dense K/V of every layer)."""
    started, sizes = time.perf_counter(), {"lowrank": 0, "full": 0}
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32
    for i in range(args.catalogue):
        full = args.full_every > 0 and i % args.full_every == args.full_every - 1
        header, delta = random_concept(
            spec, concept_id(i), seed=i, rank=None if full else args.rank, dtype=dtype, scale=0.05
        )
        artifact = to_bytes(header, delta)
        sizes["full" if full else "lowrank"] = len(artifact)
        registry.publish(artifact, public=True)  # anonymous clients may use it
    return {"publish_s": time.perf_counter() - started, "concept_bytes": sizes}


def model_dir(kind: str, work: Path) -> Path:
    """The base model as a diffusers directory (random SD 1.5 weights for `sd15`, saved in fp16)."""
    if kind == "tiny":
        from serving.basemodels import materialize_tiny

        return materialize_tiny(work / "tiny")
    from bench.engine import build_model

    target = work / "sd15"
    base, _ = build_model("sd15", "cpu", torch.float16)
    base.pipeline.save_pretrained(target, safe_serialization=True)
    return target


class Bench:
    """One registry, one Serve application, the clients; scenarios as methods."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.model_dir = model_dir(args.model, work)
        self.spec = load_base_model(self.model_dir).spec
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        config = RegistryConfig(data_dir=work / "registry", metrics_port=None)
        self._registry_handle = asyncio.run_coroutine_threadsafe(
            start_registry(config, base_specs=[self.spec], tokens={TOKEN: "*"}), self._loop
        ).result()
        self.registry_target = f"127.0.0.1:{self._registry_handle.port}"
        self.registry = RegistryClient(self.registry_target, token=TOKEN)
        self.work = work

    def serve(self, bytes_per_concept: int) -> None:
        import ray
        from ray import serve

        from serving.app import run_app

        args = self.args
        cached = args.device_cache * bytes_per_concept
        self.config = ServingConfig(
            grpc_port=free_port(),
            http_port=free_port(),
            metrics_export_port=free_port(),
            base_model={"path": self.model_dir, "device": args.device, "dtype": args.dtype, "compile": args.compile},
            registry={"address": self.registry_target, "token": TOKEN},
            cache={
                "device_max_bytes": cached,
                "host_max_bytes": 2 * cached,
                "disk_dir": self.work / "concepts",
                "reg_cache_dir": self.work / "creg",
            },
            batching={"max_batch_size": args.batch, "batch_wait_timeout_s": 0.01},
            queue={"max_ongoing_requests": 2 * args.batch, "max_queued_requests": 4 * args.clients},
            ray_actor_options={"num_cpus": 1, "num_gpus": "auto"},
            limits={"max_steps": max(100, args.steps)},
        )
        ray.init(include_dashboard=False, log_to_driver=False)
        run_app(self.config)
        self.client = GeneratorClient(f"127.0.0.1:{self.config.grpc_port}", application=self.config.app_name)
        self.stats = serve.get_deployment_handle("Generator", app_name=self.config.app_name).cache_stats

    def request(self, seed: int, concept: int | None) -> generator_pb2.GenerateRequest:
        steps = self.args.steps
        if concept is None:
            return GeneratorClient.request("photo of a dog", steps=steps, seed=seed)
        return GeneratorClient.request(
            f"photo of a <{concept_id(concept)}> dog", concepts=[concept_id(concept)], steps=steps, seed=seed
        )

    def load(self, concepts: Sequence[int | None], seed: int = 0) -> Load:
        return run_load(self.client, [self.request(seed + i, c) for i, c in enumerate(concepts)], self.args.clients)

    def tier_hits(self) -> dict[str, int]:
        hits = self.stats.remote().result()["hits"]
        return {t: int(hits.get(t, 0)) for t in ("device", "host", "disk", "registry")}

    def close(self) -> None:
        import ray
        from ray import serve

        self.client.close()
        serve.shutdown()
        ray.shutdown()
        asyncio.run_coroutine_threadsafe(self._registry_handle.stop(0), self._loop).result()


def _pooled(loads: Sequence[Load], max_batch: int) -> dict[str, Any]:
    """Latencies and batches of every round together; images/s the median over rounds."""
    pooled = Load(sum(load.wall_s for load in loads))
    for load in loads:
        pooled.latencies_s += load.latencies_s
        pooled.batch_requests += load.batch_requests
        pooled.queue_ms += load.queue_ms
        pooled.images += load.images
    summary = pooled.summary(max_batch)
    summary["images_per_s"] = statistics.median(load.images / load.wall_s for load in loads)
    summary["rounds"] = len(loads)
    return summary


def scenarios(bench: Bench) -> dict[str, Any]:
    """Cold starts once each; then `--rounds` rounds in which a, b and c (steady) take turns, so that a
    drift in the machine's speed shifts them alike and leaves their ratios fair."""
    args, n, batch = bench.args, bench.args.requests, bench.args.batch
    bench.load([None] * (2 * args.clients))  # warm-up: the first batches of every size
    results: dict[str, Any] = {}
    distinct = [args.catalogue - 1 - i % batch for i in range(n)]  # `batch` concepts, rare in the Zipf traffic
    results["b_distinct_cold"] = bench.load(distinct[:batch] * 2).summary(batch)  # each fetched on first use
    zipf = iter(zipf_ids(args.catalogue, args.warmup + (args.rounds + 1) * n, args.zipf, seed=1))
    before = bench.tier_hits()
    results["c_zipf_cold"] = bench.load([next(zipf) for _ in range(n)], seed=10_000).summary(batch)
    bench.load([next(zipf) for _ in range(args.warmup)], seed=20_000)
    middle = bench.tier_hits()
    rounds: dict[str, list[Load]] = {"a_base": [], "b_distinct_steady": [], "c_zipf_steady": []}
    for r in range(args.rounds):
        rounds["a_base"].append(bench.load([None] * n, seed=100_000 * (r + 1)))
        rounds["b_distinct_steady"].append(bench.load(distinct, seed=100_000 * (r + 1)))
        rounds["c_zipf_steady"].append(bench.load([next(zipf) for _ in range(n)], seed=100_000 * (r + 1) + 50_000))
    after = bench.tier_hits()
    results.update({name: _pooled(loads, batch) for name, loads in rounds.items()})
    for name, (start, end) in {"c_zipf_cold": (before, middle), "c_zipf_steady": (middle, after)}.items():
        hits = {t: end[t] - start[t] for t in end}
        results[name]["tier_hits"] = hits
        results[name]["memory_hit_rate"] = (hits["device"] + hits["host"]) / max(1, sum(hits.values()))
    return results


def sweep(bench: Bench) -> dict[str, Any]:
    """Steady-state throughput relative to a base run just before it, against distinct concepts per
    batch and against the catalogue size (the same Zipf traffic as (c), over the first ids)."""
    args, n = bench.args, bench.args.requests

    def relative(concepts: list[int], seed: int) -> float:
        """Median over `--rounds` of (images/s of `concepts`) / (images/s of base just before)."""
        ratios = []
        for r in range(args.rounds):
            base = bench.load([None] * n, seed=seed + 1000 * r)
            load = bench.load(concepts, seed=seed + 1000 * r)
            ratios.append((load.images / load.wall_s) / (base.images / base.wall_s))
        return statistics.median(ratios)

    out: dict[str, Any] = {"distinct_per_batch": {}, "catalogue": {}}
    for distinct in (1, 4, 16):
        concepts = [i % distinct for i in range(n)]
        bench.load(concepts[: 2 * distinct])  # resident first
        out["distinct_per_batch"][distinct] = relative(concepts, seed=60_000 + distinct)
    for catalogue in (10, 100, 1000):
        if catalogue > args.catalogue:
            continue
        zipf = zipf_ids(catalogue, args.warmup + n, args.zipf, seed=1)
        bench.load(zipf[: args.warmup], seed=40_000)
        out["catalogue"][catalogue] = relative(zipf[args.warmup :], seed=70_000 + catalogue)
    return out


def publish_to_first_image_ms(bench: Bench) -> float:
    header, delta = random_concept(bench.spec, "fresh", seed=99_999, rank=bench.args.rank, scale=0.05)
    started = time.perf_counter()
    bench.registry.publish(to_bytes(header, delta), public=True)
    bench.client.generate(GeneratorClient.request("a <fresh> dog", concepts=["fresh"], steps=bench.args.steps, seed=1))
    return (time.perf_counter() - started) * 1000.0


def table(payload: dict[str, Any]) -> str:
    rows = [
        *results_heading(
            f"Serving through the Ray Serve gRPC proxy: {payload['model']} on {payload['device']}",
            payload["command"],
            f"{payload['steps']} steps, batches of up to {payload['max_batch']}, {payload['clients']} concurrent "
            f"clients, catalogue of {payload['catalogue']}; steady states are the median of {payload['rounds']} "
            "rounds in which a, b and c take turns, cold starts are measured once.",
        ),
        "| scenario | images/s | p50 ms | p95 ms | p99 ms | mean batch fill | queue p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in payload["scenarios"].items():
        rows.append(
            f"| {name} | {r['images_per_s']:.2f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} "
            f"| {r['mean_batch_fill']:.2f} | {r['queue_p50_ms']:.0f} |"
        )
    steady_hits = payload["scenarios"]["c_zipf_steady"]["memory_hit_rate"]
    publish_ms = payload.get("publish_to_first_image_ms", float("nan"))
    rows += [
        "",
        f"Steady state: b/a {payload['ratio_b_over_a']:.3f}, c/a {payload['ratio_c_over_a']:.3f} "
        f"(cold: b/a {payload['ratio_b_cold_over_a']:.3f}, c/a {payload['ratio_c_cold_over_a']:.3f}); "
        f"Zipf memory hit rate in steady state {steady_hits:.2f}.",
        f"Publish → first image with the new concept: {publish_ms:.0f} ms.",
    ]
    t = payload["tier_latency_ms"]
    rows.append(
        f"One concept to the device (median of {t['concepts']}): from host RAM {t['host_to_device_ms']:.1f} ms, "
        f"from disk {t['disk_to_device_ms']:.1f} ms, from the registry {t['registry_to_device_ms']:.1f} ms; "
        f"merge of two {t['merge_two_ms']:.0f} ms (C_regᵀC_reg built once in {t['regularization_stats_ms']:.0f} ms)."
    )
    for process, shares in payload.get("profile", {}).items():
        if isinstance(shares, dict):
            parts = ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
            rows.append(f"Profile of the {process} (share of busy samples): {parts}.")
    for part, error in payload.get("errors", {}).items():
        rows.append(f"{part} failed: {error}")
    if "sweep" in payload:
        s = payload["sweep"]
        distinct = ", ".join(f"{k}: {v:.3f}" for k, v in s["distinct_per_batch"].items())
        catalogue = ", ".join(f"{k}: {v:.3f}" for k, v in s["catalogue"].items())
        rows += [
            "",
            f"Steady state relative to base: distinct concepts per batch {distinct}; catalogue size {catalogue}.",
        ]
    return "\n".join(rows) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "sd15"], default="tiny")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the replica's device)")
    parser.add_argument(
        "--dtype", choices=["fp32", "fp16", "bf16"], default=None, help="default: fp16 on cuda, fp32 on cpu"
    )
    parser.add_argument("--steps", type=int, default=None, help="default: 20 for sd15, 10 for tiny")
    parser.add_argument("--batch", type=int, default=16, help="max_batch_size of the replica")
    parser.add_argument("--clients", type=int, default=None, help="concurrent clients; default 2 × batch")
    parser.add_argument("--requests", type=int, default=64, help="requests per measured scenario")
    parser.add_argument("--warmup", type=int, default=128, help="Zipf requests before its steady state is measured")
    parser.add_argument("--rounds", type=int, default=3, help="rounds in which a, b and c take turns")
    parser.add_argument("--catalogue", type=int, default=1000)
    parser.add_argument(
        "--device-cache", type=int, default=100, help="concepts the device tier holds (host: twice that)"
    )
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--rank", type=int, default=4, help="rank of the low-rank concepts (sd15: 16)")
    parser.add_argument("--full-every", type=int, default=0, help="every N-th concept full (dense); 0: none")
    parser.add_argument("--compile", action="store_true", help="torch.compile the replica's UNet")
    parser.add_argument(
        "--sweep", action="store_true", help="also distinct-per-batch and catalogue-size sweeps, plotted"
    )
    parser.add_argument("--profile", type=float, default=0.0, help="py-spy the replica and proxy for this many seconds")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    args = parser.parse_args(argv)
    args.dtype = args.dtype or ("fp16" if args.device.startswith("cuda") else "fp32")
    args.steps = args.steps or (20 if args.model == "sd15" else 10)
    args.clients = args.clients or 2 * args.batch
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from bench.serving_tiers import tier_latencies

    work = Path(tempfile.mkdtemp(prefix="cdserve-bench-"))
    bench = Bench(args, work)
    catalogue = publish_catalogue(bench.registry, bench.spec, args)
    tiers = tier_latencies(bench, [concept_id(i) for i in range(min(args.catalogue, 8))])
    bench.serve(catalogue["concept_bytes"]["lowrank"])
    try:
        results = scenarios(bench)
        base = results["a_base"]["images_per_s"]
        payload: dict[str, Any] = {
            "command": "python -m bench.serving " + " ".join(argv if argv is not None else sys.argv[1:]),
            "device": device_name(args.device),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "date": time.strftime("%Y-%m-%d"),
            "model": args.model,
            "dtype": args.dtype,
            "steps": args.steps,
            "max_batch": args.batch,
            "clients": args.clients,
            "catalogue": args.catalogue,
            "device_cache_concepts": args.device_cache,
            "compile": args.compile,
            **catalogue,
            "scenarios": results,
            "ratio_b_over_a": results["b_distinct_steady"]["images_per_s"] / base,
            "rounds": args.rounds,
            "ratio_b_cold_over_a": results["b_distinct_cold"]["images_per_s"] / base,
            "ratio_c_over_a": results["c_zipf_steady"]["images_per_s"] / base,
            "ratio_c_cold_over_a": results["c_zipf_cold"]["images_per_s"] / base,
            "tier_latency_ms": tiers,
        }
        _attempt(payload, "publish_to_first_image_ms", lambda: publish_to_first_image_ms(bench))
        if args.sweep:
            _attempt(payload, "sweep", lambda: sweep(bench))
        if args.profile > 0:
            from bench.profile_serving import profile_replica

            zipf = zipf_ids(args.catalogue, int(args.profile * base * 1.5) + args.batch, args.zipf, seed=7)
            _attempt(
                payload,
                "profile",
                lambda: profile_replica(args.profile, lambda: bench.load(zipf, seed=50_000), work / "profile"),
            )
    finally:
        bench.close()
    device = "gpu" if args.device.startswith("cuda") else "cpu"
    name = f"serving-{args.model}-{device}"
    if "sweep" in payload:
        from bench.plot import plot_sweep

        plot = plot_sweep(payload["sweep"], (args.out or _results()) / f"{name}-sweep.png", title=name)
        payload["sweep_plot"] = plot.name
    markdown = table(payload)
    print(markdown)
    print(write_result(name, payload, table=markdown, folder=args.out))
    return payload


def _attempt(payload: dict[str, Any], key: str, part: Callable[[], Any]) -> None:
    """The later parts of a run are reported as failed, not lost with everything measured before."""
    try:
        payload[key] = part()
    except Exception as e:  # noqa: BLE001 - recorded in the result, the run goes on
        payload.setdefault("errors", {})[key] = f"{type(e).__name__}: {e}"[:500]


def _results() -> Path:
    from bench.common import RESULTS

    return RESULTS


if __name__ == "__main__":
    main()
