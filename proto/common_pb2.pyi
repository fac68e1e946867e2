from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorDetail(_message.Message):
    __slots__ = ("reason", "field", "message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    field: str
    message: str
    def __init__(self, reason: _Optional[str] = ..., field: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ConceptInfo(_message.Message):
    __slots__ = ("concept_id", "version", "tenant", "public", "sha256", "size_bytes", "base_fingerprint", "modifier_tokens", "category_words", "delta_kind", "max_rank", "num_layers", "created_ms", "deleted", "header_json", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONCEPT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    BASE_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    MODIFIER_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_WORDS_FIELD_NUMBER: _ClassVar[int]
    DELTA_KIND_FIELD_NUMBER: _ClassVar[int]
    MAX_RANK_FIELD_NUMBER: _ClassVar[int]
    NUM_LAYERS_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    HEADER_JSON_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    concept_id: str
    version: int
    tenant: str
    public: bool
    sha256: str
    size_bytes: int
    base_fingerprint: str
    modifier_tokens: _containers.RepeatedScalarFieldContainer[str]
    category_words: _containers.RepeatedScalarFieldContainer[str]
    delta_kind: str
    max_rank: int
    num_layers: int
    created_ms: int
    deleted: bool
    header_json: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, concept_id: _Optional[str] = ..., version: _Optional[int] = ..., tenant: _Optional[str] = ..., public: _Optional[bool] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., base_fingerprint: _Optional[str] = ..., modifier_tokens: _Optional[_Iterable[str]] = ..., category_words: _Optional[_Iterable[str]] = ..., delta_kind: _Optional[str] = ..., max_rank: _Optional[int] = ..., num_layers: _Optional[int] = ..., created_ms: _Optional[int] = ..., deleted: _Optional[bool] = ..., header_json: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...
