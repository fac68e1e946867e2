"""Concept load latency per tier and the merge of two concepts, measured in-process on the serving
device (no Ray): what a cache miss costs a request before its batch, tier by tier."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from serving.concepts.merger import ConceptMerger, MultiConcept
from serving.concepts.store import ConceptStore, TierBudgets
from serving.replica import DTYPES
from shared.basemodel import cross_attention_layers, load_base_model
from shared.merge import RegularizationCache, load_captions
from shared.text import PromptEncoder

if TYPE_CHECKING:
    from bench.serving import Bench

UNBOUNDED = 2**50


def tier_latencies(bench: Bench, concept_ids: Sequence[str]) -> dict[str, Any]:
    """Median ms to bring one concept to the device from the registry, from disk (a new store over
    the same folder, as after a restart) and from host RAM; then the closed-form merge of two."""
    device, dtype = torch.device(bench.args.device), DTYPES[bench.args.dtype]
    sync: Callable[[], None] = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    disk_dir = bench.work / "tier-bench"

    def store(device_max_bytes: int) -> ConceptStore:
        budgets = TierBudgets(device_max_bytes, UNBOUNDED, UNBOUNDED, UNBOUNDED)
        return ConceptStore(bench.spec, bench.registry, budgets, disk_dir, device=device, dtype=dtype)

    def acquire_ms(target: ConceptStore, concept_id: str) -> float:
        key = target.resolve(concept_id, None)
        sync()
        started = time.perf_counter()
        lease = target.acquire([key])
        sync()
        elapsed = (time.perf_counter() - started) * 1000.0
        lease.release()
        return elapsed

    demoting = store(device_max_bytes=0)  # every release demotes to host RAM
    registry_ms = [acquire_ms(demoting, c) for c in concept_ids]
    host_ms = [acquire_ms(demoting, c) for c in concept_ids]
    disk_ms = [acquire_ms(store(device_max_bytes=0), c) for c in concept_ids]
    result: dict[str, Any] = {
        "concepts": len(concept_ids),
        "registry_to_device_ms": statistics.median(registry_ms),
        "disk_to_device_ms": statistics.median(disk_ms),
        "host_to_device_ms": statistics.median(host_ms),
        "max_ms": {"registry": max(registry_ms), "disk": max(disk_ms), "host": max(host_ms)},
    }
    result.update(_merge_ms(bench, demoting, concept_ids[:2], device, dtype, sync))
    return result


def _merge_ms(
    bench: Bench,
    store: ConceptStore,
    concept_ids: Sequence[str],
    device: torch.device,
    dtype: torch.dtype,
    sync: Callable[[], None],
) -> dict[str, float]:
    base = load_base_model(bench.model_dir, device=device, dtype=dtype)
    encoder = PromptEncoder(base.pipeline.tokenizer, base.pipeline.text_encoder)
    merger = ConceptMerger(
        encoder,
        cross_attention_layers(base.pipeline.unet),
        base.spec.fingerprint,
        load_captions(),
        RegularizationCache(bench.work / "tier-creg"),
    )
    started = time.perf_counter()
    merger.regularization()
    reg_ms = (time.perf_counter() - started) * 1000.0
    lease = store.acquire([store.resolve(c, None) for c in concept_ids])
    try:
        times = []
        for _ in range(3):
            sync()
            started = time.perf_counter()
            merger.merge(MultiConcept.MERGE, lease.concepts).to(device, dtype)
            sync()
            times.append((time.perf_counter() - started) * 1000.0)
    finally:
        lease.release()
    del base
    return {"regularization_stats_ms": reg_ms, "merge_two_ms": statistics.median(times)}
