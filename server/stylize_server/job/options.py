"""The options of one job, as two typed dataclasses: `JobOptions`, what the
engine optimizes, and `DeliveryOptions`, how the service reports and returns
it. Field names are the StylizeRequest field names and enum values are the
proto's value names in lower case, so `convert` maps them by name. Also: the
server's `Limits` (the one set of defaults), range checks; the sizes and the
multi-scale plan are geometry.py's.

Defaults and their provenance (README, "The algorithm, and where the defaults
come from"):

* Loss definitions follow jcjohnson/neural-style and anishathalye/neural-style:
  content = MSE of feature maps; style = MSE of Gram matrices FᵀF/(C·H·W);
  tv = mean squared difference of neighbouring pixels, summed over x and y.
  With these definitions both use content weight 5 and an effective style
  weight of 100 summed over five equally weighted layers (jcjohnson: 100 per
  layer; anishathalye: 500 × 1/5). The TV weight is anishathalye's 100.
* Layers relu4_2 (content) and relu1_1..relu5_1 (style), as in the paper.
* Adam learning rate 10 on the 0..255 pixel scale, as both references.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from stylize_server.job.checks import check_finite as _finite
from stylize_server.job.checks import check_range as _int_range
from stylize_server.job.errors import InvalidArgument, TooLarge
from stylize_server.job.geometry import multiscale_on, output_shape
from stylize_server.job.geometry import style_shape as style_shape  # the style terms size their images with it
from stylize_server.job.layout import LOSS_LAYERS, MIN_SIDE, Pooling
from stylize_server.job.temporal import Temporal


class Optimizer(str, enum.Enum):
    LBFGS = "lbfgs"
    ADAM = "adam"


class Init(str, enum.Enum):
    CONTENT = "content"
    NOISE = "noise"
    STYLE = "style"
    IMAGE = "image"


class ColorControl(str, enum.Enum):
    NONE = "none"
    LUMINANCE = "luminance"
    HISTOGRAM = "histogram"


class UnmaskedRegion(str, enum.Enum):
    STYLES = "styles"
    CONTENT = "content"


class IterateAverage(str, enum.Enum):
    NONE = "none"
    EMA = "ema"


Layers = tuple[tuple[str, float], ...]
TermValue = float | int | bool | str | Layers

DEFAULT_CONTENT_LAYERS: Layers = (("relu4_2", 1.0),)
DEFAULT_STYLE_LAYERS: Layers = tuple((f"relu{b}_1", 1.0) for b in range(1, 6))
DEFAULT_LEARNING_RATE = {Optimizer.LBFGS: 1.0, Optimizer.ADAM: 10.0}


@dataclass(frozen=True)
class Limits:
    """What one request may ask for. Every limit is also a server flag
    (--max-pixels, ...), whose default is the one here."""

    max_pixels: int = 4096 * 4096  # output width*height: 16 MP (the memory budget decides what fits)
    max_side: int = 4096  # output longest side
    max_iterations: int = 2000
    max_styles: int = 8
    max_input_pixels: int = 40_000_000  # one decoded input image, checked from its header
    max_request_pixels: int = 80_000_000  # decoded pixels of all images of one request
    max_preview_side: int = 1024


@dataclass(frozen=True)
class StyleSource:
    """A decoded style image (H×W×3 uint8 RGB), its blend weight and, where it
    applies only to a region, its mask (H×W float32 in 0..1, any size)."""

    image: np.ndarray
    weight: float = 1.0
    mask: np.ndarray | None = None


@dataclass(frozen=True)
class Inputs:
    """The decoded images of a job."""

    content: np.ndarray  # H×W×3 uint8 RGB
    styles: tuple[StyleSource, ...]
    init_image: np.ndarray | None = None
    temporal: Temporal | None = None  # a later video frame: the warped previous output and its reliability

    @property
    def shapes(self) -> InputShapes:
        return InputShapes(
            content=_hw(self.content),
            styles=tuple(_hw(s.image) for s in self.styles),
            masks=tuple(None if s.mask is None else _hw(s.mask) for s in self.styles),
            weights=tuple(float(s.weight) for s in self.styles),
            init_image=None if self.init_image is None else _hw(self.init_image),
        )


@dataclass(frozen=True)
class InputShapes:
    """The (height, width) of every input image, known from the headers before
    anything is decoded, and the styles' blend weights: all that validation
    and the cost model need."""

    content: tuple[int, int]
    styles: tuple[tuple[int, int], ...]
    masks: tuple[tuple[int, int] | None, ...]
    weights: tuple[float, ...]
    init_image: tuple[int, int] | None = None

    @property
    def pixels(self) -> int:
        """Decoded pixels of every input image."""
        shapes = [self.content, *self.styles, *(m for m in self.masks if m)]
        if self.init_image is not None:
            shapes.append(self.init_image)
        return sum(h * w for h, w in shapes)


def _hw(image: np.ndarray) -> tuple[int, int]:
    return int(image.shape[0]), int(image.shape[1])


@dataclass(frozen=True)
class JobOptions:
    """What the engine optimizes, the images aside. Fields left at None are
    resolved by `resolve`."""

    size: int = 512
    iterations: int = 500
    optimizer: Optimizer = Optimizer.LBFGS
    learning_rate: float | None = None  # None: 1.0 for L-BFGS, 10.0 for Adam
    content_weight: float = 5.0
    style_weight: float = 100.0
    tv_weight: float = 100.0
    content_layers: Layers = DEFAULT_CONTENT_LAYERS
    style_layers: Layers = DEFAULT_STYLE_LAYERS
    pooling: Pooling | None = None  # None: the engine's default (avg)
    init: Init = Init.CONTENT
    seed: int = 0
    style_scale: float = 1.0
    preserve_colors: bool = False
    multiscale: bool | None = None  # None: on when size > MULTISCALE_THRESHOLD
    multiscale_min_size: int = 256
    color_control: ColorControl = ColorControl.NONE
    unmasked_region: UnmaskedRegion = UnmaskedRegion.STYLES
    iterate_average: IterateAverage = IterateAverage.NONE
    ema_decay: float = 0.99  # of the iterate EMA: crowsonkb's
    scale_ratio: float = 2.0  # between consecutive scales (plan_scales)
    first_scale_share: float = 2.0  # the coarsest scale's iterations, in shares of a later scale's
    lbfgs_history: int = 20  # engine setting, not in the API; the cost model may lower it
    # The options of loss terms that own them (proto scope TERM), by name, in
    # name order: a new term's options need no field here (engine/terms).
    term_options: tuple[tuple[str, TermValue], ...] = ()

    def __post_init__(self) -> None:
        # Python callers may name an enum by its value ("luminance"); the engine
        # compares members by identity, so a plain string would be ignored.
        for name, kind in _ENUM_FIELDS.items():
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                try:
                    object.__setattr__(self, name, kind(value))
                except ValueError:
                    choices = ", ".join(m.value for m in kind)
                    raise InvalidArgument(name, f"{value!r} is not one of {choices}") from None

    def replace(self, **changes: object) -> JobOptions:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def value(self, name: str, defaults: Mapping[str, object] | None = None) -> object:
        """Option `name`: a field, else a term option, else its term's default."""
        if name in _FIELDS:
            return getattr(self, name)
        for key, value in self.term_options:
            if key == name:
                return value
        if defaults is not None and name in defaults:
            return defaults[name]
        raise KeyError(f"no option {name!r}")

    def with_value(self, name: str, value: object) -> JobOptions:
        """The options with `name` (a field or a term option) set to `value`."""
        if name in _FIELDS:
            return self.replace(**{name: value})
        rest = [(k, v) for k, v in self.term_options if k != name]
        return self.replace(term_options=tuple(sorted([*rest, (name, value)])))


_FIELDS = frozenset(f.name for f in dataclasses.fields(JobOptions))
_ENUM_FIELDS: dict[str, type[enum.Enum]] = {
    "optimizer": Optimizer,
    "pooling": Pooling,
    "init": Init,
    "color_control": ColorControl,
    "unmasked_region": UnmaskedRegion,
    "iterate_average": IterateAverage,
}


def resolve(options: JobOptions, default_pooling: Pooling = Pooling.AVG) -> JobOptions:
    """Fill the fields left at None with their defaults."""
    return options.replace(
        learning_rate=(
            options.learning_rate if options.learning_rate is not None else DEFAULT_LEARNING_RATE[options.optimizer]
        ),
        pooling=options.pooling or default_pooling,
        multiscale=multiscale_on(options),
    )


def _check_shape(name: str, hw: tuple[int, int] | None, limits: Limits) -> None:
    if hw is None:
        raise InvalidArgument(name, "is required")
    h, w = hw
    if h < 1 or w < 1:
        raise InvalidArgument(name, f"image has no pixels ({w}x{h})")
    if h * w > limits.max_input_pixels:
        raise TooLarge(name, f"{w}x{h} = {w * h} pixels exceeds the limit of {limits.max_input_pixels} pixels")


def validate_shapes(shapes: InputShapes, limits: Limits) -> None:
    """The checks that need only the images' headers: run before decoding."""
    _check_shape("content", shapes.content, limits)
    if not shapes.styles:
        raise InvalidArgument("styles", "at least one style image is required")
    if len(shapes.styles) > limits.max_styles:
        raise InvalidArgument("styles", f"{len(shapes.styles)} style images exceed the limit of {limits.max_styles}")
    for i, (style, mask) in enumerate(zip(shapes.styles, shapes.masks)):
        _check_shape(f"styles[{i}].image", style, limits)
        if mask is not None:
            _check_shape(f"styles[{i}].mask", mask, limits)
    if shapes.init_image is not None:
        _check_shape("init_image", shapes.init_image, limits)
    if shapes.pixels > limits.max_request_pixels:
        raise TooLarge(
            "styles" if len(shapes.styles) > 1 else "content",
            f"the request's images decode to {shapes.pixels} pixels in all, over the limit of "
            f"{limits.max_request_pixels} pixels per request; send smaller or fewer images",
        )


def validate(options: JobOptions, shapes: InputShapes, limits: Limits) -> None:
    """Raise InvalidArgument / TooLarge naming the first bad field and its limit."""
    validate_shapes(shapes, limits)
    for i, weight in enumerate(shapes.weights):
        _finite(f"styles[{i}].blend_weight", weight, 0.0, 1e6)
    if sum(shapes.weights) <= 0:
        raise InvalidArgument("styles[0].blend_weight", "at least one blend weight must be positive")
    unmasked = [i for i, m in enumerate(shapes.masks) if m is None]
    if options.unmasked_region is UnmaskedRegion.CONTENT and unmasked and len(unmasked) < len(shapes.masks):
        raise InvalidArgument(
            f"styles[{unmasked[0]}].mask",
            "unmasked_region = content leaves no region for a style without a mask; give every style a mask "
            "or use unmasked_region = styles",
        )
    _int_range("size", options.size, MIN_SIDE, limits.max_side)
    h, w = output_shape(options, shapes.content)
    if h * w > limits.max_pixels:
        raise InvalidArgument(
            "size",
            f"output {w}x{h} = {w * h} pixels exceeds the limit of {limits.max_pixels} pixels; ask for a smaller size",
        )
    if min(h, w) < MIN_SIDE:
        raise InvalidArgument(
            "size",
            f"output {w}x{h} is too small; its shorter side must be at least {MIN_SIDE} px "
            "(VGG-19 halves it four times before block 5)",
        )
    _int_range("iterations", options.iterations, 1, limits.max_iterations)
    if options.learning_rate is not None:
        _finite("learning_rate", options.learning_rate, 1e-6, 1e4)
    _finite("content_weight", options.content_weight, 0.0, 1e12)
    _finite("style_weight", options.style_weight, 0.0, 1e12)
    _finite("tv_weight", options.tv_weight, 0.0, 1e12)
    for name, layers in (("content_layers", options.content_layers), ("style_layers", options.style_layers)):
        seen: set[str] = set()
        for layer, weight in layers:
            if layer not in LOSS_LAYERS:
                raise InvalidArgument(
                    name, f"unknown layer {layer!r}; valid layers are conv1_1..conv5_4 and relu1_1..relu5_4"
                )
            if layer in seen:
                raise InvalidArgument(name, f"layer {layer!r} is listed twice")
            seen.add(layer)
            _finite(f"{name}[{layer}].weight", weight, 0.0, 1e12)
    if not options.content_layers and not options.style_layers:
        raise InvalidArgument("style_layers", "content_layers and style_layers cannot both be empty")
    if options.init is Init.IMAGE and shapes.init_image is None:
        raise InvalidArgument("init_image", "is required when init is image (INIT_IMAGE)")
    if options.init is not Init.IMAGE and shapes.init_image is not None:
        raise InvalidArgument("init_image", "is set but init is not image; set init = image (INIT_IMAGE) to use it")
    if not 0 <= options.seed < 2**63:
        raise InvalidArgument("seed", f"must be in [0, 2^63), got {options.seed}")
    _finite("style_scale", options.style_scale, 0.1, 4.0)
    for i, style in enumerate(shapes.styles):
        sh, sw = style_shape(style, (h, w), options.style_scale)
        if sh * sw > 16 * limits.max_pixels:
            raise InvalidArgument(
                "style_scale",
                f"style {i} at scale {options.style_scale:g} would be {sw}x{sh} pixels, over 16x the limit of "
                f"{limits.max_pixels} output pixels",
            )
    # Above `size` it only means "one scale", so it is not tied to max_side.
    _int_range("multiscale_min_size", options.multiscale_min_size, 32, 65536)
    _int_range("lbfgs_history", options.lbfgs_history, 1, 100)
    _finite("scale_ratio", options.scale_ratio, 1.2, 4.0)
    _finite("first_scale_share", options.first_scale_share, 0.25, 16.0)
    _finite("ema_decay", options.ema_decay, 0.0, 1.0)
    if options.ema_decay >= 1.0:
        raise InvalidArgument(
            "ema_decay", f"must be in [0, 1), got {options.ema_decay:g}: at 1 the average never moves"
        )
