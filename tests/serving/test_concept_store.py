"""The concept store against a real registry: tiers, pinning, single-flight, hot swap."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from serving.concepts.observer import CacheStats
from serving.concepts.store import ConceptStore
from serving.concepts.watcher import RegistryWatcher
from shared.errors import IncompatibleBase, NotFound
from shared.registry_client import RegistryClient
from tests.registry.conftest import ServerThread
from tests.support.synthetic import random_concept

Publish = Callable[..., Any]


def stats(store: ConceptStore) -> CacheStats:
    assert isinstance(store.observer, CacheStats)
    return store.observer


def test_a_concept_travels_registry_then_device_then_host_and_back(
    make_store: Callable[..., ConceptStore], publish: Publish, tmp_path: Any
) -> None:
    a, b = publish("tier-a", seed=1), publish("tier-b", seed=2)
    one = make_store(disk_dir=tmp_path / "probe").acquire([("tier-a", a.version)])
    size = one.concepts[0].nbytes
    one.release()
    store = make_store(device_max_bytes=size, host_max_bytes=10 * size)
    with store.acquire([store.resolve("tier-a", None)]) as lease:
        assert lease.concepts[0].ref == f"tier-a@{a.version}"
    assert store.tier_of(("tier-a", a.version)) == "device"
    store.acquire([("tier-b", b.version)]).release()  # only one fits: a is demoted
    assert store.tier_of(("tier-a", a.version)) == "host"
    store.acquire([("tier-a", a.version)]).release()
    assert store.tier_of(("tier-a", a.version)) == "device" and store.tier_of(("tier-b", b.version)) == "host"
    s = stats(store)
    assert s.hits == {"registry": 2, "host": 1} and s.loads == {"registry": 2, "host": 1}
    assert s.evictions["device"] == 2 and store.resident_bytes()["device"] == size


def test_pinned_concepts_are_not_evicted_while_in_use(
    make_store: Callable[..., ConceptStore], publish: Publish
) -> None:
    a, b = publish("pin-a", seed=3), publish("pin-b", seed=4)
    store = make_store(device_max_bytes=1, host_max_bytes=0)
    with store.acquire([("pin-a", a.version)]):
        with store.acquire([("pin-b", b.version)]):
            assert store.tier_of(("pin-a", a.version)) == "device" == store.tier_of(("pin-b", b.version))
        assert store.tier_of(("pin-b", b.version)) == "disk"  # unpinned, over budget: gone from memory
        assert store.tier_of(("pin-a", a.version)) == "device"
    assert store.resident_bytes()["device"] == 0


def test_concurrent_requests_for_a_missing_concept_fetch_it_once(
    make_store: Callable[..., ConceptStore], publish: Publish
) -> None:
    info = publish("flight", seed=5)
    store = make_store()
    barrier = threading.Barrier(6)
    refs: list[str] = []

    def worker() -> None:
        barrier.wait()
        with store.acquire([store.resolve("flight", None)]) as lease:
            refs.append(lease.concepts[0].ref)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert refs == [f"flight@{info.version}"] * 6
    assert stats(store).hits["registry"] == 1


def test_the_disk_tier_survives_a_new_store(
    make_store: Callable[..., ConceptStore], publish: Publish, tmp_path: Any
) -> None:
    info = publish("on-disk", seed=6)
    make_store(disk_dir=tmp_path / "d").acquire([("on-disk", info.version)]).release()
    again = make_store(disk_dir=tmp_path / "d")
    again.acquire([("on-disk", info.version)]).release()
    assert stats(again).hits == {"disk": 1}


def test_unknown_and_foreign_concepts_fail_typed(
    make_store: Callable[..., ConceptStore], publish: Publish, foreign_spec: Any
) -> None:
    store = make_store()
    with pytest.raises(NotFound):
        store.resolve("no-such-concept", None)
    with pytest.raises(NotFound):
        store.acquire([("no-such-concept", 3)])
    info = publish("foreign", seed=7, base=foreign_spec)
    with pytest.raises(IncompatibleBase):
        store.acquire([("foreign", info.version)])
    assert store.resident_bytes()["device"] == 0


def test_events_switch_versions_evict_deletions_and_drop_merged_sets(
    make_store: Callable[..., ConceptStore], publish: Publish, operator: RegistryClient
) -> None:
    v1 = publish("swap", seed=8)
    store = make_store()
    assert store.resolve("swap", None) == ("swap", v1.version)
    store.acquire([("swap", v1.version)]).release()
    store.merged("merge", [("swap", v1.version), ("x", 1)], lambda: random_concept(store.spec, "m")[1])
    v2 = publish("swap", seed=9)
    store.apply_event(True, "swap", v2.version)
    assert store.resolve("swap", None) == ("swap", v2.version)
    assert store.resident_bytes()["merged"] == 0
    operator.delete(f"swap@{v2.version}")
    store.apply_event(False, "swap", v2.version)
    assert store.resolve("swap", None) == ("swap", v1.version)  # the latest live one again
    operator.delete("swap")
    store.apply_event(False, "swap", v1.version)
    assert store.tier_of(("swap", v1.version)) is None
    with pytest.raises(NotFound):
        store.resolve("swap", None)


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_the_watcher_follows_the_registry_across_a_restart(
    make_store: Callable[..., ConceptStore], publish: Publish, registry: ServerThread, operator: RegistryClient
) -> None:
    v1 = publish("watched", seed=10)
    store = make_store()
    watcher = RegistryWatcher(operator, store, store.observer, heartbeat_s=1).start()
    caught_up = lambda: watcher.sequence == registry.handle.registry.latest_sequence  # noqa: E731
    try:
        wait_for(caught_up)
        assert store.resolve("watched", None) == ("watched", v1.version)  # remembered from now on
        v2 = publish("watched", seed=11)
        wait_for(lambda: store.resolve("watched", None) == ("watched", v2.version))
        cursor = watcher.sequence
        registry.restart()
        v3 = publish("watched", seed=12)
        wait_for(lambda: watcher.sequence > cursor and caught_up())
        assert store.resolve("watched", None) == ("watched", v3.version)
        assert stats(store).last_watch_lag_s < 10
    finally:
        watcher.close()
