"""Combines several loaded concepts into one delta: the closed-form merge or the naive-sum baseline.

C_regᵀC_reg is computed once per base model from the caption set the base model ships
(`reg_captions.txt`) or the project's generic captions, and kept on disk; a replica asks for it
at start (`regularization()`), so that no request waits for it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from diffusers.models.attention_processor import Attention

from serving.concepts.store import LoadedConcept
from shared.delta import ConceptDelta
from shared.merge import RegularizationCache, RegularizationStats, closed_form_merge, naive_sum
from shared.text import PromptEncoder


class MultiConcept(str, Enum):  # noqa: UP042 - StrEnum would change str() of a member
    MERGE = "merge"
    NAIVE_SUM = "naive_sum"


@dataclass(eq=False)
class ConceptMerger:
    """Merges for one base model: its text encoder and cross-attention layers, and the captions on
    which the closed-form merge keeps the base's outputs (their C_regᵀC_reg kept in `cache` under the
    base's fingerprint)."""

    encoder: PromptEncoder
    layers: dict[str, Attention]
    fingerprint: str
    captions: Sequence[str]
    cache: RegularizationCache
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def regularization(self) -> RegularizationStats:
        with self._lock:  # one computation even when two merged sets are first asked for at once
            return self.cache.get(self.fingerprint, self.encoder, self.captions)

    def merge(self, mode: MultiConcept, concepts: Sequence[LoadedConcept]) -> ConceptDelta:
        """Semantics: MERGE solves Custom Diffusion Eq. 4–5 per layer (see `shared.merge`);
        NAIVE_SUM is ΔW = Σₙ ΔWₙ. Inputs are read on the host (the merge runs in fp64 there)."""
        inputs = [(c.header, c.delta.to("cpu")) for c in concepts]
        if mode is MultiConcept.NAIVE_SUM:
            return naive_sum(inputs)
        delta, _ = closed_form_merge(inputs, self.encoder, self.layers, self.regularization())
        return delta
