"""The `bad_input` marker: a test that sends a refused input names the call, the status the input
gets, and (optionally) how to word the case (a test checking several inputs carries one marker
each); `tools/bad_inputs.py` turns every marked test into a
row of docs/bad-inputs.md, so the table lists exactly what the suite checks.

    @pytest.mark.bad_input(service="Registry/{method}", code="INVALID_ARGUMENT")
    @pytest.mark.parametrize("method", ["Get", "Fetch"])
    @pytest.mark.parametrize("ref", REFS.values(), ids=list(REFS))
    def test_...(method, ref): ...

`service`, `code` and `case` are each a string (formatted with the test's parameters), a callable
of the parameters (with the test's id as `_id`), or (`code`) a `grpc.StatusCode`. Without `case`,
a parametrized test's case is its id less the parameters the service names; a plain test's is its
docstring's first line, else its name read as a sentence.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

MOST_CHARS = 40
"""A value longer than this is shown cut, with its length."""


@dataclass(frozen=True, order=True)
class BadInput:
    service: str
    case: str
    code: str
    test: str


def shown(value: Any) -> str:
    """A value as the table shows it: control characters escaped, long strings cut with their length."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={shown(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    if isinstance(value, (str, bytes)) and len(value) > MOST_CHARS:
        return f"{value[:12]!r}… ({len(value):,} {'characters' if isinstance(value, str) else 'bytes'})"
    return repr(value) if isinstance(value, (str, bytes)) else str(value)


def _resolve(spec: str | Callable[[dict[str, Any]], Any] | Any, params: dict[str, Any]) -> str:
    if callable(spec) and not isinstance(spec, str):
        spec = spec(params)
    if isinstance(spec, str):
        return spec.format(**params) if params else spec
    return getattr(spec, "name", str(spec))  # a grpc.StatusCode


def _default_case(item: pytest.Item, service_spec: Any) -> str:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        doc = (getattr(item.function, "__doc__", None) or "").strip().split("\n")[0]  # type: ignore[attr-defined]
        return doc or item.name.removeprefix("test_").replace("_", " ")
    case = callspec.id
    named = set(re.findall(r"{(\w+)}", service_spec)) if isinstance(service_spec, str) else set()
    for name in named:
        value = str(callspec.params[name])
        case = case.removesuffix(f"-{value}").removeprefix(f"{value}-")
    return case


def bad_inputs_of(item: pytest.Item) -> list[BadInput]:
    """The table rows of a collected test: one per `bad_input` marker (none when unmarked)."""
    callspec = getattr(item, "callspec", None)
    params = {**callspec.params, "_id": callspec.id} if callspec is not None else {}
    rows = []
    for marker in item.iter_markers("bad_input"):
        service_spec = marker.kwargs["service"]
        case_spec = marker.kwargs.get("case") or (marker.args[0] if marker.args else None)
        case = _resolve(case_spec, params) if case_spec is not None else _default_case(item, service_spec)
        code = _resolve(marker.kwargs["code"], params)
        rows.append(BadInput(_resolve(service_spec, params), case, code, item.nodeid.split("[")[0]))
    return rows
