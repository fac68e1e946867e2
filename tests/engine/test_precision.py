"""Reduced precision (the GPU serving path; on the CPU unless CDSERVE_TEST_DEVICE says otherwise): same fingerprint,
outputs close to fp32, concepts stored in fp16 apply to a bf16 model."""

import numpy as np
import pytest
import torch

from serving.engine import DeltaEngine, GenerationRequest
from shared.basemodel import prepare_base_model
from shared.tiny import build_tiny_pipeline
from tests.support.synthetic import random_concept


def _generate(device: torch.device, dtype: torch.dtype, delta_dtype: torch.dtype):
    base = prepare_base_model(build_tiny_pipeline(), source="tiny", device=device, dtype=dtype)
    delta = random_concept(base.spec, "c", seed=1, rank=4, modifier_token="<c>", dtype=delta_dtype)[1].to(device)
    request = GenerationRequest("a photo of a <c> dog", delta=delta, steps=5, height=16, width=16, seed=3)
    return base.spec.fingerprint, DeltaEngine(base).generate([request])[0].images


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_reduced_precision_matches_fp32_closely(device, dtype):
    fingerprint32, reference = _generate(device, torch.float32, torch.float32)
    fingerprint, images = _generate(device, dtype, torch.float16)
    assert fingerprint == fingerprint32
    assert images.dtype == np.float32 and np.isfinite(images).all()
    assert np.abs(images - reference).max() < 0.05
