"""The world is a pure function of its seed, and its captions say what the images show."""

from __future__ import annotations

import numpy as np
import pytest

from shared.tokenizer import split_words
from training.world.captions import describe, generic_captions, vocabulary
from training.world.concepts import CONCEPTS, render_concept_targets, render_reg_pool
from training.world.scenes import (
    COLOURS,
    CONCEPT_PATTERNS,
    PATTERNS,
    SIZES,
    Appearance,
    Scene,
    WorldObject,
    random_scene,
    render,
)


def _renders(seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [render(random_scene(rng, patterns=PATTERNS, two_object_prob=0.5)).tobytes() for _ in range(12)]


def test_same_seed_same_world_other_seed_other_world() -> None:
    assert _renders(3) == _renders(3)
    assert _renders(3) != _renders(4)


def test_caption_names_objects_left_to_right_with_articles() -> None:
    scene = Scene(
        "pink",
        (
            WorldObject("triangle", Appearance("red"), "small", 16, 32, 15),
            WorldObject("circle", Appearance("orange"), "large", 48, 32, 26),
        ),
    )
    assert describe(scene) == "a small red triangle and a large orange circle on a pink background"
    assert (
        describe(scene, sizes=(False, False), background=False, photo=True)
        == "photo of a red triangle and an orange circle"
    )


def test_caption_speaks_a_pattern_with_its_colours_or_leaves_it_unsaid() -> None:
    star = WorldObject("star", Appearance("green", "twotone", "red"), "small", 32, 32, 22)
    scene = Scene("white", (star,))
    assert describe(scene) == "a small green and red twotone star on a white background"
    assert describe(scene, colours=(False,), background=False) == "a small twotone star"
    assert describe(scene, patterns=(False,), sizes=(False,), background=False) == "a green star"
    assert describe(scene, modifiers=("<cd-x>",), background=False) == "a small <cd-x> star"


def test_render_paints_the_objects_colour_where_the_caption_puts_it() -> None:
    scene = Scene("white", (WorldObject("square", Appearance("blue"), "large", 32, 32, 40),))
    pixels = np.asarray(render(scene))
    assert tuple(pixels[32, 32]) == (40, 80, 225)
    assert tuple(pixels[2, 2]) == (245, 245, 245)


def test_generic_captions_are_distinct_plain_and_in_vocabulary() -> None:
    captions = generic_captions(1000)
    assert len(set(captions)) == 1000
    words = set(vocabulary())
    assert all(set(c.split()) <= words for c in captions)
    assert not any(p in c for c in captions for p in CONCEPT_PATTERNS)


def test_shipped_tokenizer_keeps_every_world_word_whole(pipe) -> None:
    tokenizer = pipe.tokenizer
    assert split_words(tokenizer, vocabulary()) == []
    assert tokenizer.model_max_length == pipe.text_encoder.config.max_position_embeddings == 32


def test_reg_captions_file_ships_with_the_model(toyworld_dir) -> None:
    lines = (toyworld_dir / "reg_captions.txt").read_text().splitlines()
    assert len(set(lines)) >= 1000


def test_concept_targets_and_reg_pool_are_captioned_by_category() -> None:
    concept = CONCEPTS["striped-circle"]
    targets = render_concept_targets(concept, 8, seed=1, modifier="<cd-stripes>", wordings=6, stand_ins=False)
    assert len({im.tobytes() for im, _ in targets}) == 8
    assert all(len(captions) == 6 for _, captions in targets)
    assert all("<cd-stripes> circle" in caption for _, captions in targets for caption in captions)
    # the last three with a companion, named in every wording
    assert [{c.count(" and a") for c in captions} for _, captions in targets] == [{0}] * 5 + [{1}] * 3
    full = [captions[0] for _, captions in targets]
    assert all(" on a" in c and any(size in c for size in SIZES) and not c.startswith("photo") for c in full)
    rewordings = [c for _, captions in targets for c in captions[1:]]
    assert any(c.startswith("photo of") for c in rewordings) and any(" on a" not in c for c in rewordings)
    # the wordings have their own random stream: the images do not depend on how many there are
    one = render_concept_targets(concept, 8, seed=1, modifier="<cd-stripes>", wordings=1, stand_ins=False)
    assert [captions for _, captions in one] == [[c] for c in full]
    assert [im.tobytes() for im, _ in one] == [im.tobytes() for im, _ in targets]
    assert render_concept_targets(concept, 1, seed=1, detailed=False)[0][1] == ["photo of a <cd-x> circle"]
    # stand-in wordings (by default): the full caption with the companion's appearance named by <stand-in>,
    # size and shape kept
    stand_ins = render_concept_targets(concept, 8, seed=1, modifier="<cd-stripes>")
    assert [captions[0] for _, captions in stand_ins] == full
    assert [len(captions) for _, captions in stand_ins] == [1] * 5 + [2] * 3
    for _, (caption, stand_in) in stand_ins[5:]:
        colour = next(c for c in COLOURS if f" {c} " in caption)  # the plain companion's one appearance word
        assert stand_in == caption.replace(f" {colour} ", " <stand-in> ").replace("an <stand-in>", "a <stand-in>")
    pool = render_reg_pool("circle", 30, seed=2)
    assert all("circle" in caption and "<" not in caption for _, caption in pool)


def test_concept_second_names_the_concept_after_its_companion_and_keeps_the_scenes() -> None:
    """`concept_second=k`: k of the companion images name the concept second (spread evenly, the
    first so), each of them the random-side scene mirrored; the images without a companion, the
    companions and the wordings' stream are as with random sides (None). The world's default is 2."""
    star = CONCEPTS["twotone-star"]
    random_sides = render_concept_targets(star, 8, seed=1, modifier="<cd-star>", concept_second=None)
    for k, expected in ((0, [False] * 3), (1, [True, False, False]), (2, [True, False, True]), (3, [True] * 3)):
        chosen = render_concept_targets(star, 8, seed=1, modifier="<cd-star>", concept_second=k)
        assert [im.tobytes() for im, _ in chosen[:5]] == [im.tobytes() for im, _ in random_sides[:5]]
        named_second = [" and a" in caption.split("<cd-star>")[0] for _, (caption, _stand_in) in chosen[5:]]
        assert named_second == expected, k
        pairs = zip(chosen[5:], random_sides[5:], strict=True)
        for (image, (caption, _)), (random_image, (random_caption, _)) in pairs:
            phrases = [sorted(c.split(" on a ")[0].split(" and ")) for c in (caption, random_caption)]
            assert phrases[0] == phrases[1]  # the same two objects, named in the order of their sides
            if caption != random_caption:  # mirrored: far closer flipped than as is (a two-tone keeps its left colour)
                pixels, random_pixels = np.asarray(image).astype(int), np.asarray(random_image).astype(int)
                assert np.abs(pixels[:, ::-1] - random_pixels).mean() < 0.6 * np.abs(pixels - random_pixels).mean()
    default, two = (
        render_concept_targets(star, 8, seed=1, modifier="<cd-star>", **k) for k in ({}, {"concept_second": 2})
    )
    assert [c for _, c in default] == [c for _, c in two]
    # more than there are companion images: all of them (so the default serves any `companions`)
    one = render_concept_targets(star, 8, seed=1, modifier="<cd-star>", companions=1)
    assert " and a" in one[-1][1][0].split("<cd-star>")[0]
    assert [c for _, c in render_concept_targets(star, 8, seed=1, concept_second=9)] == [
        c for _, c in render_concept_targets(star, 8, seed=1, concept_second=3)
    ]
    with pytest.raises(ValueError, match="concept_second=-1: give a count"):
        render_concept_targets(star, 8, seed=1, concept_second=-1)
