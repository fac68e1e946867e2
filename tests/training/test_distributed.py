"""The Ray Train job: a worker killed mid-run resumes from the last checkpoint, and the resumed run
ends where an uninterrupted one does, to float rounding (threads differ): all randomness derives
from seed, step and rank, and the optimizer state travels in the checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from shared import artifact
from shared.basemodel import load_base_model
from training.distributed import FAULT_MARKER, DistributedOptions, run_distributed
from training.loop import train
from training.progress import PROGRESS_FILE

from .conftest import concept, small_config


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def test_killed_worker_resumes_from_the_last_checkpoint(tmp_path, tiny_base_dir, ray_cluster):
    config = small_config(
        tmp_path, [concept(tmp_path, "c", "dog")], base_model=str(tiny_base_dir), steps=6, checkpoint_every=2
    )
    options = DistributedOptions(job_dir=str(tmp_path), max_failures=2, fail_once_at_step=3)
    path = run_distributed(config, options)

    progress = json.loads((tmp_path / PROGRESS_FILE).read_text())
    assert (tmp_path / "out" / FAULT_MARKER).read_text() == "3"  # the worker really died at step 3
    assert progress["resumed_from_step"] == 2 and progress["step"] == 6
    resumed = artifact.load(path)
    assert resumed.header.metrics["resumed_from_step"] == 2

    reference_config = config.model_copy(update={"output_dir": str(tmp_path / "reference")})
    reference = artifact.load(train(reference_config, base=load_base_model(tiny_base_dir), show_bar=False).path)
    for layer, projections in reference.delta.layers.items():
        for projection, weight in projections.items():
            assert relative_error(resumed.delta.layers[layer][projection].dense, weight.dense) < 1e-2, layer
    for token, embedding in reference.delta.token_embeddings.items():
        assert relative_error(resumed.delta.token_embeddings[token], embedding) < 1e-5


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """‖value − reference‖ / ‖reference‖: Adam's normalised updates amplify float noise where a
    gradient is ~0, so elementwise tolerances would flag noise; a lost optimizer state or another
    data order would be off by far more than 1 %."""
    return float((value - reference).norm() / reference.norm())
