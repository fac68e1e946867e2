"""The disk tier survives a replica restart: a new store over the same folder serves what the old
one fetched from disk (validated), without asking the registry for it again."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serving.concepts.disk import file_name
from serving.concepts.observer import CacheStats
from serving.concepts.store import ConceptStore

Publish = Callable[..., Any]


def stats(store: ConceptStore) -> CacheStats:
    assert isinstance(store.observer, CacheStats)
    return store.observer


def test_a_restarted_store_serves_fetched_concepts_from_disk_without_the_registry(
    make_store: Callable[..., ConceptStore], publish: Publish, tmp_path: Path
) -> None:
    keys = [("warm-a", publish("warm-a", seed=31).version), ("warm-b", publish("warm-b", seed=32).version)]
    before = make_store(disk_dir=tmp_path / "tier")
    with before.acquire(keys) as lease:
        fetched = {c.key: c.delta for c in lease.concepts}
    assert stats(before).hits == {"registry": 2}

    after = make_store(disk_dir=tmp_path / "tier")  # a new replica process over the same folder
    assert [after.tier_of(k) for k in keys] == ["disk", "disk"]
    assert after.resident_bytes()["disk"] == before.resident_bytes()["disk"] > 0
    with after.acquire(keys) as lease:
        for concept in lease.concepts:
            for name, layer in concept.delta.layers.items():
                for projection, weight in layer.items():
                    assert weight.to_dense().equal(fetched[concept.key].layers[name][projection].to_dense())
    assert stats(after).hits == {"disk": 2} and stats(after).loads == {"disk": 2}


def test_a_corrupted_disk_copy_is_dropped_and_fetched_again(
    make_store: Callable[..., ConceptStore], publish: Publish, tmp_path: Path
) -> None:
    key = ("warm-torn", publish("warm-torn", seed=33).version)
    make_store(disk_dir=tmp_path / "tier").acquire([key]).release()
    path = tmp_path / "tier" / file_name(key)
    data = bytearray(path.read_bytes())
    data[-8:] = bytes(8)  # the end of the tensor data: the content digest no longer matches
    path.write_bytes(bytes(data))

    restarted = make_store(disk_dir=tmp_path / "tier")
    with restarted.acquire([key]) as lease:
        assert lease.concepts[0].ref == f"warm-torn@{key[1]}"
    assert stats(restarted).misses["disk"] == 1 and stats(restarted).hits == {"registry": 1}
    assert path.read_bytes() != bytes(data)  # replaced by the registry's copy


def test_stale_partial_writes_are_deleted_at_start_and_fresh_ones_kept(
    make_store: Callable[..., ConceptStore], tmp_path: Path
) -> None:
    tier = tmp_path / "tier"
    tier.mkdir()
    stale, fresh = tier / "tmpold.part", tier / "tmpnew.part"
    stale.write_bytes(b"cut short by a crash")
    fresh.write_bytes(b"another replica is writing this")
    an_hour_ago = time.time() - 2 * 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    make_store(disk_dir=tier)
    assert not stale.exists() and fresh.exists()


def test_concurrent_loads_and_evictions_keep_the_disk_index_consistent(tmp_path: Path) -> None:
    """Requests load different concepts at once; the store writes and reads files outside its lock."""
    from concurrent.futures import ThreadPoolExecutor

    from serving.concepts.disk import DiskTier

    tier = DiskTier(tmp_path / "tier", max_bytes=10 * 100)  # ten files of 100 bytes

    def churn(worker: int) -> None:
        for i in range(300):
            key = (f"k{(worker * 7 + i) % 40}", 1)
            data = tier.read(key)
            assert data is None or data == bytes([int(key[0][1:])]) * 100
            tier.write(key, bytes([int(key[0][1:])]) * 100)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(churn, range(8)))
    assert tier.resident_bytes <= 1000
    assert len(list((tmp_path / "tier").glob("*.safetensors"))) == tier.resident_bytes // 100
