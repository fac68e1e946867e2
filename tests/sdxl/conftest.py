"""The tiny SDXL base is built once for every SDXL test."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sdxl_base():
    """The tiny SDXL pipeline from configs, prepared as a base model (fp32) on the engine tests'
    device: the CPU, or what `CDSERVE_TEST_DEVICE` names (the GPU check runs `test_engine.py` there)."""
    from shared.basemodel import prepare_base_model
    from tests.engine.conftest import DEVICE
    from tests.support.tiny_sdxl import build_tiny_sdxl_pipeline

    return prepare_base_model(build_tiny_sdxl_pipeline(seed=0), source="tiny-sdxl", device=DEVICE)
