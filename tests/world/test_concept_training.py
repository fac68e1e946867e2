"""A short Custom Diffusion run on the embedded base model teaches it a concept it cannot draw.

The concept is the catalogue's twotone star (green left, red right): the base model draws two-tone
circles and other two-tone stars, never this one. Trained with the recipe the demo uses (its rates,
regularisation and wordings) for a part of its steps, on the demo's own example images, the modifier
token must make the evaluator see the concept far more often than the base model does, in held-out
prompts (other sizes, backgrounds, a companion object). The recipe's learning rates are constant, so
a shorter run is the first part of the demo's; docs/quality.md has what the full run reaches.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from serving.engine import DeltaEngine, GenerationRequest
from shared import artifact
from shared.basemodel import load_base_model
from training.config import ConceptConfig, TrainConfig
from training.loop import train
from training.regularization import captioned_images
from training.world.concepts import CONCEPTS, concept_prompts
from training.world.metrics import concept_fidelity
from training.world.prompting import GUIDANCE, SAMPLE_STEPS
from training.world.recipe import world_recipe

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONCEPT = CONCEPTS["twotone-star"]
TOKEN = "<cd-twotone-star>"
STEPS = 150
"""Far fewer than the recipe's: measured on three training seeds, the concept is already drawn in
most held-out prompts by then, well clear of the threshold below."""


def _fidelity(engine: DeltaEngine, evaluator, delta, prompts: list[str]) -> float:
    requests = [
        GenerationRequest(
            p, delta=delta, steps=SAMPLE_STEPS, guidance_scale=GUIDANCE, seed=500 + i, height=64, width=64
        )
        for i, p in enumerate(prompts)
    ]
    images = [Image.fromarray((r.images[0] * 255).round().astype("uint8")) for r in engine.generate(requests)]
    return concept_fidelity(evaluator.read(images), CONCEPT)


def test_short_training_raises_concept_fidelity_far_above_the_base(toyworld_dir, evaluator, tmp_path) -> None:
    folder = EXAMPLES / CONCEPT.name / "targets"
    targets = captioned_images(folder)
    base = load_base_model(toyworld_dir)
    config = TrainConfig(
        base_model=str(toyworld_dir),
        output_dir=str(tmp_path),
        concepts=[
            ConceptConfig(
                concept_id=CONCEPT.name,
                category=CONCEPT.category,
                modifier_token=TOKEN,
                images=[str(path) for path, _ in targets],
                captions=[wordings for _, wordings in targets],
                regularization="real",
                reg_dir=str(EXAMPLES / CONCEPT.name / "reg"),
            )
        ],
        recipe=world_recipe(steps=STEPS, checkpoint_every=10**5),
    )
    concept = artifact.load(train(config, base=base, show_bar=False).path, base=base.spec)

    engine = DeltaEngine(base)
    prompts = [p for p, _ in concept_prompts((CONCEPT,), (TOKEN,), n=24, seed=11)]
    without_token = [p.replace(f"{TOKEN} ", "") for p in prompts]
    before = _fidelity(engine, evaluator, None, without_token)
    after = _fidelity(engine, evaluator, concept.delta, prompts)
    assert before <= 0.1, before
    assert after >= before + 0.3, (before, after)  # measured, training seeds 0/1/2: 0.00 → 0.96/0.92/0.92
