from proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegularizationMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REGULARIZATION_MODE_UNSPECIFIED: _ClassVar[RegularizationMode]
    REAL: _ClassVar[RegularizationMode]
    GENERATED: _ClassVar[RegularizationMode]
    NONE: _ClassVar[RegularizationMode]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    PENDING: _ClassVar[JobState]
    RUNNING: _ClassVar[JobState]
    PUBLISHING: _ClassVar[JobState]
    SUCCEEDED: _ClassVar[JobState]
    FAILED: _ClassVar[JobState]
    CANCELLED: _ClassVar[JobState]
REGULARIZATION_MODE_UNSPECIFIED: RegularizationMode
REAL: RegularizationMode
GENERATED: RegularizationMode
NONE: RegularizationMode
JOB_STATE_UNSPECIFIED: JobState
PENDING: JobState
RUNNING: JobState
PUBLISHING: JobState
SUCCEEDED: JobState
FAILED: JobState
CANCELLED: JobState

class ConceptSpec(_message.Message):
    __slots__ = ("concept_id", "category", "modifier_token", "image_uris", "captions", "regularization", "regularization_uri", "alternative_captions")
    CONCEPT_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    MODIFIER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URIS_FIELD_NUMBER: _ClassVar[int]
    CAPTIONS_FIELD_NUMBER: _ClassVar[int]
    REGULARIZATION_FIELD_NUMBER: _ClassVar[int]
    REGULARIZATION_URI_FIELD_NUMBER: _ClassVar[int]
    ALTERNATIVE_CAPTIONS_FIELD_NUMBER: _ClassVar[int]
    concept_id: str
    category: str
    modifier_token: str
    image_uris: _containers.RepeatedScalarFieldContainer[str]
    captions: _containers.RepeatedScalarFieldContainer[str]
    regularization: RegularizationMode
    regularization_uri: str
    alternative_captions: _containers.RepeatedCompositeFieldContainer[AlternativeCaptions]
    def __init__(self, concept_id: _Optional[str] = ..., category: _Optional[str] = ..., modifier_token: _Optional[str] = ..., image_uris: _Optional[_Iterable[str]] = ..., captions: _Optional[_Iterable[str]] = ..., regularization: _Optional[_Union[RegularizationMode, str]] = ..., regularization_uri: _Optional[str] = ..., alternative_captions: _Optional[_Iterable[_Union[AlternativeCaptions, _Mapping]]] = ...) -> None: ...

class AlternativeCaptions(_message.Message):
    __slots__ = ("captions",)
    CAPTIONS_FIELD_NUMBER: _ClassVar[int]
    captions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, captions: _Optional[_Iterable[str]] = ...) -> None: ...

class Recipe(_message.Message):
    __slots__ = ("steps", "batch_size", "learning_rate", "scale_lr", "mode", "augment", "flip", "prior_loss_weight", "reg_similarity_threshold", "num_reg_images", "resolution", "num_workers", "use_gpu", "checkpoint_every", "seed", "mixed_precision", "compress_energy", "compress_rank", "token_learning_rate", "stand_in_probability", "sample_every")
    STEPS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    SCALE_LR_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    AUGMENT_FIELD_NUMBER: _ClassVar[int]
    FLIP_FIELD_NUMBER: _ClassVar[int]
    PRIOR_LOSS_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    REG_SIMILARITY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    NUM_REG_IMAGES_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    NUM_WORKERS_FIELD_NUMBER: _ClassVar[int]
    USE_GPU_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_EVERY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MIXED_PRECISION_FIELD_NUMBER: _ClassVar[int]
    COMPRESS_ENERGY_FIELD_NUMBER: _ClassVar[int]
    COMPRESS_RANK_FIELD_NUMBER: _ClassVar[int]
    TOKEN_LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    STAND_IN_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_EVERY_FIELD_NUMBER: _ClassVar[int]
    steps: int
    batch_size: int
    learning_rate: float
    scale_lr: bool
    mode: str
    augment: bool
    flip: bool
    prior_loss_weight: float
    reg_similarity_threshold: float
    num_reg_images: int
    resolution: int
    num_workers: int
    use_gpu: bool
    checkpoint_every: int
    seed: int
    mixed_precision: str
    compress_energy: float
    compress_rank: int
    token_learning_rate: float
    stand_in_probability: float
    sample_every: int
    def __init__(self, steps: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., scale_lr: _Optional[bool] = ..., mode: _Optional[str] = ..., augment: _Optional[bool] = ..., flip: _Optional[bool] = ..., prior_loss_weight: _Optional[float] = ..., reg_similarity_threshold: _Optional[float] = ..., num_reg_images: _Optional[int] = ..., resolution: _Optional[int] = ..., num_workers: _Optional[int] = ..., use_gpu: _Optional[bool] = ..., checkpoint_every: _Optional[int] = ..., seed: _Optional[int] = ..., mixed_precision: _Optional[str] = ..., compress_energy: _Optional[float] = ..., compress_rank: _Optional[int] = ..., token_learning_rate: _Optional[float] = ..., stand_in_probability: _Optional[float] = ..., sample_every: _Optional[int] = ...) -> None: ...

class TrainingSpec(_message.Message):
    __slots__ = ("concepts", "recipe", "public", "bundle_id")
    CONCEPTS_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    concepts: _containers.RepeatedCompositeFieldContainer[ConceptSpec]
    recipe: Recipe
    public: bool
    bundle_id: str
    def __init__(self, concepts: _Optional[_Iterable[_Union[ConceptSpec, _Mapping]]] = ..., recipe: _Optional[_Union[Recipe, _Mapping]] = ..., public: _Optional[bool] = ..., bundle_id: _Optional[str] = ...) -> None: ...

class ImageUpload(_message.Message):
    __slots__ = ("concept_index", "filename", "caption", "data", "alternative_captions")
    CONCEPT_INDEX_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ALTERNATIVE_CAPTIONS_FIELD_NUMBER: _ClassVar[int]
    concept_index: int
    filename: str
    caption: str
    data: bytes
    alternative_captions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, concept_index: _Optional[int] = ..., filename: _Optional[str] = ..., caption: _Optional[str] = ..., data: _Optional[bytes] = ..., alternative_captions: _Optional[_Iterable[str]] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("spec", "image")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    spec: TrainingSpec
    image: ImageUpload
    def __init__(self, spec: _Optional[_Union[TrainingSpec, _Mapping]] = ..., image: _Optional[_Union[ImageUpload, _Mapping]] = ...) -> None: ...

class TrainingJob(_message.Message):
    __slots__ = ("job_id", "tenant", "state", "step", "total_steps", "loss", "eta_s", "created_ms", "started_ms", "finished_ms", "published", "error", "ray_job_id", "spec", "message", "attempt", "resumed_from_step", "sample")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    ETA_S_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    STARTED_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_MS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RAY_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FROM_STEP_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    tenant: str
    state: JobState
    step: int
    total_steps: int
    loss: float
    eta_s: float
    created_ms: int
    started_ms: int
    finished_ms: int
    published: _containers.RepeatedScalarFieldContainer[str]
    error: _common_pb2.ErrorDetail
    ray_job_id: str
    spec: TrainingSpec
    message: str
    attempt: int
    resumed_from_step: int
    sample: TrainingSample
    def __init__(self, job_id: _Optional[str] = ..., tenant: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., loss: _Optional[float] = ..., eta_s: _Optional[float] = ..., created_ms: _Optional[int] = ..., started_ms: _Optional[int] = ..., finished_ms: _Optional[int] = ..., published: _Optional[_Iterable[str]] = ..., error: _Optional[_Union[_common_pb2.ErrorDetail, _Mapping]] = ..., ray_job_id: _Optional[str] = ..., spec: _Optional[_Union[TrainingSpec, _Mapping]] = ..., message: _Optional[str] = ..., attempt: _Optional[int] = ..., resumed_from_step: _Optional[int] = ..., sample: _Optional[_Union[TrainingSample, _Mapping]] = ...) -> None: ...

class TrainingSample(_message.Message):
    __slots__ = ("step", "prompt", "png")
    STEP_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    step: int
    prompt: str
    png: bytes
    def __init__(self, step: _Optional[int] = ..., prompt: _Optional[str] = ..., png: _Optional[bytes] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: JobState
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[TrainingJob]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[TrainingJob, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...
