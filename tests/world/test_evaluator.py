"""The committed evaluator reads fresh world images correctly, and the metrics mean what they say."""

from __future__ import annotations

import numpy as np

from training.world.concepts import CONCEPTS, render_concept_targets, render_reg_pool
from training.world.evaluator import HEADS, soften
from training.world.evaluator_training import world_sample
from training.world.metrics import composition, concept_fidelity, drift
from training.world.scenes import Scene, place, render

HELDOUT_SEED = 424242  # never used by train-base


def test_heldout_accuracy_at_least_095_per_attribute(evaluator) -> None:
    scenes, images = world_sample(HELDOUT_SEED, 600)
    clean = evaluator.accuracy(images, scenes)
    softened = evaluator.accuracy(soften(images, np.random.default_rng(HELDOUT_SEED)), scenes)
    assert set(clean) == set(HEADS)
    assert min(clean.values()) >= 0.95, clean
    assert min(softened.values()) >= 0.95, softened


def test_concept_images_show_the_concept_and_plain_images_do_not(evaluator) -> None:
    for concept in CONCEPTS.values():
        targets = evaluator.read([im for im, _ in render_concept_targets(concept, 16, seed=7)])
        plain = evaluator.read([im for im, _ in render_reg_pool(concept.category, 16, seed=7)])
        assert concept_fidelity(targets, concept) >= 0.9, concept.name
        assert drift(plain, concept) <= 1 / 16, concept.name


def test_composition_needs_both_concepts_on_different_objects(evaluator) -> None:
    circle, square = CONCEPTS["striped-circle"], CONCEPTS["dotted-square"]
    rng = np.random.default_rng(5)
    both = [
        render(
            Scene(
                "white",
                (
                    place(rng, "circle", circle.appearance, "large", 0, 2),
                    place(rng, "square", square.appearance, "large", 1, 2),
                ),
            )
        )
        for _ in range(8)
    ]
    readings = evaluator.read(both)
    assert composition(readings, [circle, square]) >= 0.9
    assert composition(readings, [circle, circle]) == 0.0
