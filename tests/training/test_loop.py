"""The Custom Diffusion loop without Ray: what trains, what must not change, the artifact."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from safetensors import safe_open

from shared import artifact
from shared.basemodel import cross_attention_layers
from training.checkpoint import load_state, save_state
from training.loop import build_trainer, train
from training.output import FULL_METADATA_KEY
from training.trainer import STAND_IN_NORMS

from .conftest import concept, small_config

ATTN_WEIGHTS = {
    "kv": ("to_k.weight", "to_v.weight"),
    "kv_frozen_token": ("to_k.weight", "to_v.weight"),
    "crossattn": ("to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight"),
    "token": (),
}


def changed_unet_parameters(trainer, base) -> set[str]:
    before = dict(base.pipeline.unet.named_parameters())
    return {name for name, p in trainer.unet.named_parameters() if not torch.equal(p, before[name])}


def test_each_mode_changes_exactly_its_parameters(tmp_path, tiny_base):
    layers = sorted(cross_attention_layers(tiny_base.pipeline.unet))
    base_unet = {k: v.clone() for k, v in tiny_base.pipeline.unet.state_dict().items()}
    table = tiny_base.pipeline.text_encoder.get_input_embeddings().weight.clone()
    for mode in ("kv", "crossattn", "kv_frozen_token", "token", "full"):
        config = small_config(tmp_path, [concept(tmp_path, "c", "dog")], mode=mode)
        trainer = build_trainer(config, tiny_base)
        initial_token = trainer.denoiser.embeddings[0].detach().clone()
        trainer.train_step()
        changed = changed_unet_parameters(trainer, tiny_base)
        if mode == "full":
            assert set(trainer.trainable) == {name for name, _ in tiny_base.pipeline.unet.named_parameters()}
            assert {f"{layer}.{w}" for layer in layers for w in ATTN_WEIGHTS["crossattn"]} <= changed
        else:
            assert changed == {f"{layer}.{w}" for layer in layers for w in ATTN_WEIGHTS[mode]}, mode
        token_changed = not torch.equal(trainer.denoiser.embeddings[0].detach(), initial_token)
        assert token_changed == (mode != "kv_frozen_token"), mode
    # the base model is never written: not the UNet, not the embedding table (start-of-text row included)
    assert all(torch.equal(v, base_unet[k]) for k, v in tiny_base.pipeline.unet.state_dict().items())
    assert torch.equal(tiny_base.pipeline.text_encoder.get_input_embeddings().weight, table)


def test_joint_training_of_three_concepts_gives_every_token_gradient(tmp_path, tiny_base):
    concepts = [concept(tmp_path, f"c{i}", category, offset=i) for i, category in enumerate(("dog", "cat", "chair"))]
    config = small_config(tmp_path, concepts, batch_size=6, steps=1)
    trainer = build_trainer(config, tiny_base)
    assert len(set(trainer.initializer_words)) == 3
    table = tiny_base.pipeline.text_encoder.get_input_embeddings().weight
    vocab = tiny_base.pipeline.tokenizer.get_vocab()
    for word, embedding in zip(trainer.initializer_words, trainer.denoiser.embeddings, strict=True):
        assert torch.equal(embedding.detach(), table[vocab[f"{word}</w>"]])  # starts from an existing token
        assert word not in {"dog", "cat", "chair", "photo", "of", "a"}
    before = [e.detach().clone() for e in trainer.denoiser.embeddings]
    trainer.train_step()
    for token, old, new in zip(trainer.denoiser.tokens, before, trainer.denoiser.embeddings, strict=True):
        assert not torch.equal(old, new.detach()), f"{token} did not learn"


def test_train_writes_a_valid_artifact_for_a_joint_bundle(tmp_path, tiny_base):
    concepts = [
        concept(tmp_path, "dog1", "dog", regularization="generated"),
        concept(tmp_path, "cat1", "cat", offset=2, captions=["a V* cat on grass", ""]),
        concept(
            tmp_path, "chair1", "chair", offset=4, captions=[["a V* chair", "photo of a V* chair", "a V* chair"], ""]
        ),
    ]
    config = small_config(tmp_path, concepts, num_reg_images=2, reg_generation_steps=2, bundle_id="pets")
    result = train(config, base=tiny_base, show_bar=False)
    loaded = artifact.load(result.path, base=tiny_base.spec)
    header = loaded.header
    assert header.concept_id == "pets" and header.delta_kind == "full"
    assert header.modifier_tokens == ["<cd-dog1>", "<cd-cat1>", "<cd-chair1>"]
    assert header.concepts[1].captions == ["a <cd-cat1> cat on grass", "photo of a <cd-cat1> cat"]
    assert header.concepts[2].captions == ["a <cd-chair1> chair", "photo of a <cd-chair1> chair"]  # distinct wordings
    assert header.metrics["steps"] == 2 and header.metrics["final_loss"] > 0
    assert header.recipe["resolved"]["regularization"] == ["generated", "none", "none"]
    assert set(loaded.delta.layers) == set(cross_attention_layers(tiny_base.pipeline.unet))
    assert all(set(layer) == {"to_k", "to_v"} for layer in loaded.delta.layers.values())


def test_compressed_and_full_finetune_outputs(tmp_path, tiny_base):
    compressed = train(
        small_config(tmp_path / "a", [concept(tmp_path, "c", "dog")], compress_rank=1), base=tiny_base, show_bar=False
    )
    loaded = artifact.load(compressed.path, base=tiny_base.spec)
    assert loaded.header.delta_kind == "lowrank" and loaded.delta.max_rank == 1
    full = train(
        small_config(tmp_path / "b", [concept(tmp_path, "c", "dog")], mode="full"), base=tiny_base, show_bar=False
    )
    with safe_open(str(full.path), "pt") as f:
        assert FULL_METADATA_KEY in f.metadata()
        names = set(f.keys())
    assert "token.<cd-c>" in names and len(names) == 1 + len(list(tiny_base.pipeline.unet.parameters()))


def test_restoring_a_checkpoint_continues_exactly(tmp_path, tiny_base):
    config = small_config(tmp_path, [concept(tmp_path, "c", "dog")], steps=4)
    straight = build_trainer(config, tiny_base)
    for _ in range(4):
        straight.train_step()
    first = build_trainer(config, tiny_base)
    first.train_step()
    first.train_step()
    save_state(first.state({"note": "half way"}), tmp_path / "ckpt")
    resumed = build_trainer(config, tiny_base)
    state = load_state(tmp_path / "ckpt")
    assert state.step == 2 and state.metrics == {"note": "half way"}
    resumed.restore(state)
    resumed.train_step()
    resumed.train_step()
    assert resumed.step == 4
    for name, tensor in straight.trainable_tensors().items():
        assert torch.equal(tensor, resumed.trainable_tensors()[name]), name


def test_token_learning_rate_drives_the_token_alone(tmp_path, tiny_base):
    """Adam's first step moves each parameter by about its learning rate: the token by the token's."""
    moves = {}
    for token_lr in (None, 1e-2):
        config = small_config(
            tmp_path, [concept(tmp_path, "c", "dog")], learning_rate=1e-6, token_learning_rate=token_lr
        )
        trainer = build_trainer(config, tiny_base)
        start = trainer.denoiser.embeddings[0].detach().clone()
        kv = {name: p.detach().clone() for name, p in trainer.trainable.items()}
        trainer.train_step()
        token_move = (trainer.denoiser.embeddings[0].detach() - start).abs().max().item()
        kv_move = max((p.detach() - kv[name]).abs().max().item() for name, p in trainer.trainable.items())
        moves[token_lr] = (token_move, kv_move)
    lr = config.recipe.effective_learning_rate
    assert moves[None][0] <= 1.5 * lr and moves[1e-2][0] >= 100 * lr
    assert moves[None][1] == moves[1e-2][1] <= 1.5 * lr


@pytest.mark.parametrize(
    "captions, problem",
    [
        ([[], ""], "0 wordings"),
        ([["a V* cat"] * 33, ""], "33 wordings"),
        ([["a V* cat", "a cat"], ""], "lacks the modifier"),
    ],
)
def test_caption_wordings_are_checked_per_image(tmp_path, captions, problem):
    with pytest.raises(ValidationError, match=problem):
        concept(tmp_path, "cat1", "cat", captions=captions)


def test_stand_in_wordings_are_kept_apart_from_the_captions_the_artifact_records(tmp_path):
    wordings = ["a V* cat and a red ball", "a V* cat and a <stand-in> ball", "photo of a V* cat"]
    config = concept(tmp_path, "cat1", "cat", captions=[wordings, ""])
    assert config.image_captions()[0] == ("a <cd-cat1> cat and a red ball", "photo of a <cd-cat1> cat")
    assert config.image_stand_ins() == [("a <cd-cat1> cat and a <stand-in> ball",), ()]
    assert not any("<stand-in>" in caption for caption in config.all_captions())  # the merge never sees one


@pytest.mark.parametrize(
    "fields, problem",
    [
        ({"captions": [["a <stand-in> ball and a V* cat"], ""]}, "every wording names a <stand-in>"),
        ({"captions": [["a V* cat", "a <stand-in> ball and a cat"], ""]}, "lacks the modifier"),
        ({"modifier_token": "<stand-in>"}, "not be <stand-in>"),
    ],
)
def test_stand_in_wordings_are_checked(tmp_path, fields, problem):
    with pytest.raises(ValidationError, match=problem):
        concept(tmp_path, "cat1", "cat", **fields)


def test_a_stand_in_gets_a_fresh_vector_in_every_prompt_and_the_step_trains(tmp_path, tiny_base):
    cat = concept(tmp_path, "cat1", "cat", captions=[["a V* cat and a red ball", "a V* cat and a <stand-in> ball"], ""])
    config = small_config(tmp_path, [cat], stand_in_probability=1.0)
    trainer = build_trainer(config, tiny_base)
    prompts = tuple(
        trainer._tokenize(c)
        for c in ("a <cd-cat1> cat and a <stand-in> ball", "a <cd-cat1> cat", "a <cd-cat1> cat and a <stand-in> ball")
    )
    vectors = trainer._stand_in_vectors(prompts)
    assert vectors[1] is None and not torch.equal(vectors[0], vectors[2])
    assert all(STAND_IN_NORMS[0] <= float(v.norm()) <= STAND_IN_NORMS[1] + 1e-5 for v in (vectors[0], vectors[2]))
    again = build_trainer(config, tiny_base)._stand_in_vectors(prompts)
    assert torch.equal(again[0], vectors[0])  # seeded by the step, like the noise
    assert trainer._stand_in_vectors(prompts[1:2]) == ()
    assert math.isfinite(trainer.train_step())


def test_samples_are_rendered_every_sample_every_steps_with_the_weights_so_far(tmp_path, tiny_base):
    from PIL import Image

    from training.progress import ProgressFile
    from training.samples import SAMPLE_FILE, read_sample, sample_prompt

    processors = {name: type(p) for name, p in tiny_base.pipeline.unet.attn_processors.items()}
    config = small_config(tmp_path, [concept(tmp_path, "c", "dog")], steps=5, sample_every=2)
    progress = ProgressFile(tmp_path / "job")
    progress.path.parent.mkdir()
    train(config, base=tiny_base, progress=progress, show_bar=False)

    sample = read_sample(progress.path.parent, max_bytes=1 << 20)
    assert sample is not None
    assert (sample.step, sample.prompt) == (4, "photo of a <cd-c> dog") == (4, sample_prompt(config))
    assert progress.read()["sample_step"] == 4  # steps 2 and 4, not the last (5)
    # the engine's processors went onto the base for the render only
    assert {name: type(p) for name, p in tiny_base.pipeline.unet.attn_processors.items()} == processors
    pipeline = tiny_base.pipeline
    size = pipeline.unet.config.sample_size * pipeline.vae_scale_factor  # the base's default size
    with Image.open(progress.path.parent / SAMPLE_FILE) as image:
        assert image.size == (size, size) and image.mode == "RGB"
    assert read_sample(progress.path.parent, max_bytes=100) is None  # too large to hand out


def test_the_full_mode_cannot_sample(tmp_path):
    with pytest.raises(ValidationError, match="samples are rendered from a delta"):
        small_config(tmp_path, [concept(tmp_path, "c", "dog")], mode="full", sample_every=1)
