from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    ERROR_REASON_INVALID_OPTION: _ClassVar[ErrorReason]
    ERROR_REASON_DECODE_FAILED: _ClassVar[ErrorReason]
    ERROR_REASON_TOO_LARGE: _ClassVar[ErrorReason]
    ERROR_REASON_QUEUE_FULL: _ClassVar[ErrorReason]
    ERROR_REASON_CLIENT_QUOTA: _ClassVar[ErrorReason]
    ERROR_REASON_CALL_LIMIT: _ClassVar[ErrorReason]
    ERROR_REASON_LOADING: _ClassVar[ErrorReason]
    ERROR_REASON_DRAINING: _ClassVar[ErrorReason]
    ERROR_REASON_UNAUTHENTICATED: _ClassVar[ErrorReason]
    ERROR_REASON_RECEIVE_TIMEOUT: _ClassVar[ErrorReason]
    ERROR_REASON_DEADLINE: _ClassVar[ErrorReason]
    ERROR_REASON_CANCELLED: _ClassVar[ErrorReason]
    ERROR_REASON_NUMERICAL: _ClassVar[ErrorReason]
    ERROR_REASON_INTERNAL: _ClassVar[ErrorReason]
    ERROR_REASON_REQUEST_ID_IN_USE: _ClassVar[ErrorReason]
    ERROR_REASON_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_OVER_TIME_LIMIT: _ClassVar[ErrorReason]
    ERROR_REASON_MALFORMED_REQUEST: _ClassVar[ErrorReason]
    ERROR_REASON_CLIENT_CALL_LIMIT: _ClassVar[ErrorReason]
    ERROR_REASON_JOB_STREAM_LIMIT: _ClassVar[ErrorReason]
    ERROR_REASON_VIDEO_FRAME_SIZE: _ClassVar[ErrorReason]
    ERROR_REASON_VIDEO_FRAME_ORDER: _ClassVar[ErrorReason]
    ERROR_REASON_VIDEO_TOO_LONG: _ClassVar[ErrorReason]
    ERROR_REASON_VIDEO_RESUME: _ClassVar[ErrorReason]

class StopReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STOP_REASON_NONE: _ClassVar[StopReason]
    STOP_REASON_CLIENT: _ClassVar[StopReason]
    STOP_REASON_DEADLINE: _ClassVar[StopReason]
    STOP_REASON_TIME_LIMIT: _ClassVar[StopReason]
    STOP_REASON_SHUTDOWN: _ClassVar[StopReason]

class OptionScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPTION_SCOPE_UNSPECIFIED: _ClassVar[OptionScope]
    OPTION_SCOPE_ENGINE: _ClassVar[OptionScope]
    OPTION_SCOPE_DELIVERY: _ClassVar[OptionScope]
    OPTION_SCOPE_INPUT: _ClassVar[OptionScope]

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

class ColorControl(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLOR_CONTROL_UNSPECIFIED: _ClassVar[ColorControl]
    COLOR_CONTROL_NONE: _ClassVar[ColorControl]
    COLOR_CONTROL_LUMINANCE: _ClassVar[ColorControl]
    COLOR_CONTROL_HISTOGRAM: _ClassVar[ColorControl]

class UnmaskedRegion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNMASKED_REGION_UNSPECIFIED: _ClassVar[UnmaskedRegion]
    UNMASKED_REGION_STYLES: _ClassVar[UnmaskedRegion]
    UNMASKED_REGION_CONTENT: _ClassVar[UnmaskedRegion]

class StyleLoss(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STYLE_LOSS_UNSPECIFIED: _ClassVar[StyleLoss]
    STYLE_LOSS_GRAM: _ClassVar[StyleLoss]
    STYLE_LOSS_MEAN_COV: _ClassVar[StyleLoss]

class IterateAverage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ITERATE_AVERAGE_UNSPECIFIED: _ClassVar[IterateAverage]
    ITERATE_AVERAGE_NONE: _ClassVar[IterateAverage]
    ITERATE_AVERAGE_EMA: _ClassVar[IterateAverage]
ERROR_REASON_UNSPECIFIED: ErrorReason
ERROR_REASON_INVALID_OPTION: ErrorReason
ERROR_REASON_DECODE_FAILED: ErrorReason
ERROR_REASON_TOO_LARGE: ErrorReason
ERROR_REASON_QUEUE_FULL: ErrorReason
ERROR_REASON_CLIENT_QUOTA: ErrorReason
ERROR_REASON_CALL_LIMIT: ErrorReason
ERROR_REASON_LOADING: ErrorReason
ERROR_REASON_DRAINING: ErrorReason
ERROR_REASON_UNAUTHENTICATED: ErrorReason
ERROR_REASON_RECEIVE_TIMEOUT: ErrorReason
ERROR_REASON_DEADLINE: ErrorReason
ERROR_REASON_CANCELLED: ErrorReason
ERROR_REASON_NUMERICAL: ErrorReason
ERROR_REASON_INTERNAL: ErrorReason
ERROR_REASON_REQUEST_ID_IN_USE: ErrorReason
ERROR_REASON_NOT_FOUND: ErrorReason
ERROR_REASON_OVER_TIME_LIMIT: ErrorReason
ERROR_REASON_MALFORMED_REQUEST: ErrorReason
ERROR_REASON_CLIENT_CALL_LIMIT: ErrorReason
ERROR_REASON_JOB_STREAM_LIMIT: ErrorReason
ERROR_REASON_VIDEO_FRAME_SIZE: ErrorReason
ERROR_REASON_VIDEO_FRAME_ORDER: ErrorReason
ERROR_REASON_VIDEO_TOO_LONG: ErrorReason
ERROR_REASON_VIDEO_RESUME: ErrorReason
STOP_REASON_NONE: StopReason
STOP_REASON_CLIENT: StopReason
STOP_REASON_DEADLINE: StopReason
STOP_REASON_TIME_LIMIT: StopReason
STOP_REASON_SHUTDOWN: StopReason
OPTION_SCOPE_UNSPECIFIED: OptionScope
OPTION_SCOPE_ENGINE: OptionScope
OPTION_SCOPE_DELIVERY: OptionScope
OPTION_SCOPE_INPUT: OptionScope
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
COLOR_CONTROL_UNSPECIFIED: ColorControl
COLOR_CONTROL_NONE: ColorControl
COLOR_CONTROL_LUMINANCE: ColorControl
COLOR_CONTROL_HISTOGRAM: ColorControl
UNMASKED_REGION_UNSPECIFIED: UnmaskedRegion
UNMASKED_REGION_STYLES: UnmaskedRegion
UNMASKED_REGION_CONTENT: UnmaskedRegion
STYLE_LOSS_UNSPECIFIED: StyleLoss
STYLE_LOSS_GRAM: StyleLoss
STYLE_LOSS_MEAN_COV: StyleLoss
ITERATE_AVERAGE_UNSPECIFIED: IterateAverage
ITERATE_AVERAGE_NONE: IterateAverage
ITERATE_AVERAGE_EMA: IterateAverage
OPTION_FIELD_NUMBER: _ClassVar[int]
option: _descriptor.FieldDescriptor

class OptionSpec(_message.Message):
    __slots__ = ("help", "scope", "metavar")
    HELP_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    METAVAR_FIELD_NUMBER: _ClassVar[int]
    help: str
    scope: OptionScope
    metavar: str
    def __init__(self, help: _Optional[str] = ..., scope: _Optional[_Union[OptionScope, str]] = ..., metavar: _Optional[str] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class StyleImage(_message.Message):
    __slots__ = ("image", "blend_weight", "mask")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    BLEND_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    image: Image
    blend_weight: float
    mask: Image
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., blend_weight: _Optional[float] = ..., mask: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class LayerWeight(_message.Message):
    __slots__ = ("layer", "weight")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    layer: str
    weight: float
    def __init__(self, layer: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class StylizeRequest(_message.Message):
    __slots__ = ("content", "styles", "size", "iterations", "optimizer", "learning_rate", "content_weight", "style_weight", "tv_weight", "content_layers", "style_layers", "pooling", "init", "init_image", "seed", "style_scale", "preserve_colors", "multiscale", "multiscale_min_size", "progress_interval", "preview_max_side", "output_format", "quality", "request_id", "color_control", "unmasked_region", "background", "output_bit_depth", "accept_partial", "style_loss", "iterate_average", "ema_decay", "scale_ratio", "first_scale_share")
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
    COLOR_CONTROL_FIELD_NUMBER: _ClassVar[int]
    UNMASKED_REGION_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BIT_DEPTH_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_PARTIAL_FIELD_NUMBER: _ClassVar[int]
    STYLE_LOSS_FIELD_NUMBER: _ClassVar[int]
    ITERATE_AVERAGE_FIELD_NUMBER: _ClassVar[int]
    EMA_DECAY_FIELD_NUMBER: _ClassVar[int]
    SCALE_RATIO_FIELD_NUMBER: _ClassVar[int]
    FIRST_SCALE_SHARE_FIELD_NUMBER: _ClassVar[int]
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
    color_control: ColorControl
    unmasked_region: UnmaskedRegion
    background: str
    output_bit_depth: int
    accept_partial: bool
    style_loss: StyleLoss
    iterate_average: IterateAverage
    ema_decay: float
    scale_ratio: float
    first_scale_share: float
    def __init__(self, content: _Optional[_Union[Image, _Mapping]] = ..., styles: _Optional[_Iterable[_Union[StyleImage, _Mapping]]] = ..., size: _Optional[int] = ..., iterations: _Optional[int] = ..., optimizer: _Optional[_Union[Optimizer, str]] = ..., learning_rate: _Optional[float] = ..., content_weight: _Optional[float] = ..., style_weight: _Optional[float] = ..., tv_weight: _Optional[float] = ..., content_layers: _Optional[_Iterable[_Union[LayerWeight, _Mapping]]] = ..., style_layers: _Optional[_Iterable[_Union[LayerWeight, _Mapping]]] = ..., pooling: _Optional[_Union[Pooling, str]] = ..., init: _Optional[_Union[Init, str]] = ..., init_image: _Optional[_Union[Image, _Mapping]] = ..., seed: _Optional[int] = ..., style_scale: _Optional[float] = ..., preserve_colors: _Optional[bool] = ..., multiscale: _Optional[bool] = ..., multiscale_min_size: _Optional[int] = ..., progress_interval: _Optional[int] = ..., preview_max_side: _Optional[int] = ..., output_format: _Optional[_Union[OutputFormat, str]] = ..., quality: _Optional[int] = ..., request_id: _Optional[str] = ..., color_control: _Optional[_Union[ColorControl, str]] = ..., unmasked_region: _Optional[_Union[UnmaskedRegion, str]] = ..., background: _Optional[str] = ..., output_bit_depth: _Optional[int] = ..., accept_partial: _Optional[bool] = ..., style_loss: _Optional[_Union[StyleLoss, str]] = ..., iterate_average: _Optional[_Union[IterateAverage, str]] = ..., ema_decay: _Optional[float] = ..., scale_ratio: _Optional[float] = ..., first_scale_share: _Optional[float] = ...) -> None: ...

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
    __slots__ = ("request_id", "width", "height", "options", "queue_wait_seconds", "estimate", "random_weights", "reattached")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    RANDOM_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    REATTACHED_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    width: int
    height: int
    options: ResolvedOptions
    queue_wait_seconds: float
    estimate: Estimate
    random_weights: bool
    reattached: bool
    def __init__(self, request_id: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., options: _Optional[_Union[ResolvedOptions, _Mapping]] = ..., queue_wait_seconds: _Optional[float] = ..., estimate: _Optional[_Union[Estimate, _Mapping]] = ..., random_weights: _Optional[bool] = ..., reattached: _Optional[bool] = ...) -> None: ...

class Estimate(_message.Message):
    __slots__ = ("device_memory_bytes", "seconds", "flops", "input_pixels", "scales")
    DEVICE_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    FLOPS_FIELD_NUMBER: _ClassVar[int]
    INPUT_PIXELS_FIELD_NUMBER: _ClassVar[int]
    SCALES_FIELD_NUMBER: _ClassVar[int]
    device_memory_bytes: int
    seconds: float
    flops: float
    input_pixels: int
    scales: _containers.RepeatedCompositeFieldContainer[ScaleEstimate]
    def __init__(self, device_memory_bytes: _Optional[int] = ..., seconds: _Optional[float] = ..., flops: _Optional[float] = ..., input_pixels: _Optional[int] = ..., scales: _Optional[_Iterable[_Union[ScaleEstimate, _Mapping]]] = ...) -> None: ...

class ScaleEstimate(_message.Message):
    __slots__ = ("width", "height", "iterations", "style_pixels", "device_memory_bytes", "seconds_per_iteration", "tile_size", "tiles", "lbfgs_history")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    STYLE_PIXELS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    SECONDS_PER_ITERATION_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TILES_FIELD_NUMBER: _ClassVar[int]
    LBFGS_HISTORY_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    iterations: int
    style_pixels: int
    device_memory_bytes: int
    seconds_per_iteration: float
    tile_size: int
    tiles: int
    lbfgs_history: int
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., iterations: _Optional[int] = ..., style_pixels: _Optional[int] = ..., device_memory_bytes: _Optional[int] = ..., seconds_per_iteration: _Optional[float] = ..., tile_size: _Optional[int] = ..., tiles: _Optional[int] = ..., lbfgs_history: _Optional[int] = ...) -> None: ...

class ResolvedOptions(_message.Message):
    __slots__ = ("size", "iterations", "optimizer", "learning_rate", "content_weight", "style_weight", "tv_weight", "content_layers", "style_layers", "pooling", "init", "seed", "style_scale", "preserve_colors", "multiscale", "scale_sizes", "scale_iterations", "style_blend_weights", "output_format", "quality", "progress_interval", "preview_max_side", "color_control", "unmasked_region", "background", "output_bit_depth", "multiscale_min_size", "regions", "precision", "style_loss", "iterate_average", "ema_decay", "scale_ratio", "first_scale_share")
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
    COLOR_CONTROL_FIELD_NUMBER: _ClassVar[int]
    UNMASKED_REGION_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BIT_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MULTISCALE_MIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    STYLE_LOSS_FIELD_NUMBER: _ClassVar[int]
    ITERATE_AVERAGE_FIELD_NUMBER: _ClassVar[int]
    EMA_DECAY_FIELD_NUMBER: _ClassVar[int]
    SCALE_RATIO_FIELD_NUMBER: _ClassVar[int]
    FIRST_SCALE_SHARE_FIELD_NUMBER: _ClassVar[int]
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
    color_control: ColorControl
    unmasked_region: UnmaskedRegion
    background: str
    output_bit_depth: int
    multiscale_min_size: int
    regions: int
    precision: str
    style_loss: StyleLoss
    iterate_average: IterateAverage
    ema_decay: float
    scale_ratio: float
    first_scale_share: float
    def __init__(self, size: _Optional[int] = ..., iterations: _Optional[int] = ..., optimizer: _Optional[_Union[Optimizer, str]] = ..., learning_rate: _Optional[float] = ..., content_weight: _Optional[float] = ..., style_weight: _Optional[float] = ..., tv_weight: _Optional[float] = ..., content_layers: _Optional[_Iterable[_Union[LayerWeight, _Mapping]]] = ..., style_layers: _Optional[_Iterable[_Union[LayerWeight, _Mapping]]] = ..., pooling: _Optional[_Union[Pooling, str]] = ..., init: _Optional[_Union[Init, str]] = ..., seed: _Optional[int] = ..., style_scale: _Optional[float] = ..., preserve_colors: _Optional[bool] = ..., multiscale: _Optional[bool] = ..., scale_sizes: _Optional[_Iterable[int]] = ..., scale_iterations: _Optional[_Iterable[int]] = ..., style_blend_weights: _Optional[_Iterable[float]] = ..., output_format: _Optional[_Union[OutputFormat, str]] = ..., quality: _Optional[int] = ..., progress_interval: _Optional[int] = ..., preview_max_side: _Optional[int] = ..., color_control: _Optional[_Union[ColorControl, str]] = ..., unmasked_region: _Optional[_Union[UnmaskedRegion, str]] = ..., background: _Optional[str] = ..., output_bit_depth: _Optional[int] = ..., multiscale_min_size: _Optional[int] = ..., regions: _Optional[int] = ..., precision: _Optional[str] = ..., style_loss: _Optional[_Union[StyleLoss, str]] = ..., iterate_average: _Optional[_Union[IterateAverage, str]] = ..., ema_decay: _Optional[float] = ..., scale_ratio: _Optional[float] = ..., first_scale_share: _Optional[float] = ...) -> None: ...

class Losses(_message.Message):
    __slots__ = ("content", "style", "tv", "total", "terms")
    class TermsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    STYLE_FIELD_NUMBER: _ClassVar[int]
    TV_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    content: float
    style: float
    tv: float
    total: float
    terms: _containers.ScalarMap[str, float]
    def __init__(self, content: _Optional[float] = ..., style: _Optional[float] = ..., tv: _Optional[float] = ..., total: _Optional[float] = ..., terms: _Optional[_Mapping[str, float]] = ...) -> None: ...

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
    __slots__ = ("image", "mime_type", "width", "height", "losses", "iterations", "queue_wait_seconds", "compute_seconds", "request_id", "complete", "stop_reason", "iterations_requested", "chunk_index", "chunk_count", "total_bytes", "alpha", "flattened_on", "bit_depth")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    FLATTENED_ON_FIELD_NUMBER: _ClassVar[int]
    BIT_DEPTH_FIELD_NUMBER: _ClassVar[int]
    image: Image
    mime_type: str
    width: int
    height: int
    losses: Losses
    iterations: int
    queue_wait_seconds: float
    compute_seconds: float
    request_id: str
    complete: bool
    stop_reason: StopReason
    iterations_requested: int
    chunk_index: int
    chunk_count: int
    total_bytes: int
    alpha: bool
    flattened_on: str
    bit_depth: int
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., mime_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., losses: _Optional[_Union[Losses, _Mapping]] = ..., iterations: _Optional[int] = ..., queue_wait_seconds: _Optional[float] = ..., compute_seconds: _Optional[float] = ..., request_id: _Optional[str] = ..., complete: _Optional[bool] = ..., stop_reason: _Optional[_Union[StopReason, str]] = ..., iterations_requested: _Optional[int] = ..., chunk_index: _Optional[int] = ..., chunk_count: _Optional[int] = ..., total_bytes: _Optional[int] = ..., alpha: _Optional[bool] = ..., flattened_on: _Optional[str] = ..., bit_depth: _Optional[int] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("version", "model", "device", "limits", "queue", "defaults", "budget")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    version: str
    model: ModelInfo
    device: DeviceInfo
    limits: Limits
    queue: QueueInfo
    defaults: ResolvedOptions
    budget: Budget
    def __init__(self, version: _Optional[str] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ..., device: _Optional[_Union[DeviceInfo, _Mapping]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., queue: _Optional[_Union[QueueInfo, _Mapping]] = ..., defaults: _Optional[_Union[ResolvedOptions, _Mapping]] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "weights_source", "random_weights", "default_pooling", "load_seconds", "precision", "precision_reason", "xla")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SOURCE_FIELD_NUMBER: _ClassVar[int]
    RANDOM_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_POOLING_FIELD_NUMBER: _ClassVar[int]
    LOAD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    PRECISION_REASON_FIELD_NUMBER: _ClassVar[int]
    XLA_FIELD_NUMBER: _ClassVar[int]
    name: str
    weights_source: str
    random_weights: bool
    default_pooling: Pooling
    load_seconds: float
    precision: str
    precision_reason: str
    xla: bool
    def __init__(self, name: _Optional[str] = ..., weights_source: _Optional[str] = ..., random_weights: _Optional[bool] = ..., default_pooling: _Optional[_Union[Pooling, str]] = ..., load_seconds: _Optional[float] = ..., precision: _Optional[str] = ..., precision_reason: _Optional[str] = ..., xla: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("max_pixels", "max_side", "max_iterations", "max_styles", "max_message_bytes", "max_input_pixels", "max_request_pixels", "max_job_seconds", "max_jobs_per_client", "request_receive_seconds", "result_retention_seconds", "max_video_frames")
    MAX_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    MAX_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_STYLES_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUEST_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_JOB_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_JOBS_PER_CLIENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_RECEIVE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RESULT_RETENTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_VIDEO_FRAMES_FIELD_NUMBER: _ClassVar[int]
    max_pixels: int
    max_side: int
    max_iterations: int
    max_styles: int
    max_message_bytes: int
    max_input_pixels: int
    max_request_pixels: int
    max_job_seconds: float
    max_jobs_per_client: int
    request_receive_seconds: float
    result_retention_seconds: float
    max_video_frames: int
    def __init__(self, max_pixels: _Optional[int] = ..., max_side: _Optional[int] = ..., max_iterations: _Optional[int] = ..., max_styles: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_input_pixels: _Optional[int] = ..., max_request_pixels: _Optional[int] = ..., max_job_seconds: _Optional[float] = ..., max_jobs_per_client: _Optional[int] = ..., request_receive_seconds: _Optional[float] = ..., result_retention_seconds: _Optional[float] = ..., max_video_frames: _Optional[int] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("device_memory_budget_bytes", "reserved_bytes", "tile_size")
    DEVICE_MEMORY_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESERVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    device_memory_budget_bytes: int
    reserved_bytes: int
    tile_size: int
    def __init__(self, device_memory_budget_bytes: _Optional[int] = ..., reserved_bytes: _Optional[int] = ..., tile_size: _Optional[int] = ...) -> None: ...

class QueueInfo(_message.Message):
    __slots__ = ("max_concurrent_jobs", "capacity", "depth", "running", "open_calls", "max_open_calls")
    MAX_CONCURRENT_JOBS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    OPEN_CALLS_FIELD_NUMBER: _ClassVar[int]
    MAX_OPEN_CALLS_FIELD_NUMBER: _ClassVar[int]
    max_concurrent_jobs: int
    capacity: int
    depth: int
    running: int
    open_calls: int
    max_open_calls: int
    def __init__(self, max_concurrent_jobs: _Optional[int] = ..., capacity: _Optional[int] = ..., depth: _Optional[int] = ..., running: _Optional[int] = ..., open_calls: _Optional[int] = ..., max_open_calls: _Optional[int] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("stopped",)
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    stopped: bool
    def __init__(self, stopped: _Optional[bool] = ...) -> None: ...

class VideoRequest(_message.Message):
    __slots__ = ("header", "frame")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    header: VideoHeader
    frame: VideoFrame
    def __init__(self, header: _Optional[_Union[VideoHeader, _Mapping]] = ..., frame: _Optional[_Union[VideoFrame, _Mapping]] = ...) -> None: ...

class VideoHeader(_message.Message):
    __slots__ = ("options", "temporal_weight", "frame_iterations", "frame_count", "first_frame", "early_stop")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    TEMPORAL_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    FRAME_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_FRAME_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOP_FIELD_NUMBER: _ClassVar[int]
    options: StylizeRequest
    temporal_weight: float
    frame_iterations: int
    frame_count: int
    first_frame: int
    early_stop: float
    def __init__(self, options: _Optional[_Union[StylizeRequest, _Mapping]] = ..., temporal_weight: _Optional[float] = ..., frame_iterations: _Optional[int] = ..., frame_count: _Optional[int] = ..., first_frame: _Optional[int] = ..., early_stop: _Optional[float] = ...) -> None: ...

class VideoFrame(_message.Message):
    __slots__ = ("index", "image")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    image: Image
    def __init__(self, index: _Optional[int] = ..., image: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class VideoResponse(_message.Message):
    __slots__ = ("queued", "started", "progress", "stylized", "summary", "index")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    STYLIZED_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    queued: Queued
    started: Started
    progress: Progress
    stylized: StylizedFrame
    summary: VideoSummary
    index: int
    def __init__(self, queued: _Optional[_Union[Queued, _Mapping]] = ..., started: _Optional[_Union[Started, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., stylized: _Optional[_Union[StylizedFrame, _Mapping]] = ..., summary: _Optional[_Union[VideoSummary, _Mapping]] = ..., index: _Optional[int] = ...) -> None: ...

class StylizedFrame(_message.Message):
    __slots__ = ("index", "result", "flow_seconds")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FLOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    index: int
    result: Result
    flow_seconds: float
    def __init__(self, index: _Optional[int] = ..., result: _Optional[_Union[Result, _Mapping]] = ..., flow_seconds: _Optional[float] = ...) -> None: ...

class VideoSummary(_message.Message):
    __slots__ = ("frames", "next_frame", "stop_reason", "message", "seconds", "flow_seconds", "flow_hidden_seconds", "resumed")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    NEXT_FRAME_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    FLOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FLOW_HIDDEN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    frames: int
    next_frame: int
    stop_reason: StopReason
    message: str
    seconds: float
    flow_seconds: float
    flow_hidden_seconds: float
    resumed: bool
    def __init__(self, frames: _Optional[int] = ..., next_frame: _Optional[int] = ..., stop_reason: _Optional[_Union[StopReason, str]] = ..., message: _Optional[str] = ..., seconds: _Optional[float] = ..., flow_seconds: _Optional[float] = ..., flow_hidden_seconds: _Optional[float] = ..., resumed: _Optional[bool] = ...) -> None: ...
