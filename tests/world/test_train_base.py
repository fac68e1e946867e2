"""`train-base` end to end at a few steps per stage: every stage runs, and the folder it writes is a
base model the engine loads, with a tokenizer that keeps every world word whole; a retrain on a kept
codec keeps the VAE, the evaluator and the hand-written part of TRAINING.md."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from shared.basemodel import load_base_model
from shared.tokenizer import split_words
from training.world.base import HAND_WRITTEN, train_base
from training.world.captions import vocabulary
from training.world.evaluator import Evaluator


def test_train_base_writes_a_loadable_model_with_its_evaluator_and_record(tmp_path) -> None:
    out = tmp_path / "toyworld"
    report = train_base(
        out, minutes=30, vae_steps=2, evaluator_steps=2, diffusion_steps=2, pattern_steps=2, scenes=64,
        pattern_scenes=64, evaluator_images=64, eval_samples=2, threads=1,
    )  # fmt: skip
    assert report["diffusion"]["steps"] == report["patterns"]["steps"] == 2
    assert not (out / "checkpoints").exists()
    assert "## Figures" in (out / "TRAINING.md").read_text()
    base = load_base_model(out)
    tokenizer = base.pipeline.tokenizer
    assert split_words(tokenizer, vocabulary()) == []
    assert len((out / "reg_captions.txt").read_text().splitlines()) == 1000
    Evaluator.load(out)


def test_retraining_on_a_kept_codec_keeps_its_vae_evaluator_and_the_hand_written_notes(tmp_path) -> None:
    tiny = dict(minutes=30, diffusion_steps=2, pattern_steps=2, scenes=64, pattern_scenes=64, eval_samples=2, threads=1)
    first, second = tmp_path / "first", tmp_path / "second"
    train_base(first, vae_steps=2, evaluator_steps=2, evaluator_images=64, **tiny)
    notes = (first / "TRAINING.md").read_text() + HAND_WRITTEN + "## History\nkept by hand\n"
    (first / "TRAINING.md").write_text(notes)
    (second / "TRAINING.md").parent.mkdir()
    (second / "TRAINING.md").write_text(notes)

    report = train_base(second, codec_from=first, **tiny)

    assert report["vae"]["from"] == report["evaluator"]["from"] == str(first)
    for part in ("vae/diffusion_pytorch_model.safetensors", "evaluator.safetensors"):
        kept, reused = load_file(str(first / part)), load_file(str(second / part))
        assert all(torch.equal(kept[name], reused[name]) for name in kept)
    written = (second / "TRAINING.md").read_text()
    assert f"kept from `{first}`" in written
    assert written.endswith(HAND_WRITTEN + "## History\nkept by hand\n")
    assert written.count(HAND_WRITTEN) == 1
