from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MultiConceptMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MULTI_CONCEPT_MODE_UNSPECIFIED: _ClassVar[MultiConceptMode]
    MERGE: _ClassVar[MultiConceptMode]
    NAIVE_SUM: _ClassVar[MultiConceptMode]
MULTI_CONCEPT_MODE_UNSPECIFIED: MultiConceptMode
MERGE: MultiConceptMode
NAIVE_SUM: MultiConceptMode

class GenerateRequest(_message.Message):
    __slots__ = ("prompt", "negative_prompt", "concepts", "multi_concept", "steps", "guidance_scale", "seed", "width", "height", "num_images", "scheduler", "request_id", "original_width", "original_height", "crop_top", "crop_left", "target_width", "target_height")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    CONCEPTS_FIELD_NUMBER: _ClassVar[int]
    MULTI_CONCEPT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    NUM_IMAGES_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_WIDTH_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CROP_TOP_FIELD_NUMBER: _ClassVar[int]
    CROP_LEFT_FIELD_NUMBER: _ClassVar[int]
    TARGET_WIDTH_FIELD_NUMBER: _ClassVar[int]
    TARGET_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    negative_prompt: str
    concepts: _containers.RepeatedScalarFieldContainer[str]
    multi_concept: MultiConceptMode
    steps: int
    guidance_scale: float
    seed: int
    width: int
    height: int
    num_images: int
    scheduler: str
    request_id: str
    original_width: int
    original_height: int
    crop_top: int
    crop_left: int
    target_width: int
    target_height: int
    def __init__(self, prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., concepts: _Optional[_Iterable[str]] = ..., multi_concept: _Optional[_Union[MultiConceptMode, str]] = ..., steps: _Optional[int] = ..., guidance_scale: _Optional[float] = ..., seed: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., num_images: _Optional[int] = ..., scheduler: _Optional[str] = ..., request_id: _Optional[str] = ..., original_width: _Optional[int] = ..., original_height: _Optional[int] = ..., crop_top: _Optional[int] = ..., crop_left: _Optional[int] = ..., target_width: _Optional[int] = ..., target_height: _Optional[int] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("png", "width", "height")
    PNG_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    png: bytes
    width: int
    height: int
    def __init__(self, png: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("queue_ms", "concept_load_ms", "merge_ms", "encode_ms", "denoise_ms", "decode_ms", "total_ms")
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    CONCEPT_LOAD_MS_FIELD_NUMBER: _ClassVar[int]
    MERGE_MS_FIELD_NUMBER: _ClassVar[int]
    ENCODE_MS_FIELD_NUMBER: _ClassVar[int]
    DENOISE_MS_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    queue_ms: float
    concept_load_ms: float
    merge_ms: float
    encode_ms: float
    denoise_ms: float
    decode_ms: float
    total_ms: float
    def __init__(self, queue_ms: _Optional[float] = ..., concept_load_ms: _Optional[float] = ..., merge_ms: _Optional[float] = ..., encode_ms: _Optional[float] = ..., denoise_ms: _Optional[float] = ..., decode_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("request_id", "images", "seed", "concepts", "timings", "batch_requests", "replica")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CONCEPTS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    BATCH_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    images: _containers.RepeatedCompositeFieldContainer[Image]
    seed: int
    concepts: _containers.RepeatedScalarFieldContainer[str]
    timings: Timings
    batch_requests: int
    replica: str
    def __init__(self, request_id: _Optional[str] = ..., images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., seed: _Optional[int] = ..., concepts: _Optional[_Iterable[str]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., batch_requests: _Optional[int] = ..., replica: _Optional[str] = ...) -> None: ...

class StepProgress(_message.Message):
    __slots__ = ("step", "total_steps", "elapsed_ms")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    elapsed_ms: float
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., elapsed_ms: _Optional[float] = ...) -> None: ...

class GenerateProgress(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: StepProgress
    result: GenerateResponse
    def __init__(self, progress: _Optional[_Union[StepProgress, _Mapping]] = ..., result: _Optional[_Union[GenerateResponse, _Mapping]] = ...) -> None: ...
