"""The per-replica concept store: device → host RAM → local disk → registry, bounded by bytes.

* device tier: validated deltas on the engine's device and dtype, ready for a request; LRU, pinned
  while a request uses them. Evicted entries are demoted to the host tier.
* host tier: the same deltas in host RAM (a promotion is a copy, not a decode).
* disk tier: the artifact files as fetched (inclusive: written on every registry fetch).
* registry: fetched on a miss everywhere, one fetch per concept however many requests wait for it.
* merged sets: merged multi-concept deltas keyed by mode and the sorted (id, version) set.

"id" (no version) means the latest version; the store remembers the latest version of the ids it
has resolved, and who owns each version it has resolved (`Owner`: tenant and public flag from the
registry's ConceptInfo). The cache is shared by every tenant; the caller's visibility is checked on
every request against that owner (by the resolver), never by caching per tenant. `apply_event`
(fed by the registry Watch stream) keeps all of it current, evicts deleted versions and drops
merged sets of changed concepts. One lock guards the tiers; decoding, moving and fetching happen
outside it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from proto import common_pb2
from serving.concepts.disk import ConceptKey, DiskTier
from serving.concepts.flight import SingleFlight
from serving.concepts.lru import ByteLRU
from serving.concepts.observer import CacheObserver, CacheStats, Tier
from shared.artifact import ArtifactHeader, from_bytes
from shared.basemodel import BaseSpec
from shared.delta import ConceptDelta
from shared.errors import IncompatibleBase, InvalidArtifact

log = logging.getLogger("cdserve.serving")
MergedKey = tuple[str, tuple[ConceptKey, ...]]
"""(mode, sorted concept keys)."""


class ConceptSource(Protocol):
    """Where concepts come from on a miss: `shared.registry_client.RegistryClient` is one."""

    def get(self, ref: str) -> common_pb2.ConceptInfo: ...

    def fetch(self, ref: str) -> bytes: ...

    def list(self, *, id_prefix: str = "", all_versions: bool = False) -> Iterator[common_pb2.ConceptInfo]: ...


@dataclass(frozen=True)
class Owner:
    """Who may see a concept version (`shared.auth.Owned`); versions never change owner."""

    tenant: str
    public: bool


@dataclass(frozen=True)
class LoadedConcept:
    """A concept version decoded and ready to apply: its delta lives in one tier (device, or host once demoted)."""

    key: ConceptKey
    header: ArtifactHeader
    delta: ConceptDelta

    @property
    def ref(self) -> str:
        return f"{self.key[0]}@{self.key[1]}"

    @property
    def nbytes(self) -> int:
        return self.delta.nbytes


@dataclass(frozen=True)
class TierBudgets:
    device_max_bytes: int
    host_max_bytes: int
    disk_max_bytes: int
    merged_max_bytes: int


@dataclass
class ConceptLease:
    """Concepts a request uses; their device entries stay pinned until `release()` (idempotent)."""

    store: ConceptStore
    concepts: list[LoadedConcept] = field(default_factory=list)
    pinned: list[ConceptKey] = field(default_factory=list)

    def release(self) -> None:
        pinned, self.pinned = self.pinned, []
        if pinned:
            self.store._release(pinned)

    def __enter__(self) -> ConceptLease:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class ConceptStore:
    def __init__(
        self,
        spec: BaseSpec,
        source: ConceptSource,
        budgets: TierBudgets,
        disk_dir: Path,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        observer: CacheObserver | None = None,
    ) -> None:
        self.spec = spec
        self.device = torch.device(device)
        self.dtype = dtype
        self.observer: CacheObserver = observer or CacheStats()
        self._source = source
        self._lock = threading.Lock()
        self._device: ByteLRU[ConceptKey, LoadedConcept] = ByteLRU(budgets.device_max_bytes)
        self._host: ByteLRU[ConceptKey, LoadedConcept] = ByteLRU(budgets.host_max_bytes)
        self._disk = DiskTier(disk_dir, budgets.disk_max_bytes)
        self._merged: ByteLRU[MergedKey, ConceptDelta] = ByteLRU(budgets.merged_max_bytes)
        self._latest: dict[str, int] = {}
        self._owners: dict[ConceptKey, Owner] = {}
        """Of the versions resolved since they were published: one small entry each, dropped when
        the version is deleted; kept apart from the tiers so an eviction never costs a lookup."""
        self._epoch = 0
        """Counts applied registry events: a load or lookup that saw the epoch change while it ran
        does not cache its result, so a concurrent delete or publish is never undone."""
        self._loads: SingleFlight[ConceptKey, tuple[LoadedConcept, int]] = SingleFlight()
        self._merges: SingleFlight[MergedKey, ConceptDelta] = SingleFlight()
        self._lookups: SingleFlight[str, tuple[ConceptKey, Owner]] = SingleFlight()
        self._versions: dict[str, list[tuple[int, Owner]]] = {}
        """Live versions of ids whose latest a caller could not see, newest first (see `latest_visible`)."""
        self._version_lists: SingleFlight[str, list[tuple[int, Owner]]] = SingleFlight()
        self._report_resident()

    # -- versions ------------------------------------------------------------------------------

    def resolve(self, concept_id: str, version: int | None) -> ConceptKey:
        """The key of "id@version", or of the latest version of "id" (NotFound from the source).
        Its owner is known once this returns (the lookup that finds the latest version reads it)."""
        if version is not None:
            return concept_id, version
        with self._lock:
            latest = self._latest.get(concept_id)
        if latest is None:
            return self._lookups.run(concept_id, lambda: self._lookup(concept_id))[0]
        return concept_id, latest

    def owner(self, key: ConceptKey) -> Owner:
        """Who owns `key`, from the registry the first time (NotFound when it does not exist)."""
        with self._lock:
            owner = self._owners.get(key)
        if owner is None:
            ref = f"{key[0]}@{key[1]}"
            owner = self._lookups.run(ref, lambda: self._lookup(ref))[1]
        return owner

    def latest_visible(self, concept_id: str, may_see: Callable[[Owner], bool]) -> ConceptKey | None:
        """The newest live version of `concept_id` that `may_see` accepts, as the registry answers
        "id" to a caller who cannot see its latest version (an older version may be public). The
        list of versions is kept until a registry event touches the id."""
        with self._lock:
            versions = self._versions.get(concept_id)
        if versions is None:
            versions = self._version_lists.run(concept_id, lambda: self._list_versions(concept_id))
        return next(((concept_id, version) for version, owner in versions if may_see(owner)), None)

    def _list_versions(self, concept_id: str) -> list[tuple[int, Owner]]:
        with self._lock:
            epoch = self._epoch
        infos = self._source.list(id_prefix=concept_id, all_versions=True)
        versions = sorted(
            ((int(i.version), Owner(i.tenant, i.public)) for i in infos if i.concept_id == concept_id), reverse=True
        )
        with self._lock:
            if self._epoch == epoch:
                self._versions[concept_id] = versions
        return versions

    def _lookup(self, ref: str) -> tuple[ConceptKey, Owner]:
        """Get `ref` from the source; remember its owner, and the latest version for a bare id,
        unless a registry event arrived meanwhile (it may have deleted what we read)."""
        with self._lock:
            epoch = self._epoch
        info = self._source.get(ref)
        key, owner = (info.concept_id, int(info.version)), Owner(info.tenant, info.public)
        with self._lock:
            if self._epoch == epoch:
                self._owners[key] = owner
                if "@" not in ref:
                    self._latest[info.concept_id] = key[1]
        return key, owner

    # -- concepts ------------------------------------------------------------------------------

    def acquire(self, keys: Sequence[ConceptKey]) -> ConceptLease:
        """The concepts, loaded into the device tier and pinned there until the lease is released."""
        lease = ConceptLease(self)
        try:
            for key in keys:
                concept, pinned = self._acquire(key)
                lease.concepts.append(concept)
                if pinned:
                    lease.pinned.append(key)
        except BaseException:
            lease.release()
            raise
        return lease

    def _release(self, keys: Sequence[ConceptKey]) -> None:
        with self._lock:
            for key in keys:
                self._demote(self._device.unpin(key))
            self._report_resident()

    def _acquire(self, key: ConceptKey) -> tuple[LoadedConcept, bool]:
        """(concept, pinned): not pinned (nor cached) when a registry event arrived while it loaded."""
        with self._lock:
            concept = self._device.get(key)
            if concept is not None:
                self._device.pin(key)
                self.observer.hit("device")
                return concept, True
        self.observer.miss("device")
        concept, epoch = self._loads.run(key, lambda: self._load(key))
        with self._lock:
            if key in self._device:
                self._device.pin(key)
            elif self._epoch == epoch:
                self._demote(self._device.put(key, concept, concept.nbytes, pin=True))
            else:
                return concept, False
            self._report_resident()
        return concept, True

    def _load(self, key: ConceptKey) -> tuple[LoadedConcept, int]:
        """`key` from the nearest tier below the device, on the device; with the epoch it started in."""
        started = time.perf_counter()
        with self._lock:
            epoch = self._epoch
            on_host = self._host.pop(key)
        concept: LoadedConcept | None  # None only until a tier below has it
        if on_host is not None:
            tier: Tier = "host"
            concept = self._to_device(on_host)
        else:
            self.observer.miss("host")
            tier = "disk"
            concept = self._from_disk(key)
            if concept is None:
                self.observer.miss("disk")
                tier = "registry"
                data = self._source.fetch(f"{key[0]}@{key[1]}")
                concept = self._decode(key, data)
                self.observer.evicted("disk", len(self._disk.write(key, data)))
        self.observer.hit(tier)
        self.observer.loaded(tier, time.perf_counter() - started)
        return concept, epoch

    def _from_disk(self, key: ConceptKey) -> LoadedConcept | None:
        """The disk copy, validated like a fetch. A copy that no longer validates (torn, altered,
        left over from another base model) is deleted and counts as a miss: the registry decides."""
        data = self._disk.read(key)
        if data is None:
            return None
        try:
            return self._decode(key, data)
        except (InvalidArtifact, IncompatibleBase) as e:
            log.warning("disk copy of %s@%s dropped: %s", key[0], key[1], e.message)
            with self._lock:
                self._disk.remove(key)
            return None

    def _decode(self, key: ConceptKey, data: bytes) -> LoadedConcept:
        artifact = from_bytes(data, base=self.spec, name=f"concept {key[0]}@{key[1]}")
        return self._to_device(LoadedConcept(key, artifact.header, artifact.delta))

    def _to_device(self, concept: LoadedConcept) -> LoadedConcept:
        return LoadedConcept(concept.key, concept.header, concept.delta.to(self.device, self.dtype))

    def _demote(self, evicted: list[tuple[ConceptKey, LoadedConcept]]) -> None:
        """Device evictions go to host RAM; host evictions are dropped (the disk still has them)."""
        if evicted:
            self.observer.evicted("device", len(evicted))
        for key, concept in evicted:
            host_copy = LoadedConcept(key, concept.header, concept.delta.to("cpu"))
            dropped = self._host.put(key, host_copy, host_copy.nbytes)
            if dropped:
                self.observer.evicted("host", len(dropped))

    # -- merged sets ---------------------------------------------------------------------------

    def merged(
        self, mode: str, keys: Sequence[ConceptKey], compute: Callable[[], ConceptDelta]
    ) -> tuple[ConceptDelta, bool]:
        """The merged delta of `keys` under `mode`, computed once per set; (delta, was_cached)."""
        merged_key: MergedKey = (mode, tuple(sorted(keys)))
        with self._lock:
            delta = self._merged.get(merged_key)
        if delta is not None:
            self.observer.hit("merged")
            return delta, True
        self.observer.miss("merged")
        return self._merges.run(merged_key, lambda: self._merge(merged_key, compute)), False

    def _merge(self, merged_key: MergedKey, compute: Callable[[], ConceptDelta]) -> ConceptDelta:
        with self._lock:
            epoch = self._epoch
        started = time.perf_counter()
        delta = compute().to(self.device, self.dtype)
        self.observer.merged(time.perf_counter() - started)
        with self._lock:
            if self._epoch == epoch:
                self.observer.evicted("merged", len(self._merged.put(merged_key, delta, delta.nbytes)))
            self._report_resident()
        return delta

    # -- hot swap ------------------------------------------------------------------------------

    def apply_event(self, published: bool, concept_id: str, version: int) -> None:
        """A registry event: a new version becomes the latest; a deleted version is evicted everywhere.
        Either way, merged sets containing the concept are dropped."""
        with self._lock:
            self._epoch += 1
            self._versions.pop(concept_id, None)
            if published:
                if concept_id in self._latest:
                    self._latest[concept_id] = max(self._latest[concept_id], version)
            else:
                key = (concept_id, version)
                self._device.pop(key)
                self._host.pop(key)
                self._disk.remove(key)
                self._owners.pop(key, None)
                if self._latest.get(concept_id) == version:
                    del self._latest[concept_id]
            for merged_key in self._merged.keys():
                if any(member_id == concept_id for member_id, _ in merged_key[1]):
                    self._merged.pop(merged_key)
            self._report_resident()

    # -- introspection -------------------------------------------------------------------------

    def tier_of(self, key: ConceptKey) -> Tier | None:
        """Where `key` is now (the nearest tier), for tests and debugging."""
        with self._lock:
            for tier, holder in (("device", self._device), ("host", self._host), ("disk", self._disk)):
                if key in holder:
                    return tier  # type: ignore[return-value]
        return None

    def pins(self, key: ConceptKey) -> int:
        """Requests currently using `key`'s device entry."""
        with self._lock:
            return self._device.pins(key)

    def resident_bytes(self) -> dict[Tier, int]:
        with self._lock:
            return self._resident()

    def _resident(self) -> dict[Tier, int]:
        return {
            "device": self._device.resident_bytes,
            "host": self._host.resident_bytes,
            "disk": self._disk.resident_bytes,
            "merged": self._merged.resident_bytes,
        }

    def _report_resident(self) -> None:
        for tier, nbytes in self._resident().items():
            self.observer.resident(tier, nbytes)
