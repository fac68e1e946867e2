"""`to_q`/`to_out` deltas gathered per row and applied in one batched product per projection equal
applying each request's delta to its own rows, one request at a time (the way it was done before)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from serving.engine import DeltaEngine, GenerationRequest
from serving.engine.processor import RowDelta
from shared.delta import DeltaWeight
from tests.support.synthetic import random_concept

ROWS, TOKENS, IN, OUT = 6, 10, 12, 8
CROSSATTN = ("to_k", "to_v", "to_q", "to_out")


def one_request_at_a_time(x: torch.Tensor, parts: list[tuple[list[int], DeltaWeight]]) -> torch.Tensor:
    """The reference: each request's delta applied to its rows alone (zeros elsewhere)."""
    out = torch.zeros(x.shape[0], x.shape[1], OUT, dtype=x.dtype)
    for rows, delta in parts:
        out[rows] += delta.apply(x[rows])
    return out


def low_rank(rank: int, seed: int) -> DeltaWeight:
    g = torch.Generator().manual_seed(seed)
    return DeltaWeight.low_rank(torch.randn(OUT, rank, generator=g), torch.randn(rank, IN, generator=g))


def dense(seed: int) -> DeltaWeight:
    return DeltaWeight(dense=torch.randn(OUT, IN, generator=torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize(
    "parts",
    [
        [([0, 3], low_rank(2, 1)), ([1, 4], low_rank(5, 2))],  # ranks padded to 5; rows 2 and 5 have none
        [([0, 3], low_rank(2, 1)), ([2, 5], dense(3))],  # one dense delta: all held dense
    ],
    ids=["low-rank of several ranks", "dense and low-rank"],
)
def test_gathered_deltas_equal_one_request_at_a_time(parts: list[tuple[list[int], DeltaWeight]]) -> None:
    x = torch.randn(ROWS, TOKENS, IN, generator=torch.Generator().manual_seed(0))
    gathered = RowDelta.gather(ROWS, parts, x)
    torch.testing.assert_close(gathered.apply(x), one_request_at_a_time(x, parts), atol=1e-5, rtol=0)


def test_a_mixed_batch_of_crossattn_concepts_equals_each_request_alone(tiny_base, device) -> None:
    spec = tiny_base.spec
    concepts = [
        random_concept(spec, "q-two", seed=5, rank=2, projections=CROSSATTN)[1],
        random_concept(spec, "q-four", seed=6, rank=4, projections=CROSSATTN)[1],
        random_concept(spec, "q-dense", seed=7, projections=CROSSATTN)[1],
        random_concept(spec, "kv-only", seed=8, rank=3)[1],
        None,
    ]
    engine = DeltaEngine(tiny_base)

    def request(i: int, delta) -> GenerationRequest:
        token = next(iter(delta.token_embeddings)) if delta else "plain"
        return GenerationRequest(
            f"a {token} dog",
            delta=None if delta is None else delta.to(device),
            steps=3,
            height=16,
            width=16,
            seed=20 + i,
            num_images=1 + i % 2,
        )

    batch = engine.generate([request(i, d) for i, d in enumerate(concepts)])
    for i, delta in enumerate(concepts):
        (alone,) = engine.generate([request(i, delta)])
        np.testing.assert_allclose(batch[i].images, alone.images, atol=1e-4, rtol=0)
