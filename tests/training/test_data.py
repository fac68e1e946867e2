"""Augmentation, the masked loss, the batch composition and regularisation filtering."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from shared.errors import InvalidArgument
from training.augment import LARGE_WORDS, SMALL_WORDS, rescaled
from training.config import Recipe
from training.data import REG, Example, ExampleSource, generator_for
from training.loss import custom_diffusion_loss, masked_mse
from training.regularization import (
    caption_listing,
    read_captioned_folder,
    real_examples,
    similar_captions,
    write_captioned_folder,
)

from .conftest import concept

RED = Image.new("RGB", (20, 20), (255, 0, 0))


def test_rescale_words_masks_and_canvas_agree():
    seen = set()
    for step in range(200):
        sample = rescaled(
            RED, "photo of a <cd-x> dog", resolution=32, latent_factor=4, generator=generator_for(0, step)
        )
        assert 0.4 <= sample.scale <= 1.4
        mask = sample.mask[0]
        assert mask.shape == (8, 8)
        if sample.scale < 0.6:
            assert sample.caption.split(" photo")[0] in SMALL_WORDS
            seen.add("small")
        elif sample.scale > 1.0:
            assert sample.caption.split(" photo")[0] in LARGE_WORDS
            seen.add("large")
        else:
            assert sample.caption == "photo of a <cd-x> dog"
        if sample.scale <= 1.0:
            side = round(sample.scale * 8)
            assert mask.sum() == side * side
            pixel_mask = mask.repeat_interleave(4, 0).repeat_interleave(4, 1).bool()
            assert torch.allclose(sample.pixels[0][pixel_mask], torch.tensor(1.0))  # the red image
            assert torch.all(sample.pixels[:, ~pixel_mask] == 0)  # the blank canvas
        else:
            assert mask.sum() == 64
    assert seen == {"small", "large"}


def test_masked_loss_ignores_padding_and_equals_mse_on_a_full_mask():
    target = torch.randn(2, 4, 8, 8)
    prediction = target.clone()
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:6, 2:6] = 1
    prediction[:, :, 0, 0] += 100.0  # error only where the mask is 0
    assert torch.allclose(masked_mse(prediction, target, mask), torch.zeros(2))
    noisy = torch.randn(2, 4, 8, 8)
    full = torch.ones(2, 1, 8, 8)
    assert torch.allclose(masked_mse(noisy, target, full).mean(), torch.nn.functional.mse_loss(noisy, target))


def test_prior_loss_weighs_the_regularisation_half():
    target = torch.zeros(4, 4, 2, 2)
    prediction = torch.tensor([1.0, 1.0, 2.0, 2.0]).view(4, 1, 1, 1).expand(4, 4, 2, 2)
    is_reg = torch.tensor([False, False, True, True])
    loss = custom_diffusion_loss(prediction, target, torch.ones(4, 1, 2, 2), is_reg, prior_loss_weight=0.5)
    assert loss.item() == pytest.approx(1.0 + 0.5 * 4.0)


def test_targets_are_oversampled_one_to_one_with_regularisation():
    targets = [Example(RED, ("photo of a <cd-x> dog",), 0)]
    regs = [Example(RED, (f"photo of a dog {i}",), REG) for i in range(5)]
    source = ExampleSource(targets, regs, resolution=16, latent_factor=2, augment=False, flip=False, seed=3)
    batch = source.batch(0, per_rank=4)
    assert batch.is_reg.tolist() == [False] * 4 + [True] * 4
    assert batch.captions[:4] == ["photo of a <cd-x> dog"] * 4
    # ranks draw disjoint slices of one global order: together they cover an epoch of reg images
    slices = [source.batch(0, per_rank=2, rank=r, world_size=2).captions[2:] for r in range(2)]
    assert len(set(slices[0] + slices[1])) == 4


def test_each_use_of_an_image_draws_one_of_its_wordings_reproducibly():
    wordings = ("a small <cd-x> dog on a red background", "a <cd-x> dog", "photo of a small <cd-x> dog")
    targets = [Example(RED, wordings, 0), Example(RED, ("photo of a <cd-x> dog",), 0)]
    source = ExampleSource(targets, [], resolution=16, latent_factor=2, augment=False, flip=False, seed=5)
    drawn = [caption for step in range(60) for caption in source.batch(step, per_rank=2).captions]
    assert set(drawn) == {*wordings, "photo of a <cd-x> dog"}
    assert drawn.count("photo of a <cd-x> dog") == 60  # the single caption is used every time its image is
    # a resumed run draws the same wordings at the same steps, and ranks draw independently
    again = ExampleSource(targets, [], resolution=16, latent_factor=2, augment=False, flip=False, seed=5)
    assert again.batch(37, per_rank=2).captions == source.batch(37, per_rank=2).captions
    with pytest.raises(ValueError):
        Example(RED, (), 0)


def test_a_captions_file_lists_a_file_once_per_wording_and_names_a_bad_line(tmp_path):
    folder = write_captioned_folder(tmp_path / "targets", [(RED, ["a V* dog", "photo of a V* dog"]), (RED, "a V* dog")])
    assert caption_listing(folder) == {"00000.png": ["a V* dog", "photo of a V* dog"], "00001.png": ["a V* dog"]}
    (folder / "captions.txt").write_text("00000.png\ta V* dog\n00001.png a V* dog\n")
    with pytest.raises(InvalidArgument, match=r"captions.txt:2: expected 'filename<TAB>caption'") as error:
        caption_listing(folder)
    assert error.value.field == "images"


def test_real_regularisation_keeps_similar_captions(tmp_path, tiny_base):
    pipeline = tiny_base.pipeline
    captions = ["photo of a dog", "a red car on a road", "photo of a dog", "a chair in a kitchen"]
    kept = similar_captions(
        pipeline.tokenizer, pipeline.text_encoder, captions, "photo of a dog", threshold=0.999, limit=10
    )
    assert [index for index, _ in kept] == [0, 2] and all(s == pytest.approx(1.0, abs=1e-5) for _, s in kept)
    everything = similar_captions(
        pipeline.tokenizer, pipeline.text_encoder, captions, "photo of a dog", threshold=-1, limit=3
    )
    assert len(everything) == 3 and [s for _, s in everything] == sorted((s for _, s in everything), reverse=True)

    folder = write_captioned_folder(tmp_path / "reg", [(RED, caption) for caption in captions])
    assert [c for _, c in read_captioned_folder(folder)] == captions
    spec = concept(tmp_path, "x", "dog", regularization="real", reg_dir=str(folder))
    examples = real_examples(spec, Recipe(reg_similarity_threshold=0.999), tiny_base)
    assert [e.captions for e in examples] == [("photo of a dog",), ("photo of a dog",)]
    with pytest.raises(InvalidArgument) as error:
        real_examples(spec.model_copy(update={"category": "zebra"}), Recipe(reg_similarity_threshold=1.0), tiny_base)
    assert error.value.field == "reg_similarity_threshold"


def test_an_image_trains_on_its_stand_in_wordings_as_often_as_the_recipe_says():
    wording, stand_in = "a <cd-x> dog and a red ball", "a <cd-x> dog and a <stand-in> ball"
    others = [Example(RED, ("a <cd-x> dog",), 0)]

    def drawn(probability: float, *, stand_ins: tuple[str, ...] = (stand_in,)) -> list[str]:
        targets = [Example(RED, (wording,), 0, stand_ins), *others]
        source = ExampleSource(
            targets,
            [],
            resolution=16,
            latent_factor=2,
            augment=False,
            flip=False,
            seed=5,
            stand_in_probability=probability,
        )
        return [caption for step in range(200) for caption in source.batch(step, per_rank=2).captions]

    assert drawn(0.0) == drawn(0.5, stand_ins=()) and stand_in not in drawn(0.0)  # none: the draws as before
    half = drawn(0.5)
    assert 0.4 < half.count(stand_in) / (half.count(stand_in) + half.count(wording)) < 0.6
    assert half.count("a <cd-x> dog") == 200 and half == drawn(0.5)  # other images untouched; reproducible
    assert wording not in drawn(1.0)
