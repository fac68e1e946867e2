"""The concept artifact: a good file round-trips bit-exactly; every kind of bad file is refused
with its own typed error that names the problem."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from shared import artifact
from shared.artifact import ArtifactLimits
from shared.errors import IncompatibleBase, InvalidArtifact, TooLarge
from shared.spec import BaseSpec
from tests.support.synthetic import random_concept


@pytest.fixture(scope="module")
def good(tiny_base):
    header, delta = random_concept(tiny_base.spec, "dog-1", seed=1)
    return header, delta, artifact.to_bytes(header, delta)


def _rewrite_metadata(data: bytes, edit) -> bytes:
    """Re-encode a safetensors file with its JSON header edited (the tensors untouched)."""
    length = struct.unpack("<Q", data[:8])[0]
    raw = json.loads(data[8 : 8 + length])
    edit(raw)
    encoded = json.dumps(raw).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data[8 + length :]


def _edit_header(data: bytes, **changes) -> bytes:
    def edit(raw):
        header = json.loads(raw["__metadata__"]["cdserve"])
        header.update(changes)
        raw["__metadata__"]["cdserve"] = json.dumps(header)

    return _rewrite_metadata(data, edit)


def test_good_file_round_trips_bit_exactly(good, tiny_base, tmp_path):
    header, delta, data = good
    path = artifact.save(header, delta, tmp_path / "c.safetensors")
    loaded = artifact.load(path, base=tiny_base.spec)
    assert artifact.to_bytes(loaded.header.model_copy(update={"digest": ""}), loaded.delta) == data
    for name, layer in delta.layers.items():
        for projection, weight in layer.items():
            assert torch.equal(loaded.delta.layers[name][projection].dense, weight.dense)
    assert loaded.header.digest and loaded.header.modifier_tokens == ["<dog-1>"]


def test_low_rank_round_trip(tiny_base):
    header, delta = random_concept(tiny_base.spec, "lr", seed=2, rank=3, dtype=torch.float16)
    loaded = artifact.from_bytes(artifact.to_bytes(header, delta), base=tiny_base.spec)
    assert loaded.delta.max_rank == 3 and loaded.header.delta_kind == "lowrank"


def _other_base(spec):
    header, delta = random_concept(spec, "other", seed=3)
    return artifact.to_bytes(header.model_copy(update={"base_fingerprint": "f" * 32}), delta)


def _nan_concept(spec):
    header, delta = random_concept(spec, "nan", seed=3)
    next(iter(delta.layers.values()))["to_k"].dense[0, 0] = float("nan")
    return artifact.to_bytes(header, delta)


def _wrong_shape(spec):
    header, delta = random_concept(spec, "shape", seed=3)
    layer = next(iter(delta.layers.values()))
    layer["to_v"] = type(layer["to_v"])(dense=torch.zeros(3, 3))
    return artifact.to_bytes(header, delta)


def _bad_dtype(spec):
    header, delta = random_concept(spec, "dtype", seed=3)
    layer = next(iter(delta.layers.values()))
    layer["to_v"] = type(layer["to_v"])(dense=layer["to_v"].dense.to(torch.float64))
    return artifact.to_bytes(header, delta)


def _missing_embedding(spec):
    header, delta = random_concept(spec, "noemb", seed=3)
    delta.token_embeddings.clear()
    return artifact.to_bytes(header, delta)


def _unknown_layer(spec):
    header, delta = random_concept(spec, "layer", seed=3)
    delta.layers["not.a.layer"] = {p: w.to(dtype=torch.float16) for p, w in next(iter(delta.layers.values())).items()}
    return artifact.to_bytes(header, delta)


def _wrong_embedding_width(spec):
    header, delta = random_concept(spec, "width", seed=3)
    delta.token_embeddings["<width>"] = torch.zeros(spec.token_dim + 1)
    return artifact.to_bytes(header, delta)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda spec, data: data[: len(data) // 2], InvalidArtifact, "corrupt or truncated"),
        (lambda spec, data: b"\x00\x01", InvalidArtifact, "too short"),
        (lambda spec, data: b"\xff" * 64, InvalidArtifact, "impossible"),
        (lambda spec, data: data[:8] + b"{not json" + data[17:], InvalidArtifact, "not valid JSON"),
        (
            lambda spec, data: _rewrite_metadata(data, lambda raw: raw.pop("__metadata__")),
            InvalidArtifact,
            "not a cdserve concept",
        ),
        (lambda spec, data: _edit_header(data, digest="0" * 64), InvalidArtifact, "digest mismatch"),
        (lambda spec, data: _edit_header(data, recipe={"steps": 1}), InvalidArtifact, "digest mismatch"),
        (lambda spec, data: _edit_header(data, concept_id="Bad Id!"), InvalidArtifact, "concept_id"),
        (lambda spec, data: _edit_header(data, format="other/9"), InvalidArtifact, "format"),
        (lambda spec, data: _edit_header(data, delta_kind="weird"), InvalidArtifact, "delta_kind"),
        (lambda spec, data: _edit_header(data, surprise=1), InvalidArtifact, "surprise"),
        (lambda spec, data: _other_base(spec), IncompatibleBase, "trained for base"),
        (lambda spec, data: _nan_concept(spec), InvalidArtifact, "NaN"),
        (lambda spec, data: _wrong_shape(spec), InvalidArtifact, "shape"),
        (lambda spec, data: _bad_dtype(spec), InvalidArtifact, "dtype"),
        (lambda spec, data: _missing_embedding(spec), InvalidArtifact, "embeddings for"),
        (lambda spec, data: _unknown_layer(spec), InvalidArtifact, "not a cross-attention layer"),
        (lambda spec, data: _wrong_embedding_width(spec), InvalidArtifact, "width"),
        (
            lambda spec, data: _rewrite_metadata(data, lambda raw: raw["__metadata__"].update(notes="x" * 100_000)),
            InvalidArtifact,
            "metadata keys \\['notes'\\]",
        ),
        (lambda spec, data: _edit_header(data, concept_id="dog\n"), InvalidArtifact, "concept_id"),
        (
            lambda spec, data: _rewrite_metadata(
                data, lambda raw: next(v for k, v in raw.items() if k != "__metadata__").update(data_offsets=[0, 4])
            ),
            InvalidArtifact,
            "spans 4 bytes",
        ),
    ],
    ids=[
        "truncated",
        "too-short",
        "bad-header-length",
        "bad-json",
        "no-cdserve-header",
        "digest",
        "tampered-header",
        "bad-id",
        "bad-format",
        "bad-kind",
        "unknown-field",
        "wrong-base",
        "nan",
        "wrong-shape",
        "bad-dtype",
        "missing-embedding",
        "unknown-layer",
        "embedding-width",
        "extra-metadata",
        "id-with-newline",
        "offsets-disagree-with-shape",
    ],
)
def test_bad_files_are_refused_with_a_specific_error(good, tiny_base, make, error, message):
    data = make(tiny_base.spec, good[2])
    with pytest.raises(error, match=message):
        artifact.from_bytes(data, base=tiny_base.spec)


def test_size_limits(good, tiny_base, tmp_path):
    data = good[2]
    with pytest.raises(TooLarge, match="limit"):
        artifact.from_bytes(data, base=tiny_base.spec, limits=ArtifactLimits(max_bytes=len(data) - 1))
    path = tmp_path / "big.safetensors"
    path.write_bytes(data)
    with pytest.raises(TooLarge, match=r"big\.safetensors"):
        artifact.load(path, limits=ArtifactLimits(max_bytes=100))


def test_base_spec_round_trips_as_json(tiny_base):
    spec = tiny_base.spec
    assert BaseSpec.from_json(spec.to_json()) == spec
