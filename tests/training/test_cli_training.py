"""`cdserve training run CONFIG.yaml`: trains in this process (no Ray) and writes the artifact; a bad
value in the YAML is one error line naming the field and exit status 1, not a traceback.
(`cdserve train … --watch` against a real service is in test_service_lifecycle.py.)"""

from __future__ import annotations

import yaml

from cli.main import main as cdserve
from shared import artifact
from training.config import TrainConfig
from training.output import artifact_path

from .conftest import write_images


def write_config(tmp_path, tiny_base_dir, **recipe) -> tuple:
    raw = {
        "base_model": str(tiny_base_dir),
        "output_dir": str(tmp_path / "out"),
        "concepts": [
            {
                "concept_id": "yaml-dog",
                "category": "dog",
                "regularization": "none",
                "images": write_images(tmp_path / "images", 2),
            }
        ],
        "recipe": {"steps": 2, "batch_size": 2, **recipe},
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, raw


def test_training_run_trains_locally_and_writes_the_artifact(tmp_path, tiny_base_dir, capsys):
    path, raw = write_config(tmp_path, tiny_base_dir)
    assert cdserve(["training", "run", str(path)]) == 0
    written = artifact_path(TrainConfig.model_validate(raw))
    assert written.is_file() and f"wrote {written}" in capsys.readouterr().err
    result = artifact.load(written)
    assert result.header.concept_id == "yaml-dog" and result.header.modifier_tokens == ["<cd-yaml-dog>"]
    assert result.header.metrics["steps"] == 2 and result.header.metrics["num_workers"] == 1


def test_training_run_rejects_a_bad_value_naming_the_field(tmp_path, tiny_base_dir, capsys):
    path, _ = write_config(tmp_path, tiny_base_dir, steps=0)
    assert cdserve(["training", "run", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error (INVALID_ARGUMENT)") and "recipe.steps" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
