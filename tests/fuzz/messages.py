"""Hypothesis strategies for any protobuf message, derived from its descriptor.

Every field may be left unset or given a value a careless or hostile client could send: strings
that are empty, huge, non-ASCII or full of control characters; integers at and beyond the edges of
their wire type's range; NaN, infinities and subnormals in floats; enum numbers the proto does not
name; repeated fields empty or long; nested messages; at most one member of each oneof. `hints`
adds values by field name (a concept id the server knows, a valid artifact's bytes) so that some
examples get past the first check and reach the code behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

HUGE_CHARS = 100_000
"""Longer than any limit of the services, short enough to keep an example fast."""

F = FieldDescriptor
INT_RANGES = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}

CONTROL = "".join(map(chr, range(32))) + "\x7f\u0085\u2028\u2029\ufeff"
TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=CONTROL, min_size=1, max_size=8),
    st.text(alphabet=st.characters(codec="utf-8", categories=["Nd", "No", "Lo", "So", "Zs", "Mn"]), max_size=12),
    st.builds(
        lambda c, n: c * n, st.sampled_from(["a", "é", " ", "@", "\n", "😀", "A-"]), st.integers(1000, HUGE_CHARS)
    ),
)
BYTES = st.one_of(st.binary(max_size=64), st.builds(bytes, st.integers(1000, HUGE_CHARS)))


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = sorted({low, high, 0, 1, min(high, 2**31 - 1), min(high, 2**31), min(high, 2**53 + 1), max(low, -1)})
    return st.one_of(st.sampled_from([e for e in edges if low <= e <= high]), st.integers(low, high))


def scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type in INT_RANGES:
        return integers(*INT_RANGES[field.type])
    if field.type == F.TYPE_FLOAT:
        return st.floats(width=32)  # NaN, ±inf and subnormals included
    if field.type == F.TYPE_DOUBLE:
        return st.floats()
    if field.type == F.TYPE_BOOL:
        return st.booleans()
    if field.type == F.TYPE_STRING:
        return TEXT
    if field.type == F.TYPE_BYTES:
        return BYTES
    if field.type == F.TYPE_ENUM:  # proto3 enums are open: any int32 travels
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), integers(-(2**31), 2**31 - 1))
    raise TypeError(f"no strategy for field {field.full_name} of type {field.type}")


def value(field: FieldDescriptor, hints: Mapping[str, st.SearchStrategy[Any]], depth: int) -> st.SearchStrategy[Any]:
    if field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        key, entry = (value(f, hints, depth + 1) for f in field.message_type.fields)
        return st.one_of(
            st.dictionaries(key, entry, max_size=3),
            st.dictionaries(st.text(max_size=8), entry, min_size=100, max_size=300),
        )
    if field.type == F.TYPE_MESSAGE:
        one = message_fields(field.message_type, hints, depth + 1)
    else:
        one = scalar(field)
    if field.name in hints:
        one = st.one_of(hints[field.name], one)
    if not field.is_repeated:
        return one
    few = st.lists(one, max_size=3)
    if field.type == F.TYPE_MESSAGE or depth > 1:  # long lists of scalars only: nested ones multiply
        return few
    short = st.text(max_size=20) if field.type == F.TYPE_STRING else one  # a huge value 300 times is one huge message
    return st.one_of(few, st.builds(lambda v, n: [v] * n, short, st.integers(50, 300)))  # cheap: one value, repeated


def _is_real_oneof(field: FieldDescriptor) -> bool:
    """A oneof of the proto's own, not the synthetic one proto3 `optional` makes for presence."""
    oneof = field.containing_oneof
    return oneof is not None and (len(oneof.fields) > 1 or oneof.name != f"_{field.name}")


def _keyed(name: str) -> Callable[[Any], dict[str, Any]]:
    """A value into the keyword arguments that set field `name` to it."""
    return lambda v: {name: v}


def message_fields(
    descriptor: Descriptor, hints: Mapping[str, st.SearchStrategy[Any]] | None = None, depth: int = 0
) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments for `descriptor`'s message class: each field unset or set, one member per oneof."""
    hints = hints or {}
    if depth > 3:
        return st.just({})
    plain = {f.name: value(f, hints, depth) for f in descriptor.fields if not _is_real_oneof(f)}
    choices = [
        st.one_of(st.just({}), *[value(f, hints, depth).map(_keyed(f.name)) for f in oneof.fields])
        for oneof in descriptor.oneofs
        if _is_real_oneof(oneof.fields[0])
    ]
    base = st.fixed_dictionaries({}, optional=plain)
    return st.tuples(base, *choices).map(lambda parts: {k: v for part in parts for k, v in part.items()})


def messages(
    cls: type[Message], hints: Mapping[str, st.SearchStrategy[Any]] | None = None
) -> st.SearchStrategy[Message]:
    """Any message of `cls` (nested messages built from their own field dictionaries by the constructor)."""
    return message_fields(cls.DESCRIPTOR, hints).map(lambda fields: cls(**fields))


def one_field_changed(
    base: Message, hints: Mapping[str, st.SearchStrategy[Any]] | None = None
) -> st.SearchStrategy[Message]:
    """`base` (a request that passes every check) with one field set to any value: reaches the code
    behind validation far more often than a message with every field drawn."""
    hints = hints or {}

    def changed(field: FieldDescriptor) -> st.SearchStrategy[Message]:
        def apply(new: Any) -> Message:
            message = type(base)()
            message.CopyFrom(base)
            message.ClearField(field.name)
            message.MergeFrom(type(base)(**{field.name: new}))
            return message

        return value(field, hints, 0).map(apply)

    return st.sampled_from(list(base.DESCRIPTOR.fields)).flatmap(changed)
