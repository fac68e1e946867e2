"""SVD compression: error falls monotonically with rank, energy picks the rank, artifacts round-trip."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch

from shared import artifact
from shared.compress import compress, rank_for_energy
from shared.errors import InvalidArgument
from tests.support.synthetic import random_concept


@pytest.fixture(scope="module")
def dense_concept(tiny_base):
    return random_concept(tiny_base.spec, "dense", seed=4)


def test_error_decreases_monotonically_with_rank(dense_concept):
    errors, sizes = [], []
    for rank in (1, 2, 4, 8, 16, 32):
        _, report = compress(dense_concept[1], rank=rank)
        errors.append(report.overall_relative_error)
        sizes.append(report.bytes_after)
    assert all(a > b for a, b in pairwise(errors))
    assert all(a < b for a, b in pairwise(sizes))
    assert errors[-1] < 1e-5  # rank 32 = full rank of the 32-wide tiny layers


def test_energy_selects_the_smallest_sufficient_rank():
    s = torch.tensor([8.0, 4.0, 2.0, 1.0, 1.0])
    assert rank_for_energy(s, 0.5) == 1
    assert rank_for_energy(s, 0.75) == 2
    assert rank_for_energy(s, 1.0) == 5


def test_low_rank_delta_is_recovered_exactly(tiny_base):
    _, low_rank = random_concept(tiny_base.spec, "lr", seed=5, rank=2)
    densified = type(low_rank)(
        layers={n: {p: type(w)(dense=w.to_dense()) for p, w in layer.items()} for n, layer in low_rank.layers.items()},
        token_embeddings=low_rank.token_embeddings,
    )
    _, report = compress(densified, energy=0.9999)
    assert report.max_rank == 2
    assert report.max_relative_error < 1e-5
    assert report.ratio > 1


def test_compressed_delta_round_trips_through_the_artifact(dense_concept, tiny_base):
    header, delta = dense_concept
    compressed, _ = compress(delta, rank=4)
    data = artifact.to_bytes(header.model_copy(update={"delta_kind": "lowrank"}), compressed)
    loaded = artifact.from_bytes(data, base=tiny_base.spec)
    for name, layer in compressed.layers.items():
        assert torch.equal(loaded.delta.layers[name]["to_k"].up, layer["to_k"].up)
    assert loaded.delta.max_rank == 4


def test_max_rank_caps_the_rank_energy_picks(dense_concept):
    _, uncapped = compress(dense_concept[1], energy=0.95)
    capped, report = compress(dense_concept[1], energy=0.95, max_rank=3)
    assert uncapped.max_rank > 3 and report.max_rank == 3
    assert all(w.rank == 3 for layer in capped.layers.values() for w in layer.values())
    assert compress(dense_concept[1], energy=0.95, max_rank=1000)[1].max_rank == uncapped.max_rank


@pytest.mark.parametrize(
    "kwargs", [{}, {"energy": 0.5, "rank": 2}, {"energy": 1.5}, {"rank": 0}, {"energy": 0.9, "max_rank": 0}]
)
def test_bad_compression_arguments(dense_concept, kwargs):
    with pytest.raises(InvalidArgument):
        compress(dense_concept[1], **kwargs)
