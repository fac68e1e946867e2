"""The engine tests run on the CPU; `CDSERVE_TEST_DEVICE=cuda` runs the same tests on a GPU (the
serving path there: CUDA kernels for SDPA and the K/V products, host→device moves of concepts)."""

from __future__ import annotations

import os

import pytest
import torch

DEVICE = torch.device(os.environ.get("CDSERVE_TEST_DEVICE", "cpu"))
if DEVICE.type == "cuda":
    # The fp32 comparisons here hold our arithmetic to ~1e-4; TF32 convolutions and products round
    # to 10 mantissa bits, differently for different batch shapes, and would hide it.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


@pytest.fixture(scope="session")
def device() -> torch.device:
    return DEVICE


@pytest.fixture(scope="session")
def tiny_base():
    """The suite's tiny base, built on the test device (overrides the CPU one for these tests)."""
    from shared.basemodel import prepare_base_model
    from shared.tiny import build_tiny_pipeline

    return prepare_base_model(build_tiny_pipeline(seed=0), source="tiny", device=DEVICE)
