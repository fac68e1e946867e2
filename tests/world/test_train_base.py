"""`train-base` end to end at a few steps per stage: every stage runs, and the folder it writes is a
base model the engine loads, with a tokenizer that keeps every world word whole."""

from __future__ import annotations

from shared.basemodel import load_base_model
from shared.tokenizer import split_words
from training.world.base import train_base
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
