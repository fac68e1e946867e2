"""The concept cache on the serving device (the CPU here; `CDSERVE_TEST_DEVICE=cuda` on a GPU):
deltas in use live on the device, demoted ones in host RAM, and a merged set is computed once and
served from the device; the engine generates with it there."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from serving.concepts.merger import ConceptMerger
from serving.concepts.observer import CacheStats
from serving.concepts.resolver import ConceptResolver
from serving.concepts.store import ConceptStore, TierBudgets
from serving.engine import DeltaEngine, GenerationRequest
from shared.auth import OPERATOR_TENANT, Caller
from shared.basemodel import BaseModel, cross_attention_layers, prepare_base_model
from shared.delta import ConceptDelta
from shared.merge import RegularizationCache, load_captions
from shared.registry_client import RegistryClient

DEVICE = torch.device(os.environ.get("CDSERVE_TEST_DEVICE", "cpu"))
OPERATOR = Caller(tenant=OPERATOR_TENANT)
Publish = Callable[..., Any]


@pytest.fixture(scope="module")
def device_base() -> BaseModel:
    from shared.tiny import build_tiny_pipeline

    return prepare_base_model(build_tiny_pipeline(seed=0), source="tiny", device=DEVICE)


def devices_of(delta: ConceptDelta) -> set[torch.device]:
    tensors = [t for layer in delta.layers.values() for w in layer.values() for t in w.tensors()]
    return {t.device for t in [*tensors, *delta.token_embeddings.values()]}


def store_on_device(
    device_base: BaseModel, operator: RegistryClient, folder: Path, device_max_bytes: int
) -> ConceptStore:
    budgets = TierBudgets(device_max_bytes, 2**30, 2**30, 2**30)
    return ConceptStore(device_base.spec, operator, budgets, folder, device=DEVICE, observer=CacheStats())


def test_deltas_in_use_are_on_the_device_and_demoted_ones_in_host_ram(
    device_base: BaseModel, operator: RegistryClient, publish: Publish, tmp_path: Path
) -> None:
    key = ("tier-dev", publish("tier-dev", seed=51, rank=2).version)
    store = store_on_device(device_base, operator, tmp_path, device_max_bytes=1)  # every release demotes
    with store.acquire([key]) as lease:
        assert devices_of(lease.concepts[0].delta) == {DEVICE}
    assert store.tier_of(key) == "host"
    with store.acquire([key]) as lease:  # promoted again: a copy to the device, not a decode
        assert devices_of(lease.concepts[0].delta) == {DEVICE}
    assert isinstance(store.observer, CacheStats)
    assert store.observer.hits == {"registry": 1, "host": 1}


def test_a_merged_set_is_computed_once_and_served_on_the_device(
    device_base: BaseModel, operator: RegistryClient, publish: Publish, tmp_path: Path
) -> None:
    publish("tier-a", seed=52, modifier_token="<tier-a>"), publish("tier-b", seed=53, modifier_token="<tier-b>")
    store = store_on_device(device_base, operator, tmp_path / "disk", device_max_bytes=2**30)
    pipe = device_base.pipeline
    engine = DeltaEngine(device_base)
    merger = ConceptMerger(
        engine.prompts,
        cross_attention_layers(pipe.unet),
        device_base.spec.fingerprint,
        load_captions(),
        RegularizationCache(tmp_path / "creg"),
    )
    resolver = ConceptResolver(store, merger)
    first = resolver.resolve(["tier-a", "tier-b"], OPERATOR)
    second = resolver.resolve(["tier-b", "tier-a"], OPERATOR)
    try:
        assert second.delta is first.delta and devices_of(first.delta) == {DEVICE}
        assert isinstance(store.observer, CacheStats) and store.observer.merges == 1
        (result,) = engine.generate(
            [
                GenerationRequest(
                    "a <tier-a> dog and a <tier-b> dog", delta=first.delta, steps=2, height=16, width=16, seed=3
                )
            ]
        )
        assert result.images.shape == (1, 16, 16, 3) and bool((result.images >= 0).all())
    finally:
        first.release()
        second.release()
