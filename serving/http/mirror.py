"""JSON models whose fields are a proto message's, so the HTTP face cannot drift from the gRPC one.

`@mirrors(Message)` gives a `Mirror` model one field per field of the message, typed from its proto
type: integers, floats, booleans and strings as themselves, an enum as the names of its values,
bytes as base64 text under `<name>_base64`, a map as an object, a repeated field as a list. A
nested message the model declares itself (as the model that mirrors it, or in another JSON form):
a declared field takes the proto field's place, one the message lacks comes after the message's.
An undeclared message field fails at import, so a new proto field either shows in the API with
its type or stops the server from starting.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal, Self, TypeVar, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from pydantic import BaseModel, Field, create_model

SCALARS: dict[int, type] = {
    FieldDescriptor.CPPTYPE_INT32: int,
    FieldDescriptor.CPPTYPE_INT64: int,
    FieldDescriptor.CPPTYPE_UINT32: int,
    FieldDescriptor.CPPTYPE_UINT64: int,
    FieldDescriptor.CPPTYPE_FLOAT: float,
    FieldDescriptor.CPPTYPE_DOUBLE: float,
    FieldDescriptor.CPPTYPE_BOOL: bool,
}


class Mirror(BaseModel):
    """The JSON form of a proto message (see `mirrors`)."""

    @classmethod
    def of(cls, message: Message) -> Self:
        return cls(**json_values(message))


M = TypeVar("M", bound=Mirror)


def mirrors(
    message: type[Message], *, omit: Collection[str] = (), descriptions: Mapping[str, str] | None = None
) -> Callable[[type[M]], type[M]]:
    """Class decorator: the model with `message`'s fields (less `omit`) before its own.

    `descriptions` documents proto fields the model does not declare (they show in /openapi.json).
    """
    described = dict(descriptions or {})

    def with_message_fields(model: type[M]) -> type[M]:
        descriptor = message.DESCRIPTOR
        fields: dict[str, Any] = {}
        for field in descriptor.fields:
            name = _json_name(field)
            if field.name in omit:
                continue
            # a field the model declares keeps its place here, with the model's type
            json_type = Any if name in model.model_fields else _json_type(descriptor, field)
            fields[name] = (json_type, Field(description=described.get(name)))
        if unknown := (set(omit) | set(described)) - {field.name for field in descriptor.fields} - set(fields):
            raise TypeError(f"{descriptor.name} has no fields {sorted(unknown)}")
        message_fields = create_model(f"{descriptor.name}Fields", __base__=Mirror, **fields)
        mirror = create_model(
            model.__name__, __base__=(model, message_fields), __module__=model.__module__, __doc__=model.__doc__
        )
        return cast(type[M], mirror)  # a subclass of `model`

    return with_message_fields


def json_values(message: Message) -> dict[str, Any]:
    """Every field of `message` as its `Mirror` takes it; an unset nested message is None."""
    values: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if _is_map(field):
            values[field.name] = dict(value)
        elif field.is_repeated:
            values[field.name] = [_json_value(field, item) for item in value]
        elif field.message_type is not None and not message.HasField(field.name):
            values[field.name] = None
        else:
            values[_json_name(field)] = _json_value(field, value)
    return values


def _json_name(field: FieldDescriptor) -> str:
    return f"{field.name}_base64" if field.type == FieldDescriptor.TYPE_BYTES else field.name


def _json_value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    if field.enum_type is not None:
        return field.enum_type.values_by_number[value].name
    if field.message_type is not None:
        return json_values(value)
    return value


def _json_type(descriptor: Descriptor, field: FieldDescriptor) -> Any:
    if _is_map(field):
        key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        return dict[_scalar_type(descriptor, key), _scalar_type(descriptor, value)]  # type: ignore[misc]
    single = _scalar_type(descriptor, field)
    return list[single] if field.is_repeated else single  # type: ignore[valid-type]


def _scalar_type(descriptor: Descriptor, field: FieldDescriptor) -> Any:
    if field.cpp_type in SCALARS:
        return SCALARS[field.cpp_type]
    if field.enum_type is not None:
        return Literal[tuple(value.name for value in field.enum_type.values)]
    if field.cpp_type == FieldDescriptor.CPPTYPE_STRING:
        return str  # text, or bytes in base64
    raise TypeError(f"{descriptor.name}.{field.name} is a message: declare its JSON form on the model")


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry
