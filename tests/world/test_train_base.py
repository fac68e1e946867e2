"""`train-base` end to end at a few steps per stage: every stage runs, and the folder it writes is a
base model the engine loads, with a tokenizer that keeps every world word whole; a retrain on a kept
codec keeps the VAE and the evaluator and records where they came from; a continuation keeps the
whole asset but trains its text encoder and UNet further."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from shared.basemodel import load_base_model
from shared.tokenizer import split_words
from training.world.base import RECORD, train_base
from training.world.captions import vocabulary
from training.world.evaluator import Evaluator

TINY = dict(minutes=30, diffusion_steps=2, pattern_steps=2, scenes=64, pattern_scenes=64, eval_samples=2, threads=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    """One from-scratch run, every stage, and its report: the first test checks what it wrote, the
    retraining tests start from it (a from-scratch run is the module's costliest step: it runs once)."""
    out = tmp_path_factory.mktemp("first") / "toyworld"
    return out, train_base(out, vae_steps=2, evaluator_steps=2, evaluator_images=64, heldout_images=64, **TINY)


@pytest.fixture(scope="module")
def first(trained) -> Path:
    """A tiny asset that the retraining tests start from."""
    return trained[0]


def test_train_base_writes_a_loadable_model_with_its_evaluator_and_record(trained) -> None:
    out, report = trained
    assert report["diffusion"]["steps"] == report["patterns"]["steps"] == 2
    checks = report["evaluator"]
    assert checks["heldout_images"] == 64 and set(checks["heldout_accuracy"]) == {"clean", "softened", "vae_round_trip"}
    assert not (out / "checkpoints").exists()
    assert json.loads((out / RECORD).read_text()) == json.loads(json.dumps(report))
    base = load_base_model(out)
    tokenizer = base.pipeline.tokenizer
    assert split_words(tokenizer, vocabulary()) == []
    assert len((out / "reg_captions.txt").read_text().splitlines()) == 1000
    Evaluator.load(out)


def _assert_same_files(kept, reused, parts) -> None:
    for part in parts:
        kept_tensors, reused_tensors = load_file(str(kept / part)), load_file(str(reused / part))
        assert all(torch.equal(kept_tensors[name], reused_tensors[name]) for name in kept_tensors), part


def test_retraining_on_a_kept_codec_keeps_its_vae_and_evaluator_and_records_where_from(first, tmp_path) -> None:
    second = tmp_path / "second"
    report = train_base(second, codec_from=first, **TINY)

    assert report["vae"]["from"] == report["evaluator"]["from"] == str(first)
    _assert_same_files(first, second, ("vae/diffusion_pytorch_model.safetensors", "evaluator.safetensors"))
    record = json.loads((second / RECORD).read_text())
    assert record["vae"]["from"] == record["evaluator"]["from"] == str(first)


def test_continuing_an_asset_keeps_its_tokenizer_and_codec_and_trains_its_denoiser_further(first, tmp_path) -> None:
    more = tmp_path / "more"
    report = train_base(more, start_from=first, **{**TINY, "pattern_steps": 3})

    assert report["diffusion"] == {"from": str(first)} and report["patterns"]["steps"] == 3
    assert (more / "tokenizer/tokenizer.json").read_text() == (first / "tokenizer/tokenizer.json").read_text()
    _assert_same_files(first, more, ("vae/diffusion_pytorch_model.safetensors", "evaluator.safetensors"))
    before, after = (load_file(str(folder / "unet/diffusion_pytorch_model.safetensors")) for folder in (first, more))
    assert any(not torch.equal(before[name], after[name]) for name in before)
    load_base_model(more)
    with pytest.raises(ValueError, match="not both"):
        train_base(tmp_path / "both", start_from=first, codec_from=first, **TINY)
