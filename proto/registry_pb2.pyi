from proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PublishHeader(_message.Message):
    __slots__ = ("concept_id", "total_bytes", "sha256", "public", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONCEPT_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    concept_id: str
    total_bytes: int
    sha256: str
    public: bool
    labels: _containers.ScalarMap[str, str]
    def __init__(self, concept_id: _Optional[str] = ..., total_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., public: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: PublishHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[PublishHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("concept", "deduplicated")
    CONCEPT_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    concept: _common_pb2.ConceptInfo
    deduplicated: bool
    def __init__(self, concept: _Optional[_Union[_common_pb2.ConceptInfo, _Mapping]] = ..., deduplicated: _Optional[bool] = ...) -> None: ...

class GetConceptRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class FetchRequest(_message.Message):
    __slots__ = ("ref", "offset", "chunk_bytes")
    REF_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    ref: str
    offset: int
    chunk_bytes: int
    def __init__(self, ref: _Optional[str] = ..., offset: _Optional[int] = ..., chunk_bytes: _Optional[int] = ...) -> None: ...

class FetchChunk(_message.Message):
    __slots__ = ("concept", "offset", "data")
    CONCEPT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    concept: _common_pb2.ConceptInfo
    offset: int
    data: bytes
    def __init__(self, concept: _Optional[_Union[_common_pb2.ConceptInfo, _Mapping]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class ListConceptsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "tenant", "base_fingerprint", "category", "id_prefix", "all_versions", "include_deleted")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    BASE_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    ID_PREFIX_FIELD_NUMBER: _ClassVar[int]
    ALL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    tenant: str
    base_fingerprint: str
    category: str
    id_prefix: str
    all_versions: bool
    include_deleted: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., tenant: _Optional[str] = ..., base_fingerprint: _Optional[str] = ..., category: _Optional[str] = ..., id_prefix: _Optional[str] = ..., all_versions: _Optional[bool] = ..., include_deleted: _Optional[bool] = ...) -> None: ...

class ListConceptsResponse(_message.Message):
    __slots__ = ("concepts", "next_page_token")
    CONCEPTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    concepts: _containers.RepeatedCompositeFieldContainer[_common_pb2.ConceptInfo]
    next_page_token: str
    def __init__(self, concepts: _Optional[_Iterable[_Union[_common_pb2.ConceptInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteConceptRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class DeleteConceptResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedCompositeFieldContainer[_common_pb2.ConceptInfo]
    def __init__(self, deleted: _Optional[_Iterable[_Union[_common_pb2.ConceptInfo, _Mapping]]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("after_sequence", "heartbeat_s")
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_S_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    heartbeat_s: int
    def __init__(self, after_sequence: _Optional[int] = ..., heartbeat_s: _Optional[int] = ...) -> None: ...

class ConceptEvent(_message.Message):
    __slots__ = ("sequence", "kind", "concept", "time_ms")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[ConceptEvent.Kind]
        PUBLISHED: _ClassVar[ConceptEvent.Kind]
        DELETED: _ClassVar[ConceptEvent.Kind]
        HEARTBEAT: _ClassVar[ConceptEvent.Kind]
    KIND_UNSPECIFIED: ConceptEvent.Kind
    PUBLISHED: ConceptEvent.Kind
    DELETED: ConceptEvent.Kind
    HEARTBEAT: ConceptEvent.Kind
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONCEPT_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    kind: ConceptEvent.Kind
    concept: _common_pb2.ConceptInfo
    time_ms: int
    def __init__(self, sequence: _Optional[int] = ..., kind: _Optional[_Union[ConceptEvent.Kind, str]] = ..., concept: _Optional[_Union[_common_pb2.ConceptInfo, _Mapping]] = ..., time_ms: _Optional[int] = ...) -> None: ...
