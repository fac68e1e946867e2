"""An SDXL concept artifact: two embeddings per modifier token, a family in the header, a
fingerprint over both text encoders, and a clear FAILED_PRECONDITION across families."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from shared import artifact
from shared.basemodel import fingerprint
from shared.errors import IncompatibleBase, InvalidArtifact
from shared.grpc_status import status_for
from shared.spec import BaseSpec
from tests.support.synthetic import random_concept


def test_sdxl_spec_names_the_family_and_both_embedding_widths(sdxl_base):
    spec = sdxl_base.spec
    assert (spec.family, spec.token_dims, spec.token_dim) == ("sdxl", (32, 48), 80)
    assert {layer.in_features for layer in spec.layers} == {80}
    assert type(spec).from_json(spec.to_json()) == spec


def test_sdxl_artifact_round_trips_both_embeddings(sdxl_base, tmp_path):
    header, delta = random_concept(sdxl_base.spec, "dog-xl", seed=3, rank=2)
    assert (header.base_family, header.token_dims) == ("sdxl", [32, 48])
    loaded = artifact.load(artifact.save(header, delta, tmp_path / "dog.safetensors"), base=sdxl_base.spec)
    assert loaded.header.base_family == "sdxl"
    assert torch.equal(loaded.delta.token_embeddings["<dog-xl>"], delta.token_embeddings["<dog-xl>"])


def test_fingerprint_covers_the_second_text_encoder(sdxl_base):
    pipe = sdxl_base.pipeline
    other = copy.deepcopy(pipe.text_encoder_2)
    with torch.no_grad():
        other.text_projection.weight[0, 0] += 0.5
    assert fingerprint(pipe.unet, pipe.text_encoder, pipe.text_encoder_2) == sdxl_base.spec.fingerprint
    assert fingerprint(pipe.unet, pipe.text_encoder, other) != sdxl_base.spec.fingerprint
    assert fingerprint(pipe.unet, pipe.text_encoder) != sdxl_base.spec.fingerprint


def test_sd1_concept_on_sdxl_base_is_failed_precondition_naming_both(tiny_base, sdxl_base, tmp_path):
    header, delta = random_concept(tiny_base.spec, "dog-sd1", seed=1)
    path = artifact.save(header, delta, tmp_path / "sd1.safetensors")
    with pytest.raises(IncompatibleBase) as caught:
        artifact.load(path, base=sdxl_base.spec)
    assert "SD 1.x" in str(caught.value) and "SDXL" in str(caught.value)
    assert status_for(caught.value).name == "FAILED_PRECONDITION"


def test_sdxl_concept_on_sd1_base_is_refused_too(tiny_base, sdxl_base, tmp_path):
    header, delta = random_concept(sdxl_base.spec, "dog-xl", seed=1)
    path = artifact.save(header, delta, tmp_path / "xl.safetensors")
    with pytest.raises(IncompatibleBase, match=r"SDXL base model and this base model is SD 1\.x"):
        artifact.load(path, base=tiny_base.spec)


def test_an_artifact_from_before_families_is_taken_as_sd1_or_sd2(tiny_base, sdxl_base, tmp_path):
    header, delta = random_concept(tiny_base.spec, "old", seed=1)
    legacy = header.model_copy(update={"base_family": None})
    path = artifact.save(legacy, delta, tmp_path / "old.safetensors")
    assert artifact.load(path, base=tiny_base.spec).header.base_family is None
    with pytest.raises(IncompatibleBase, match=r"SD 1\.x/2\.x"):
        artifact.load(path, base=sdxl_base.spec)


def test_a_wrong_token_split_is_named(sdxl_base, tmp_path):
    header, delta = random_concept(sdxl_base.spec, "dog-xl", seed=1)
    path = artifact.save(header.model_copy(update={"token_dims": [48, 32]}), delta, tmp_path / "split.safetensors")
    with pytest.raises(InvalidArtifact, match=r"token_dims|split"):
        artifact.load(path, base=sdxl_base.spec)


def test_a_spec_file_from_before_families_reads_as_sd1_or_sd2_by_width(tiny_base):
    raw = json.loads(tiny_base.spec.to_json())
    del raw["family"], raw["token_dims"]
    assert BaseSpec.from_json(json.dumps(raw)) == tiny_base.spec
    wide = {**raw, "token_dim": 1024}
    assert BaseSpec.from_json(json.dumps(wide)).family == "sd2"
