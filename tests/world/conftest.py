"""Fixtures of the committed toy-world assets (trained by `python -m training.world train-base`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline

from training.world.evaluator import Evaluator

TOYWORLD = Path(__file__).resolve().parents[2] / "shared" / "assets" / "toyworld"


@pytest.fixture(scope="session")
def toyworld_dir() -> Path:
    return TOYWORLD


@pytest.fixture(scope="session")
def evaluator() -> Evaluator:
    return Evaluator.load(TOYWORLD)


@pytest.fixture(scope="session")
def pipe() -> StableDiffusionPipeline:
    torch.set_num_threads(2)
    pipeline = StableDiffusionPipeline.from_pretrained(TOYWORLD, local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
