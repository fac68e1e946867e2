"""Write examples/: the demo's target images and regularisation set (rendered by the toy world), and
the second concept the demo publishes, trained here once with the world's recipe.

    python tools/make_examples.py      (needs the embedded base model in shared/assets/toyworld)
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from training.config import TOKEN_PLACEHOLDER, ConceptConfig, TrainConfig
from training.loop import train
from training.regularization import captioned_images, write_captioned_folder
from training.world.concepts import CONCEPTS, render_concept_targets, render_reg_pool
from training.world.recipe import world_recipe

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MODEL = ROOT / "shared" / "assets" / "toyworld"


def write_concept_data(name: str, seed: int) -> Path:
    """The captions write the concept as V* (the paper's placeholder), so the folder trains under any
    concept id: `cdserve train --id my-star` puts `<cd-my-star>` there."""
    concept = CONCEPTS[name]
    folder = EXAMPLES / name
    shutil.rmtree(folder, ignore_errors=True)
    write_captioned_folder(
        folder / "targets", render_concept_targets(concept, n=8, seed=seed, modifier=TOKEN_PLACEHOLDER)
    )
    write_captioned_folder(folder / "reg", render_reg_pool(concept.category, k=200, seed=seed + 1))
    return folder


def main() -> None:
    # Both on target set 31 of bench.pairs, so the demo's merged pair is one the bench measures.
    write_concept_data("twotone-star", seed=31)
    folder = write_concept_data("outlined-triangle", seed=31)
    targets = captioned_images(folder / "targets")
    with tempfile.TemporaryDirectory() as work:
        result = train(
            TrainConfig(
                base_model=str(MODEL),
                output_dir=work,
                concepts=[
                    ConceptConfig(
                        concept_id="outlined-triangle",
                        category="triangle",
                        modifier_token="<cd-outlined-triangle>",
                        images=[str(path) for path, _ in targets],
                        captions=[wordings for _, wordings in targets],
                        regularization="real",
                        reg_dir=str(folder / "reg"),
                    )
                ],
                recipe=world_recipe(checkpoint_every=10**5),
            )
        )
        (EXAMPLES / "concepts").mkdir(parents=True, exist_ok=True)
        shutil.copy(result.path, EXAMPLES / "concepts" / "outlined-triangle.safetensors")
    print(f"wrote {EXAMPLES}")


if __name__ == "__main__":
    main()
