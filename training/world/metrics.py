"""Quality measures over evaluator readings: the paper's image/text alignment, drift and composition.

Each takes the evaluator's `SceneReading`s of a set of samples and returns a fraction in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

from training.world.concepts import Concept, Expected
from training.world.evaluator import ObjectReading, SceneReading, canonical


def shows_appearance(obj: ObjectReading, concept: Concept) -> bool:
    """The object wears the concept's pattern in the concept's colours (any shape)."""
    return obj.appearance == canonical(concept.appearance)


def shows_concept(obj: ObjectReading, concept: Concept) -> bool:
    """The object is the concept: its category with its appearance."""
    return obj.shape == concept.category and shows_appearance(obj, concept)


def concept_fidelity(readings: Sequence[SceneReading], concept: Concept) -> float:
    """Image alignment: fraction of samples in which some object is the concept."""
    return _mean(any(shows_concept(o, concept) for o in r.objects) for r in readings)


def prompt_fidelity(readings: Sequence[SceneReading], expected: Sequence[Expected]) -> float:
    """Text alignment: fraction of samples whose object count, background, and each object's shape,
    size and (for plain companions) colour match what its prompt asked; appearance of concept
    objects is left to `concept_fidelity`."""
    if len(readings) != len(expected):
        raise ValueError(f"{len(readings)} readings but {len(expected)} expectations")
    return _mean(_follows(r, e) for r, e in zip(readings, expected, strict=True))


def _follows(reading: SceneReading, expected: Expected) -> bool:
    if len(reading.objects) != len(expected.objects):
        return False
    if expected.background is not None and reading.background != expected.background:
        return False
    for obj, want in zip(reading.objects, expected.objects, strict=True):
        if obj.shape != want.shape or (want.size is not None and obj.size != want.size):
            return False
        if want.concept is None and want.colour is not None and obj.appearance.colour != want.colour:
            return False
    return True


def drift(readings: Sequence[SceneReading], concept: Concept) -> float:
    """Language drift: fraction of class-prompt samples ("a circle") in which the concept's appearance leaks."""
    return _mean(any(shows_appearance(o, concept) for o in r.objects) for r in readings)


def composition(readings: Sequence[SceneReading], concepts: Sequence[Concept]) -> float:
    """Fraction of samples in which every concept appears, each on a different object."""
    return _mean(_all_present(r, concepts) for r in readings)


def _all_present(reading: SceneReading, concepts: Sequence[Concept]) -> bool:
    free = list(reading.objects)
    for concept in concepts:
        match = next((o for o in free if shows_concept(o, concept)), None)
        if match is None:
            return False
        free.remove(match)
    return True


def attribute_accuracy(readings: Sequence[SceneReading], expected: Sequence[Expected]) -> dict[str, float]:
    """Per-attribute accuracy of one-object prompts with a colour: shape, colour, size, background."""
    pairs = [(r.objects[0], e.objects[0], r, e) for r, e in zip(readings, expected, strict=True)]
    return {
        "shape": _mean(o.shape == w.shape for o, w, _, _ in pairs),
        "colour": _mean(o.appearance.colour == w.colour for o, w, _, _ in pairs if w.colour is not None),
        "size": _mean(o.size == w.size for o, w, _, _ in pairs if w.size is not None),
        "background": _mean(r.background == e.background for _, _, r, e in pairs if e.background is not None),
        "count": _mean(len(r.objects) == len(e.objects) for _, _, r, e in pairs),
    }


def _mean(flags) -> float:
    values = list(flags)
    return sum(values) / len(values) if values else float("nan")
