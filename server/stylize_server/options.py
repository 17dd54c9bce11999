"""The options of one style-transfer job: one typed dataclass shared by the
servicer (which builds it from a request) and the engine (which runs it), the
defaults and where they come from, range checks, and the multi-scale plan.

Defaults and their provenance (see README, "Defaults"):

* Loss definitions follow jcjohnson/neural-style and anishathalye/neural-style:
  content = MSE of feature maps; style = MSE of Gram matrices FᵀF/(C·H·W);
  tv = mean squared difference of neighbouring pixels, summed over x and y.
  With these definitions both reference implementations use content weight 5
  and an effective style weight of 100 summed over five equally weighted layers
  (jcjohnson: style_weight 100 per layer; anishathalye: 500 × 1/5 per layer).
  The TV weight is anishathalye's 100 (its TV term is the same mean-based one;
  jcjohnson's 1e-3 on a per-pixel sum is about 100-400 of ours at 256-512 px).
* Layers relu4_2 (content) and relu1_1..relu5_1 (style), as in the paper.
* Adam learning rate 10 on the 0..255 pixel scale, as both references.
* Iterations 500: the budget at which jcjohnson's published timings are quoted.
"""
from __future__ import annotations

import dataclasses
import enum
import math
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .errors import InvalidArgument, TooLarge


class Optimizer(str, enum.Enum):
    LBFGS = "lbfgs"
    ADAM = "adam"


class Pooling(str, enum.Enum):
    AVG = "avg"
    MAX = "max"


class Init(str, enum.Enum):
    CONTENT = "content"
    NOISE = "noise"
    STYLE = "style"
    IMAGE = "image"


class OutputFormat(str, enum.Enum):
    PNG = "png"
    JPEG = "jpeg"
    WEBP = "webp"


# VGG-19's layer names in order; pooling layers are not loss layers.
BLOCK_SIZES = (2, 2, 4, 4, 4)
CONV_LAYERS = tuple(f"conv{b + 1}_{i + 1}" for b, n in enumerate(BLOCK_SIZES) for i in range(n))
RELU_LAYERS = tuple(name.replace("conv", "relu") for name in CONV_LAYERS)
LOSS_LAYERS = frozenset(CONV_LAYERS + RELU_LAYERS)

DEFAULT_CONTENT_LAYERS: tuple[tuple[str, float], ...] = (("relu4_2", 1.0),)
DEFAULT_STYLE_LAYERS: tuple[tuple[str, float], ...] = tuple(
    (f"relu{b}_1", 1.0) for b in range(1, 6)
)
DEFAULT_LEARNING_RATE = {Optimizer.LBFGS: 1.0, Optimizer.ADAM: 10.0}
MULTISCALE_THRESHOLD = 256  # multi-scale is on by default above this size
MIN_SIDE = 16  # the shorter side of any scale: 16 -> 1 px after VGG-19's four poolings


@dataclass(frozen=True)
class Limits:
    """What one job may ask for. The server's flags set these."""

    max_pixels: int = 1024 * 1024  # output width*height
    max_side: int = 2048  # output longest side
    max_iterations: int = 5000
    max_styles: int = 8
    max_input_pixels: int = 40_000_000  # decoded input image, checked from the header


@dataclass(frozen=True)
class StyleSource:
    """A decoded style image (H×W×3 uint8 RGB) and its blend weight."""

    image: np.ndarray
    weight: float = 1.0


@dataclass(frozen=True)
class JobOptions:
    """Everything a job needs. Images are decoded H×W×3 uint8 RGB arrays.

    Fields left at None are resolved by `resolve` (engine defaults that depend
    on other fields or on the engine).
    """

    content: np.ndarray
    styles: Sequence[StyleSource]
    size: int = 512
    iterations: int = 500
    optimizer: Optimizer = Optimizer.LBFGS
    learning_rate: float | None = None  # None: 1.0 for L-BFGS, 10.0 for Adam
    content_weight: float = 5.0
    style_weight: float = 100.0
    tv_weight: float = 100.0
    content_layers: tuple[tuple[str, float], ...] = DEFAULT_CONTENT_LAYERS
    style_layers: tuple[tuple[str, float], ...] = DEFAULT_STYLE_LAYERS
    pooling: Pooling | None = None  # None: the engine's default (avg)
    init: Init = Init.CONTENT
    init_image: np.ndarray | None = None
    seed: int = 0
    style_scale: float = 1.0
    preserve_colors: bool = False
    multiscale: bool | None = None  # None: on when size > 256
    multiscale_min_size: int = 256
    progress_interval: int = 10
    lbfgs_history: int = 20
    # Used by the service only (the engine returns arrays):
    preview_max_side: int = 0
    output_format: OutputFormat = OutputFormat.PNG
    quality: int = 92
    request_id: str = ""

    def replace(self, **changes: object) -> "JobOptions":
        return dataclasses.replace(self, **changes)

    @property
    def output_shape(self) -> tuple[int, int]:
        """(height, width) of the output: the content scaled to `size`."""
        return scaled_shape(self.content.shape[:2], self.size)


@dataclass(frozen=True)
class Scale:
    size: int  # longest side
    iterations: int


def style_side(size: int, style_scale: float) -> int:
    """Longest side of the style images for an output of longest side `size`."""
    return max(MIN_SIDE, round(size * style_scale))


def layer_index(name: str) -> int:
    """Position of a conv/relu layer in the network (conv before its relu)."""
    kind, _, rest = name.partition("_")  # "relu4", "2"
    base = kind.rstrip("0123456789")
    return CONV_LAYERS.index(name.replace(base, "conv", 1)) * 2 + (base == "relu")


def scaled_shape(shape: Sequence[int], longest: int) -> tuple[int, int]:
    h, w = int(shape[0]), int(shape[1])
    scale = longest / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def multiscale_on(options: JobOptions) -> bool:
    """`multiscale` as asked, or by default on above MULTISCALE_THRESHOLD."""
    return options.size > MULTISCALE_THRESHOLD if options.multiscale is None else options.multiscale


def plan_scales(options: JobOptions) -> list[Scale]:
    """The coarse-to-fine schedule.

    Sizes double from `multiscale_min_size` up to `size` (the last scale is
    exactly `size`). The iteration budget is split in shares 2:1:1:...: the
    coarsest scale, where an iteration is cheapest and most of the structure
    forms, gets twice the share of each finer scale; rounding goes to the
    coarsest. Every scale gets at least one iteration while the budget lasts.
    """
    sizes = [options.size]
    if multiscale_on(options):
        s = options.size
        while s // 2 >= options.multiscale_min_size:
            s //= 2
            if min(scaled_shape(options.content.shape[:2], s)) < MIN_SIDE:
                break  # a very wide or tall image: no coarser scale is deep enough for VGG-19
            sizes.append(s)
        sizes.reverse()
    if options.iterations < len(sizes):  # fewer iterations than scales: keep the finest
        sizes = sizes[-options.iterations :]
    shares = [2] + [1] * (len(sizes) - 1)
    total_share = sum(shares)
    its = [options.iterations * sh // total_share for sh in shares]
    its = [max(1, i) for i in its]
    its[0] += options.iterations - sum(its)
    return [Scale(s, i) for s, i in zip(sizes, its)]


def resolve(options: JobOptions, default_pooling: Pooling = Pooling.AVG) -> JobOptions:
    """Fill the fields left at None with their defaults."""
    return options.replace(
        learning_rate=(
            options.learning_rate
            if options.learning_rate is not None
            else DEFAULT_LEARNING_RATE[options.optimizer]
        ),
        pooling=options.pooling or default_pooling,
        multiscale=multiscale_on(options),
    )


def blend_weights(styles: Sequence[StyleSource]) -> list[float]:
    total = sum(s.weight for s in styles)
    return [s.weight / total for s in styles]


_REQUEST_ID = re.compile(r"^[\x20-\x7e]{0,128}$")


def _finite(name: str, value: float, lo: float, hi: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgument(name, f"must be a finite number, got {value!r}")
    if not lo <= value <= hi:
        raise InvalidArgument(name, f"must be in [{lo:g}, {hi:g}], got {value:g}")


def _int_range(name: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise InvalidArgument(name, f"must be in [{lo}, {hi}], got {value}")


def _check_image(name: str, image: np.ndarray | None, limits: Limits) -> None:
    if image is None:
        raise InvalidArgument(name, "is required")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InvalidArgument(name, f"must be an H×W×3 uint8 RGB array, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    if h < 1 or w < 1:
        raise InvalidArgument(name, "is empty")
    if h * w > limits.max_input_pixels:
        raise TooLarge(name, f"{w}x{h} = {w * h} pixels exceeds the limit of {limits.max_input_pixels} pixels")


def _check_layers(name: str, layers: Sequence[tuple[str, float]], required: bool) -> None:
    if required and not layers:
        raise InvalidArgument(name, "needs at least one layer")
    seen: set[str] = set()
    for layer, weight in layers:
        if layer not in LOSS_LAYERS:
            raise InvalidArgument(
                name,
                f"unknown layer {layer!r}; valid layers are conv1_1..conv5_4 and relu1_1..relu5_4",
            )
        if layer in seen:
            raise InvalidArgument(name, f"layer {layer!r} is listed twice")
        seen.add(layer)
        _finite(f"{name}[{layer}].weight", weight, 0.0, 1e12)


def validate(options: JobOptions, limits: Limits) -> None:
    """Raise InvalidArgument / TooLarge naming the first bad field and its limit."""
    _check_image("content", options.content, limits)
    if not options.styles:
        raise InvalidArgument("styles", "at least one style image is required")
    if len(options.styles) > limits.max_styles:
        raise InvalidArgument("styles", f"{len(options.styles)} style images exceed the limit of {limits.max_styles}")
    for i, style in enumerate(options.styles):
        _check_image(f"styles[{i}].image", style.image, limits)
        _finite(f"styles[{i}].blend_weight", style.weight, 0.0, 1e6)
    if sum(s.weight for s in options.styles) <= 0:
        raise InvalidArgument("styles.blend_weight", "at least one blend weight must be positive")

    _int_range("size", options.size, 16, limits.max_side)
    h, w = options.output_shape
    if h * w > limits.max_pixels:
        raise InvalidArgument(
            "size",
            f"output {w}x{h} = {w * h} pixels exceeds the limit of {limits.max_pixels} pixels; "
            f"ask for a smaller size",
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
        if options.learning_rate <= 0:
            raise InvalidArgument("learning_rate", "must be positive")
    _finite("content_weight", options.content_weight, 0.0, 1e12)
    _finite("style_weight", options.style_weight, 0.0, 1e12)
    _finite("tv_weight", options.tv_weight, 0.0, 1e12)
    _check_layers("content_layers", options.content_layers, required=False)
    _check_layers("style_layers", options.style_layers, required=False)
    if not options.content_layers and not options.style_layers:
        raise InvalidArgument("style_layers", "content_layers and style_layers cannot both be empty")
    if options.init is Init.IMAGE:
        _check_image("init_image", options.init_image, limits)
    if not 0 <= options.seed < 2**63:
        raise InvalidArgument("seed", f"must be in [0, 2^63), got {options.seed}")
    _finite("style_scale", options.style_scale, 0.1, 4.0)
    for i, style in enumerate(options.styles):
        sh, sw = scaled_shape(style.image.shape[:2], style_side(options.size, options.style_scale))
        if sh * sw > 4 * limits.max_pixels:
            raise InvalidArgument(
                "style_scale",
                f"style {i} at scale {options.style_scale:g} would be {sw}x{sh} pixels, over 4x the limit of "
                f"{limits.max_pixels}",
            )
    # Above `size` it only means "one scale", so it is not tied to max_side.
    _int_range("multiscale_min_size", options.multiscale_min_size, 32, 65536)
    _int_range("progress_interval", options.progress_interval, 1, max(1, limits.max_iterations))
    _int_range("lbfgs_history", options.lbfgs_history, 1, 100)
    _int_range("preview_max_side", options.preview_max_side, 0, limits.max_side)
    _int_range("quality", options.quality, 1, 100)
    if not _REQUEST_ID.match(options.request_id):
        raise InvalidArgument("request_id", "must be at most 128 printable ASCII characters")
