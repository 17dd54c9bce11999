from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Optimizer(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPTIMIZER_UNSPECIFIED: _ClassVar[Optimizer]
    OPTIMIZER_LBFGS: _ClassVar[Optimizer]
    OPTIMIZER_ADAM: _ClassVar[Optimizer]

class Pooling(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POOLING_UNSPECIFIED: _ClassVar[Pooling]
    POOLING_AVG: _ClassVar[Pooling]
    POOLING_MAX: _ClassVar[Pooling]

class Init(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INIT_UNSPECIFIED: _ClassVar[Init]
    INIT_CONTENT: _ClassVar[Init]
    INIT_NOISE: _ClassVar[Init]
    INIT_STYLE: _ClassVar[Init]
    INIT_IMAGE: _ClassVar[Init]

class OutputFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_FORMAT_UNSPECIFIED: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_PNG: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_JPEG: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_WEBP: _ClassVar[OutputFormat]
OPTIMIZER_UNSPECIFIED: Optimizer
OPTIMIZER_LBFGS: Optimizer
OPTIMIZER_ADAM: Optimizer
POOLING_UNSPECIFIED: Pooling
POOLING_AVG: Pooling
POOLING_MAX: Pooling
INIT_UNSPECIFIED: Init
INIT_CONTENT: Init
INIT_NOISE: Init
INIT_STYLE: Init
INIT_IMAGE: Init
OUTPUT_FORMAT_UNSPECIFIED: OutputFormat
OUTPUT_FORMAT_PNG: OutputFormat
OUTPUT_FORMAT_JPEG: OutputFormat
OUTPUT_FORMAT_WEBP: OutputFormat

class Image(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class StyleImage(_message.Message):
    __slots__ = ("image", "blend_weight")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    BLEND_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    image: Image
    blend_weight: float
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., blend_weight: _Optional[float] = ...) -> None: ...

class LayerWeight(_message.Message):
    __slots__ = ("layer", "weight")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    layer: str
    weight: float
    def __init__(self, layer: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class StylizeRequest(_message.Message):
    __slots__ = ("content", "styles", "size", "iterations", "optimizer", "learning_rate", "content_weight", "style_weight", "tv_weight", "content_layers", "style_layers", "pooling", "init", "init_image", "seed", "style_scale", "preserve_colors", "multiscale", "multiscale_min_size", "progress_interval", "preview_max_side", "output_format", "quality", "request_id")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    STYLES_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    STYLE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TV_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_LAYERS_FIELD_NUMBER: _ClassVar[int]
    STYLE_LAYERS_FIELD_NUMBER: _ClassVar[int]
    POOLING_FIELD_NUMBER: _ClassVar[int]
    INIT_FIELD_NUMBER: _ClassVar[int]
    INIT_IMAGE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STYLE_SCALE_FIELD_NUMBER: _ClassVar[int]
    PRESERVE_COLORS_FIELD_NUMBER: _ClassVar[int]
    MULTISCALE_FIELD_NUMBER: _ClassVar[int]
    MULTISCALE_MIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    content: Image
    styles: _containers.RepeatedCompositeFieldContainer[StyleImage]
    size: int
    iterations: int
    optimizer: Optimizer
    learning_rate: float
    content_weight: float
    style_weight: float
    tv_weight: float
    content_layers: _containers.RepeatedCompositeFieldContainer[LayerWeight]
    style_layers: _containers.RepeatedCompositeFieldContainer[LayerWeight]
    pooling: Pooling
    init: Init
    init_image: Image
    seed: int
    style_scale: float
    preserve_colors: bool
    multiscale: bool
    multiscale_min_size: int
    progress_interval: int
    preview_max_side: int
    output_format: OutputFormat
    quality: int
    request_id: str
    def __init__(self, content: _Optional[_Union[Image, _Mapping]] = ..., styles: _Optional[_Iterable[_Union[StyleImage, _Mapping]]] = ..., size: _Optional[int] = ..., iterations: _Optional[int] = ..., optimizer: _Optional[_Union[Optimizer, str]] = ..., learning_rate: _Optional[float] = ..., content_weight: _Optional[float] = ..., style_weight: _Optional[float] = ..., tv_weight: _Optional[float] = ..., content_layers: _Optional[_Iterable[_Union[LayerWeight, _Mapping]]] = ..., style_layers: _Optional[_Iterable[_Union[LayerWeight, _Mapping]]] = ..., pooling: _Optional[_Union[Pooling, str]] = ..., init: _Optional[_Union[Init, str]] = ..., init_image: _Optional[_Union[Image, _Mapping]] = ..., seed: _Optional[int] = ..., style_scale: _Optional[float] = ..., preserve_colors: _Optional[bool] = ..., multiscale: _Optional[bool] = ..., multiscale_min_size: _Optional[int] = ..., progress_interval: _Optional[int] = ..., preview_max_side: _Optional[int] = ..., output_format: _Optional[_Union[OutputFormat, str]] = ..., quality: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class StylizeResponse(_message.Message):
    __slots__ = ("queued", "started", "progress", "result")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    queued: Queued
    started: Started
    progress: Progress
    result: Result
    def __init__(self, queued: _Optional[_Union[Queued, _Mapping]] = ..., started: _Optional[_Union[Started, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., result: _Optional[_Union[Result, _Mapping]] = ...) -> None: ...

class Queued(_message.Message):
    __slots__ = ("position", "queue_depth")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    position: int
    queue_depth: int
    def __init__(self, position: _Optional[int] = ..., queue_depth: _Optional[int] = ...) -> None: ...

class Started(_message.Message):
    __slots__ = ("request_id", "width", "height", "options", "queue_wait_seconds")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    width: int
    height: int
    options: ResolvedOptions
    queue_wait_seconds: float
    def __init__(self, request_id: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., options: _Optional[_Union[ResolvedOptions, _Mapping]] = ..., queue_wait_seconds: _Optional[float] = ...) -> None: ...

class ResolvedOptions(_message.Message):
    __slots__ = ("size", "iterations", "optimizer", "learning_rate", "content_weight", "style_weight", "tv_weight", "content_layers", "style_layers", "pooling", "init", "seed", "style_scale", "preserve_colors", "multiscale", "scale_sizes", "scale_iterations", "style_blend_weights", "output_format", "quality", "progress_interval", "preview_max_side")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    STYLE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TV_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_LAYERS_FIELD_NUMBER: _ClassVar[int]
    STYLE_LAYERS_FIELD_NUMBER: _ClassVar[int]
    POOLING_FIELD_NUMBER: _ClassVar[int]
    INIT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STYLE_SCALE_FIELD_NUMBER: _ClassVar[int]
    PRESERVE_COLORS_FIELD_NUMBER: _ClassVar[int]
    MULTISCALE_FIELD_NUMBER: _ClassVar[int]
    SCALE_SIZES_FIELD_NUMBER: _ClassVar[int]
    SCALE_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    STYLE_BLEND_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    size: int
    iterations: int
    optimizer: Optimizer
    learning_rate: float
    content_weight: float
    style_weight: float
    tv_weight: float
    content_layers: _containers.RepeatedCompositeFieldContainer[LayerWeight]
    style_layers: _containers.RepeatedCompositeFieldContainer[LayerWeight]
    pooling: Pooling
    init: Init
    seed: int
    style_scale: float
    preserve_colors: bool
    multiscale: bool
    scale_sizes: _containers.RepeatedScalarFieldContainer[int]
    scale_iterations: _containers.RepeatedScalarFieldContainer[int]
    style_blend_weights: _containers.RepeatedScalarFieldContainer[float]
    output_format: OutputFormat
    quality: int
    progress_interval: int
    preview_max_side: int
    def __init__(self, size: _Optional[int] = ..., iterations: _Optional[int] = ..., optimizer: _Optional[_Union[Optimizer, str]] = ..., learning_rate: _Optional[float] = ..., content_weight: _Optional[float] = ..., style_weight: _Optional[float] = ..., tv_weight: _Optional[float] = ..., content_layers: _Optional[_Iterable[_Union[LayerWeight, _Mapping]]] = ..., style_layers: _Optional[_Iterable[_Union[LayerWeight, _Mapping]]] = ..., pooling: _Optional[_Union[Pooling, str]] = ..., init: _Optional[_Union[Init, str]] = ..., seed: _Optional[int] = ..., style_scale: _Optional[float] = ..., preserve_colors: _Optional[bool] = ..., multiscale: _Optional[bool] = ..., scale_sizes: _Optional[_Iterable[int]] = ..., scale_iterations: _Optional[_Iterable[int]] = ..., style_blend_weights: _Optional[_Iterable[float]] = ..., output_format: _Optional[_Union[OutputFormat, str]] = ..., quality: _Optional[int] = ..., progress_interval: _Optional[int] = ..., preview_max_side: _Optional[int] = ...) -> None: ...

class Losses(_message.Message):
    __slots__ = ("content", "style", "tv", "total")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    STYLE_FIELD_NUMBER: _ClassVar[int]
    TV_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    content: float
    style: float
    tv: float
    total: float
    def __init__(self, content: _Optional[float] = ..., style: _Optional[float] = ..., tv: _Optional[float] = ..., total: _Optional[float] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("iteration", "total_iterations", "losses", "elapsed_seconds", "eta_seconds", "scale_index", "preview", "preview_width", "preview_height")
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SCALE_INDEX_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_WIDTH_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    iteration: int
    total_iterations: int
    losses: Losses
    elapsed_seconds: float
    eta_seconds: float
    scale_index: int
    preview: Image
    preview_width: int
    preview_height: int
    def __init__(self, iteration: _Optional[int] = ..., total_iterations: _Optional[int] = ..., losses: _Optional[_Union[Losses, _Mapping]] = ..., elapsed_seconds: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., scale_index: _Optional[int] = ..., preview: _Optional[_Union[Image, _Mapping]] = ..., preview_width: _Optional[int] = ..., preview_height: _Optional[int] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("image", "mime_type", "width", "height", "losses", "iterations", "queue_wait_seconds", "compute_seconds", "request_id")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    image: Image
    mime_type: str
    width: int
    height: int
    losses: Losses
    iterations: int
    queue_wait_seconds: float
    compute_seconds: float
    request_id: str
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., mime_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., losses: _Optional[_Union[Losses, _Mapping]] = ..., iterations: _Optional[int] = ..., queue_wait_seconds: _Optional[float] = ..., compute_seconds: _Optional[float] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("version", "model", "device", "limits", "queue", "defaults")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    version: str
    model: ModelInfo
    device: DeviceInfo
    limits: Limits
    queue: QueueInfo
    defaults: ResolvedOptions
    def __init__(self, version: _Optional[str] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ..., device: _Optional[_Union[DeviceInfo, _Mapping]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., queue: _Optional[_Union[QueueInfo, _Mapping]] = ..., defaults: _Optional[_Union[ResolvedOptions, _Mapping]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "weights_source", "random_weights", "default_pooling", "load_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SOURCE_FIELD_NUMBER: _ClassVar[int]
    RANDOM_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_POOLING_FIELD_NUMBER: _ClassVar[int]
    LOAD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    weights_source: str
    random_weights: bool
    default_pooling: Pooling
    load_seconds: float
    def __init__(self, name: _Optional[str] = ..., weights_source: _Optional[str] = ..., random_weights: _Optional[bool] = ..., default_pooling: _Optional[_Union[Pooling, str]] = ..., load_seconds: _Optional[float] = ...) -> None: ...

class DeviceInfo(_message.Message):
    __slots__ = ("kind", "name", "memory_bytes")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    memory_bytes: int
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., memory_bytes: _Optional[int] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_pixels", "max_side", "max_iterations", "max_styles", "max_message_bytes", "max_input_pixels")
    MAX_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    MAX_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_STYLES_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_PIXELS_FIELD_NUMBER: _ClassVar[int]
    max_pixels: int
    max_side: int
    max_iterations: int
    max_styles: int
    max_message_bytes: int
    max_input_pixels: int
    def __init__(self, max_pixels: _Optional[int] = ..., max_side: _Optional[int] = ..., max_iterations: _Optional[int] = ..., max_styles: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_input_pixels: _Optional[int] = ...) -> None: ...

class QueueInfo(_message.Message):
    __slots__ = ("max_concurrent_jobs", "capacity", "depth", "running")
    MAX_CONCURRENT_JOBS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    max_concurrent_jobs: int
    capacity: int
    depth: int
    running: int
    def __init__(self, max_concurrent_jobs: _Optional[int] = ..., capacity: _Optional[int] = ..., depth: _Optional[int] = ..., running: _Optional[int] = ...) -> None: ...
