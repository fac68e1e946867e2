"""Configuration errors: whatever model and wherever the data came from, a validation failure is one
typed error that names the field (dotted, below the request field or section) and the source."""

from __future__ import annotations

import pytest
from pydantic import Field, model_validator

from shared.config import StrictModel, file_and_flag_fields, load_yaml, validated
from shared.errors import InvalidArgument, InvalidArtifact


class Inner(StrictModel):
    steps: int = Field(1, ge=1)


class Outer(StrictModel):
    inner: Inner = Field(default_factory=Inner)
    name: str = "x"

    @model_validator(mode="after")
    def _check(self) -> Outer:
        if self.name == "bad":
            raise ValueError("name must not be 'bad'")
        return self


def test_a_nested_field_is_named_below_the_request_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validated(Outer, {"inner": {"steps": 0}}, field="spec.recipe")
    assert caught.value.field == "spec.recipe.inner.steps"
    assert caught.value.message.startswith("spec.recipe.inner.steps: ")


def test_a_model_level_check_reads_without_pydantic_prefix_and_can_be_another_error() -> None:
    with pytest.raises(InvalidArtifact) as caught:
        validated(Outer, {"name": "bad"}, source="dog.safetensors: header field", error=InvalidArtifact)
    assert caught.value.message == "dog.safetensors: header field: name must not be 'bad'"
    assert caught.value.field == ""


def test_a_yaml_file_names_itself_and_the_section(tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("serving:\n  inner: {steps: 0}\n  typo: 1\n")
    with pytest.raises(InvalidArgument) as caught:
        load_yaml(Outer, path, section="serving")
    assert caught.value.message.startswith(f"{path}: serving.")
    assert caught.value.field in ("serving.inner.steps", "serving.typo")


class Served(StrictModel):
    host: str = "127.0.0.1"
    port: int = 0
    spec_files: list[str] = Field(default_factory=list)


def test_a_flag_replaces_the_file_field_and_a_repeated_flag_adds_to_its_list(tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("host: 0.0.0.0\nport: 50051\nspec_files: [a.json]\n")
    flags = {"config": path, "port": 6000, "host": None, "spec_files": ["b.json"], "log_level": "INFO"}
    assert file_and_flag_fields(Served, path, flags) == {
        "host": "0.0.0.0",
        "port": 6000,
        "spec_files": ["a.json", "b.json"],
    }


def test_without_a_file_only_the_given_flags_are_fields() -> None:
    assert file_and_flag_fields(Served, None, {"host": None, "port": 7, "spec_files": []}) == {"port": 7}
