"""Configuration: pydantic models that reject unknown keys; units live in field names."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.errors import CdserveError, InvalidArgument

T = TypeVar("T", bound="StrictModel")
M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def validated(
    model: type[M], raw: Any, *, field: str = "", source: str = "", error: type[CdserveError] = InvalidArgument
) -> M:
    """`model.model_validate(raw)`, with a validation failure raised as a typed error
    (`validation_error`): the one place where pydantic's errors become cdserve's."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise validation_error(e, field=field, source=source, error=error) from e


def validation_error(
    e: ValidationError, *, field: str = "", source: str = "", error: type[CdserveError] = InvalidArgument
) -> CdserveError:
    """pydantic's first complaint as `error`: its `field` is the complaint's dotted location below
    `field` (the request field or config section the data came from), its message starts with
    `source` (a file, an artifact) when given, then that location and what is wrong."""
    first = e.errors()[0]
    where = ".".join(str(part) for part in (*([field] if field else []), *first["loc"]))
    problem = str(first["msg"]).removeprefix("Value error, ")
    context = ": ".join(part for part in (source, where) if part)
    return error(f"{context}: {problem}" if context else problem, field=where)


def load_yaml(model: type[T], path: str | Path, *, section: str | None = None) -> T:
    """Parse a YAML file (or one top-level section of it) into `model`, naming the bad key on error."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if section is not None:
        raw = raw.get(section, {}) or {}
    return validated(model, raw, field=section or "", source=str(path))


def file_and_flag_fields(model: type[T], config_file: Path | None, flags: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `model` that the YAML `config_file` sets (none without a file), each replaced
    by the command-line flag of the same name when given, so that a flag states only what differs
    from the file; a repeatable flag (a list) adds to the file's list. `flags` holds every parsed
    argument (`vars(args)`): those that are no field of `model`, or were not given (None or an empty
    list), are passed over. Returned unvalidated, for the command to check what it requires first."""
    fields = load_yaml(model, config_file).model_dump(exclude_unset=True) if config_file else {}
    for name, value in flags.items():
        if name not in model.model_fields or value is None or value == []:
            continue
        fields[name] = [*fields.get(name, []), *value] if isinstance(value, list) else value
    return fields
