"""Plain-English captions of world scenes, from a vocabulary where every word is one BPE token.

"a small red circle and a large green and yellow striped square on a white background": objects are
named left to right. Training captions drop attributes at random so the base model also answers short
prompts ("a circle", "photo of a red star") the way Custom Diffusion's class and concept prompts are
written.
"""

from __future__ import annotations

import numpy as np

from training.world.scenes import (
    BACKGROUNDS,
    COLOURS,
    CONCEPT_PATTERNS,
    PLAIN,
    SHAPES,
    SIZES,
    Appearance,
    Scene,
    WorldObject,
    random_scene,
)

# Words of the augmentation prompts Custom Diffusion adds to rescaled targets ("very small",
# "far away", "zoomed in", "close up") and of its class prompts ("photo of a dog"): kept in the
# tokenizer's vocabulary so they are whole tokens, even where the base model never trained on them.
PROMPT_WORDS: tuple[str, ...] = ("photo", "of", "very", "far", "away", "zoomed", "in", "close", "up")
PHOTO_PREFIX = "photo of "


def with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def appearance_words(look: Appearance, *, colour: bool = True, pattern: bool = True) -> list[str]:
    """["green", "and", "red", "twotone"]; a pattern's second colour is spoken only with its first."""
    words = [look.colour] if colour else []
    if pattern and look.pattern != PLAIN:
        words += ["and", str(look.colour2), look.pattern] if colour else [look.pattern]
    return words


def object_phrase(
    obj: WorldObject, *, size: bool = True, colour: bool = True, pattern: bool = True, modifier: str | None = None
) -> str:
    """The object in words, e.g. "small green and red twotone star"; with `modifier` the appearance is
    named by it instead: "small <cd-x> star"."""
    words = [obj.size] if size else []
    words += [modifier] if modifier is not None else appearance_words(obj.appearance, colour=colour, pattern=pattern)
    return " ".join([*words, obj.shape])


def describe(
    scene: Scene,
    *,
    sizes: tuple[bool, ...] | None = None,
    colours: tuple[bool, ...] | None = None,
    patterns: tuple[bool, ...] | None = None,
    background: bool = True,
    photo: bool = False,
    modifiers: tuple[str | None, ...] | None = None,
) -> str:
    """Caption a scene; per-object flags choose which attributes are spoken (all by default)."""
    n = len(scene.objects)
    sizes, colours, patterns = sizes or (True,) * n, colours or (True,) * n, patterns or (True,) * n
    modifiers = modifiers or (None,) * n
    phrases = [
        with_article(object_phrase(o, size=s, colour=c, pattern=p, modifier=m))
        for o, s, c, p, m in zip(scene.objects, sizes, colours, patterns, modifiers, strict=True)
    ]
    text = " and ".join(phrases)
    if background:
        text += f" on {with_article(scene.background)} background"
    return (PHOTO_PREFIX if photo else "") + text


SIZE_UNSAID, COLOUR_UNSAID, PATTERN_UNSAID, BACKGROUND_UNSAID = 0.3, 0.1, 0.2, 0.15
PHOTO_SAID = 0.25
"""How often a training caption leaves each attribute out, and how often it starts "photo of"."""


def training_caption(scene: Scene, rng: np.random.Generator) -> str:
    """A caption with attributes dropped at random: size 30 %, colour 10 %, pattern 20 % (so "a green
    star" may be patterned), background 15 %; 25 % "photo of". Plain scenes draw no pattern coin, so
    their captions do not depend on the patterns' existence."""
    n = len(scene.objects)
    return describe(
        scene,
        sizes=tuple(bool(rng.random() >= SIZE_UNSAID) for _ in range(n)),
        colours=tuple(bool(rng.random() >= COLOUR_UNSAID) for _ in range(n)),
        patterns=tuple(o.appearance.pattern != PLAIN and bool(rng.random() >= PATTERN_UNSAID) for o in scene.objects),
        background=bool(rng.random() >= BACKGROUND_UNSAID),
        photo=bool(rng.random() < PHOTO_SAID),
    )


def generic_captions(n: int = 1000, seed: int = 0) -> list[str]:
    """`n` distinct captions of plain scenes: the regularisation captions of the closed-form merge."""
    rng = np.random.default_rng([seed, 0xCA9])
    seen: dict[str, None] = {}
    while len(seen) < n:
        seen.setdefault(training_caption(random_scene(rng, two_object_prob=0.5), rng))
    return list(seen)


def vocabulary() -> list[str]:
    """Every word a world caption or a Custom Diffusion prompt may use, one per line of the corpus."""
    return sorted(
        {
            "a",
            "an",
            "and",
            "on",
            "background",
            *SHAPES,
            *COLOURS,
            *CONCEPT_PATTERNS,
            *BACKGROUNDS,
            *SIZES,
            *PROMPT_WORDS,
        }
    )
