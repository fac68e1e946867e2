"""Concept references of a request → the one delta the engine applies.

"id" or "id@version" each; no concept: the base model; one: its delta; several: their merged set
(closed-form by default, naive sum on request), cached by the store. Unknown concepts are NotFound
(from the registry), concepts for another base model IncompatibleBase (from artifact validation).

Every concept named is checked against the caller before anything is loaded: one the caller may not
see is NotFound worded exactly like an unknown one (`serving.registry.refs.not_found`), so a request
never tells which private concepts exist. The store and its caches are shared by every tenant; only
this check depends on who asks. "id" resolves to the latest version the caller may see, as the
registry answers it: usually the latest version, an older public one when the latest is private.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from serving.concepts.merger import ConceptMerger, MultiConcept
from serving.concepts.store import ConceptLease, ConceptStore
from serving.registry.refs import not_found, parse_ref
from shared.auth import Caller
from shared.delta import ConceptDelta
from shared.errors import InvalidArgument


@dataclass
class ResolvedConcepts:
    """The delta of one request, the versions it resolved to, and what resolving cost.

    Holds the store lease: `release()` once the request has run (or failed)."""

    delta: ConceptDelta | None
    refs: list[str]
    load_ms: float
    merge_ms: float
    lease: ConceptLease | None = None

    @property
    def modifier_tokens(self) -> list[str]:
        return list(self.delta.token_embeddings) if self.delta else []

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()


NO_CONCEPTS = ResolvedConcepts(delta=None, refs=[], load_ms=0.0, merge_ms=0.0)


def parse_refs(refs: Sequence[str]) -> list[tuple[str, int | None]]:
    """Each ref parsed; errors name `concepts[i]`; one concept named twice is an error."""
    parsed: list[tuple[str, int | None]] = []
    for i, ref in enumerate(refs):
        try:
            parsed.append(parse_ref(ref))
        except InvalidArgument as e:
            raise InvalidArgument(f"concepts[{i}]: {e.message}", field="concepts") from e
    ids = [concept_id for concept_id, _ in parsed]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise InvalidArgument(f"concepts: {repeated} named more than once; name each concept once", field="concepts")
    return parsed


class ConceptResolver:
    def __init__(self, store: ConceptStore, merger: ConceptMerger) -> None:
        self.store = store
        self.merger = merger

    def resolve(self, refs: Sequence[str], caller: Caller, mode: MultiConcept = MultiConcept.MERGE) -> ResolvedConcepts:
        """The delta for `refs` as `caller` may use them (see the module docstring)."""
        parsed = parse_refs(refs)
        if not parsed:
            return NO_CONCEPTS
        started = time.perf_counter()
        keys = []
        for concept_id, version in parsed:
            key = self.store.resolve(concept_id, version)
            if not caller.may_see(self.store.owner(key)):
                visible = self.store.latest_visible(concept_id, caller.may_see) if version is None else None
                if visible is None:
                    raise not_found(concept_id, version)
                key = visible
            keys.append(key)
        lease = self.store.acquire(keys)
        try:
            load_ms = (time.perf_counter() - started) * 1000.0
            resolved_refs = [c.ref for c in lease.concepts]
            if len(lease.concepts) == 1:
                return ResolvedConcepts(lease.concepts[0].delta, resolved_refs, load_ms, 0.0, lease)
            started = time.perf_counter()
            delta, _ = self.store.merged(mode.value, keys, lambda: self.merger.merge(mode, lease.concepts))
            merge_ms = (time.perf_counter() - started) * 1000.0
            return ResolvedConcepts(delta, resolved_refs, load_ms, merge_ms, lease)
        except BaseException:
            lease.release()
            raise
