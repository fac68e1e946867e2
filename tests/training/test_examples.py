"""The example folders train under any concept id, as the README's tour does with `--id my-star`."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import ConceptConfig
from training.regularization import captioned_images

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(("folder", "category"), [("twotone-star", "star"), ("outlined-triangle", "triangle")])
def test_an_example_folder_trains_under_another_id_with_that_id_s_token(folder: str, category: str) -> None:
    targets = captioned_images(EXAMPLES / folder / "targets")
    concept = ConceptConfig(
        concept_id="my-concept",
        category=category,
        images=[str(path) for path, _ in targets],
        captions=[wordings for _, wordings in targets],
    )
    wordings = [wording for per_image in concept.image_captions() + concept.image_stand_ins() for wording in per_image]
    assert len(targets) == 8 and wordings
    assert all("<cd-my-concept>" in wording and "V*" not in wording for wording in wordings)
