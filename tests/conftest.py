"""Suite-wide fixtures: tiny seeded models are built once per session."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_base():
    """The tiny SD pipeline from configs, prepared as a base model (fp32, CPU)."""
    from shared.basemodel import prepare_base_model
    from shared.tiny import build_tiny_pipeline

    return prepare_base_model(build_tiny_pipeline(seed=0), source="tiny")
