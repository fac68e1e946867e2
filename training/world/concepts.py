"""Concepts of the world and the data Custom Diffusion trains them with.

A concept is one held-out appearance of a known shape ("a particular blue-and-yellow striped
circle"). This module renders its target images with captions, the captioned "real-style"
regularisation pool of its category, and held-out prompts (with what they ask for) to evaluate it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from training.config import STAND_IN
from training.world.captions import BACKGROUND_UNSAID, PHOTO_SAID, SIZE_UNSAID, describe
from training.world.scenes import (
    BACKGROUNDS,
    COLOURS,
    IMAGE_SIZE,
    PLAIN,
    SHAPES,
    SIZES,
    Appearance,
    Scene,
    place,
    random_appearance,
    random_scene,
    render,
)


@dataclass(frozen=True)
class Concept:
    """A particular appearance of a category (the shape word, e.g. "circle")."""

    name: str
    category: str
    appearance: Appearance

    def __post_init__(self) -> None:
        if self.category not in SHAPES:
            raise ValueError(f"category={self.category!r} is not one of {SHAPES}")
        if self.appearance.pattern == PLAIN:
            raise ValueError(f"concept {self.name!r}: a plain appearance is what the base model already knows")


# A catalogue of ready-made concepts, one per family, with distinct categories so any two compose.
CONCEPTS: dict[str, Concept] = {
    c.name: c
    for c in (
        Concept("striped-circle", "circle", Appearance("blue", "striped", "yellow")),
        Concept("dotted-square", "square", Appearance("red", "dotted", "green")),
        Concept("checkered-diamond", "diamond", Appearance("purple", "checkered", "orange")),
        Concept("twotone-star", "star", Appearance("green", "twotone", "red")),
        Concept("outlined-triangle", "triangle", Appearance("orange", "outlined", "blue")),
    )
}


@dataclass(frozen=True)
class ExpectedObject:
    """What a prompt asks of one object; None means the prompt leaves it open. `concept` marks the
    object named by a modifier token (its appearance is judged by concept fidelity, not here)."""

    shape: str
    colour: str | None = None
    size: str | None = None
    concept: Concept | None = None


@dataclass(frozen=True)
class Expected:
    """What a prompt asks of a whole image; objects left to right as the prompt names them."""

    objects: tuple[ExpectedObject, ...]
    background: str | None = None


def _scene_of(rng: np.random.Generator, named: list[Concept | None], size: str) -> Scene:
    """Objects left to right, all of `size`: each concept in its own appearance, each None a plain
    object of a random shape and colour (a companion), on a random background."""
    count = len(named)
    objects = tuple(
        place(rng, concept.category, concept.appearance, size, slot, count)
        if concept is not None
        else place(rng, str(rng.choice(SHAPES)), random_appearance(rng), size, slot, count)
        for slot, concept in enumerate(named)
    )
    return Scene(str(rng.choice(list(BACKGROUNDS))), objects)


def _with_companion(rng: np.random.Generator, named: list[Concept | None]) -> list[Concept | None]:
    """`named` with a companion (None) at a random slot."""
    out = list(named)
    out.insert(int(rng.integers(len(out) + 1)), None)
    return out


def _mirrored(scene: Scene) -> Scene:
    """The scene in a mirror: each centre x → IMAGE_SIZE − x, the objects named left to right again;
    each object keeps its shape, appearance, size and height."""
    objects = tuple(replace(o, cx=IMAGE_SIZE - o.cx) for o in reversed(scene.objects))
    return replace(scene, objects=objects)


TARGET_COMPANIONS = 3
"""How many of a concept's target images show it beside a companion object, by default."""
TARGET_WORDINGS = 1
"""Wordings of each target image's caption, by default (`reworded_captions`). More help a little on
prompts worded unlike the captions, but a pair merged from two such concepts is drawn less often
(docs/quality.md), so the world keeps one."""
TARGET_CONCEPT_SECOND = 2
"""Of the images with a companion, how many name the concept second (the companion on its left), by
default. Users name a concept after another object ("a red square and a <cd-x> star") more often
than their few photos show it there; naming it second in most such captions keeps it drawn in that
position, merged or not (docs/quality.md)."""


def render_concept_targets(
    concept: Concept,
    n: int = 8,
    seed: int = 0,
    *,
    modifier: str = "<cd-x>",
    detailed: bool = True,
    companions: int = TARGET_COMPANIONS,
    wordings: int = TARGET_WORDINGS,
    stand_ins: bool = True,
    concept_second: int | None = TARGET_CONCEPT_SECOND,
) -> list[tuple[Image.Image, list[str]]]:
    """`n` 64×64 images of the concept, varied in size, position and background, the last `companions`
    of them (never the first) beside a plain object, as photos of a pet show other things: that is
    where the concept is drawn at the sizes of two-object scenes. Each comes with `wordings` wordings
    of its caption, the full one first (`reworded_captions`); the paper's single caption with not
    `detailed`. Captions: "a small <cd-x> circle and a red square on a pink background" (detailed) or
    "photo of a <cd-x> circle". With `stand_ins` (the world recipe trains on them), an image with a
    companion also has its full caption with the companion's appearance named by STAND_IN, its
    stand-in wording ("a large <stand-in> square and a large <cd-x> star"). Three of eight with a
    companion did better in pairs than none or four; which eight images are drawn (the seed) matters
    more than three or four. `concept_second` of
    the companion images (all of them, if fewer) name the concept second, the companion on its left,
    spread evenly, the first such: a scene drawn the other way round is mirrored, so that every other
    draw, and every other image, stays as it would be with None, which leaves each companion on the
    side drawn at random (TARGET_CONCEPT_SECOND says why)."""
    rng = np.random.default_rng([seed, 0xC0])
    wording_rng = np.random.default_rng([seed, 0xC1])  # its own stream: the images do not depend on `wordings`
    first_companion = max(1, n - companions)
    with_companion = max(0, n - first_companion)
    if concept_second is not None and concept_second < 0:
        raise ValueError(f"concept_second={concept_second}: give a count (0 or more), or None: random sides")
    second = None if concept_second is None else min(concept_second, with_companion)
    out = []
    for i in range(n):
        size = str(rng.choice(SIZES))
        named: list[Concept | None] = _with_companion(rng, [concept]) if i >= first_companion else [concept]
        scene = _scene_of(rng, named, size)
        if len(named) > 1 and second is not None:
            k = i - first_companion  # spread evenly, the first named second: 2 of 3 → second, first, second
            wanted_second = (k * second) % with_companion < second
            drawn_second = named[0] is None  # the companion drawn on the left
            if drawn_second != wanted_second:
                named, scene = named[::-1], _mirrored(scene)
        modifiers = tuple(modifier if c is not None else None for c in named)
        if detailed:
            captions = reworded_captions(scene, modifiers, wording_rng, wordings)
            if stand_ins and len(named) > 1:
                captions.append(describe(scene, modifiers=tuple(m or STAND_IN for m in modifiers)))
        else:
            captions = [
                describe(scene, sizes=(False,) * len(modifiers), background=False, photo=True, modifiers=modifiers)
            ]
        out.append((render(scene), captions))
    return out


def reworded_captions(
    scene: Scene, modifiers: tuple[str | None, ...], rng: np.random.Generator, count: int
) -> list[str]:
    """The full caption, then `count` − 1 rewordings with words left out as the base model's training
    captions leave them (`training_caption`: each size word 30 %, the background 15 %, "photo of"
    added 25 %); colours and patterns are always spoken. Repeats are kept: a wording listed twice is
    drawn twice as often, so the full caption stays the most frequent."""
    n = len(scene.objects)
    captions = [describe(scene, modifiers=modifiers)]
    for _ in range(count - 1):
        captions.append(
            describe(
                scene,
                sizes=tuple(bool(rng.random() >= SIZE_UNSAID) for _ in range(n)),
                background=bool(rng.random() >= BACKGROUND_UNSAID),
                photo=bool(rng.random() < PHOTO_SAID),
                modifiers=modifiers,
            )
        )
    return captions


def render_reg_pool(category: str, k: int = 200, seed: int = 0) -> list[tuple[Image.Image, str]]:
    """`k` captioned plain images of `category` ("a large red circle on a white background"), a third
    with a companion object: the "real images with close captions" of Custom Diffusion's regularisation."""
    if category not in SHAPES:
        raise ValueError(f"category={category!r} is not one of {SHAPES}")
    rng = np.random.default_rng([seed, 0x8E6])
    out = []
    for _ in range(k):
        count = 2 if rng.random() < 1 / 3 else 1
        slot = int(rng.integers(count))
        objects = tuple(
            place(
                rng,
                category if i == slot else str(rng.choice(SHAPES)),
                random_appearance(rng),
                str(rng.choice(SIZES)),
                i,
                count,
            )
            for i in range(count)
        )
        scene = Scene(str(rng.choice(list(BACKGROUNDS))), objects)
        out.append((render(scene), describe(scene)))
    return out


def concept_prompts(
    concepts: tuple[Concept, ...], modifiers: tuple[str, ...], n: int = 16, seed: int = 0, *, companion: bool = True
) -> list[tuple[str, Expected]]:
    """`n` prompts naming every concept by its modifier, in contexts of backgrounds, sizes and (for one
    concept, every other prompt with `companion`) a plain companion object, with what each asks for."""
    if len(concepts) != len(modifiers):
        raise ValueError(f"{len(concepts)} concepts but {len(modifiers)} modifiers")
    rng = np.random.default_rng([seed, 0x9A])
    by_concept = dict(zip(concepts, modifiers, strict=True))
    out = []
    for i in range(n):
        size = str(rng.choice(SIZES))
        named: list[Concept | None] = list(concepts)
        if len(concepts) == 1 and companion and i % 2 == 1:
            named = _with_companion(rng, named)
        scene = _scene_of(rng, named, size)
        expected = tuple(
            ExpectedObject(c.category, None, size, c)
            if c is not None
            else ExpectedObject(o.shape, o.appearance.colour, size)
            for c, o in zip(named, scene.objects, strict=True)
        )
        prompt = describe(scene, modifiers=tuple(by_concept[c] if c is not None else None for c in named))
        out.append((prompt, Expected(expected, scene.background)))
    return out


def class_prompts(category: str, n: int = 16, seed: int = 0) -> list[tuple[str, Expected]]:
    """Prompts for the category without the modifier ("a circle on a white background", "a small circle"):
    the prompts on which drift is measured."""
    rng = np.random.default_rng([seed, 0xD1])
    out = []
    for _ in range(n):
        scene = random_scene(rng, two_object_prob=0.0)
        obj = place(rng, category, Appearance(str(rng.choice(list(COLOURS)))), scene.objects[0].size, 0, 1)
        scene = Scene(scene.background, (obj,))
        say_size, say_bg = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        prompt = describe(scene, sizes=(say_size,), colours=(False,), background=say_bg)
        wanted = ExpectedObject(category, None, obj.size if say_size else None)
        out.append((prompt, Expected((wanted,), scene.background if say_bg else None)))
    return out
