"""Configuration: pydantic models that reject unknown keys; units live in field names."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.errors import InvalidArgument

T = TypeVar("T", bound="StrictModel")


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def load_yaml(model: type[T], path: str | Path, *, section: str | None = None) -> T:
    """Parse a YAML file (or one top-level section of it) into `model`, naming the bad key on error."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if section is not None:
        raw = raw.get(section, {}) or {}
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        prefix = f"{section}." if section else ""
        raise InvalidArgument(f"{path}: {prefix}{where}: {first['msg']}", field=f"{prefix}{where}") from e
