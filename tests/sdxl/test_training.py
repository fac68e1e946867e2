"""The Custom Diffusion loop on SDXL: K/V of every cross-attention layer and the token rows of both
text encoders train, time ids come from the augmentation's crop, and the result is a valid,
low-rank SDXL artifact the engine serves."""

from __future__ import annotations

import torch

from serving.engine import GenerationRequest, create_engine
from shared import artifact
from shared.basemodel import cross_attention_layers
from tests.training.conftest import concept, small_config
from training.checkpoint import load_state, save_state
from training.loop import build_trainer, train
from training.output import SDXL_MAX_RANK

RESOLUTION = 16


def test_batches_carry_time_ids_from_the_augmentation(tmp_path, sdxl_base):
    config = small_config(tmp_path, [concept(tmp_path, "c", "dog")], batch_size=2, resolution=RESOLUTION)
    source = build_trainer(config, sdxl_base).source
    seen_crop = False
    for step in range(12):
        batch = source.batch(step, per_rank=2)
        assert batch.time_ids.shape == (2, 6)
        assert batch.time_ids[:, :2].tolist() == [[20.0, 24.0]] * 2  # the source images' (height, width)
        assert batch.time_ids[:, 4:].tolist() == [[RESOLUTION, RESOLUTION]] * 2
        seen_crop |= bool((batch.time_ids[:, 2:4] > 0).any())
        assert (batch.time_ids[:, 2:4] <= 0.4 * RESOLUTION).all()  # within the ≤ 1.4× rescaled image
    assert seen_crop


def test_sdxl_training_writes_a_low_rank_sdxl_artifact_that_serves(tmp_path, sdxl_base):
    base_unet = {k: v.clone() for k, v in sdxl_base.pipeline.unet.state_dict().items()}
    config = small_config(
        tmp_path, [concept(tmp_path, "dog-xl", "dog")], steps=3, batch_size=2, resolution=RESOLUTION, learning_rate=1e-3
    )
    trainer = build_trainer(config, sdxl_base)
    first = trainer.denoiser.embeddings[0].detach().clone()
    assert first.shape == (sum(sdxl_base.spec.token_dims),)
    trainer.train_step()
    trained = trainer.denoiser.embeddings[0].detach()
    clip_l = sdxl_base.spec.token_dims[0]
    assert not torch.equal(trained[:clip_l], first[:clip_l]) and not torch.equal(trained[clip_l:], first[clip_l:])
    layers = sorted(cross_attention_layers(trainer.unet))
    changed = {name for name, p in trainer.unet.named_parameters() if not torch.equal(p, base_unet[name])}
    assert changed == {f"{layer}.{w}.weight" for layer in layers for w in ("to_k", "to_v")}

    result = train(config, base=sdxl_base, show_bar=False)
    concept_artifact = artifact.load(result.path, base=sdxl_base.spec)
    header = concept_artifact.header
    assert (header.base_family, header.token_dims, header.delta_kind) == ("sdxl", [32, 48], "lowrank")
    assert set(concept_artifact.delta.layers) == set(layers)
    assert result.metrics["steps"] == 3 and "compression" in header.metrics
    assert concept_artifact.delta.max_rank <= SDXL_MAX_RANK
    assert all(torch.equal(v, base_unet[k]) for k, v in sdxl_base.pipeline.unet.state_dict().items())
    image = (
        create_engine(sdxl_base)
        .generate(
            [
                GenerationRequest(
                    f"a photo of a {header.modifier_tokens[0]} dog",
                    delta=concept_artifact.delta,
                    steps=2,
                    height=RESOLUTION,
                    width=RESOLUTION,
                )
            ]
        )[0]
        .images
    )
    assert image.shape == (1, RESOLUTION, RESOLUTION, 3) and bool(torch.isfinite(torch.from_numpy(image)).all())


def test_sdxl_run_resumes_exactly_from_a_checkpoint(tmp_path, sdxl_base):
    config = small_config(
        tmp_path, [concept(tmp_path, "dog-xl", "dog")], steps=3, batch_size=2, resolution=RESOLUTION, learning_rate=1e-3
    )
    straight, first = build_trainer(config, sdxl_base), build_trainer(config, sdxl_base)
    for _ in range(3):
        straight.train_step()
    for _ in range(2):
        first.train_step()
    save_state(first.state(), tmp_path / "ckpt")
    resumed = build_trainer(config, sdxl_base)
    resumed.restore(load_state(tmp_path / "ckpt"))
    resumed.train_step()
    for name, tensor in straight.trainable_tensors().items():
        assert torch.equal(tensor, resumed.trainable_tensors()[name]), name
