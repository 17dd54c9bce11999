"""A job's sizes: the output's (height, width), each style's at a given
output, and the coarse-to-fine schedule of scales. Validation reads the
output's and the styles' sizes; the plan lays the scales out once
(`scale_shapes`), and the cost model prices those values without asking
again.

Numbers only: the options are read through `ScaleOptions`, which
`JobOptions` satisfies, so that options.py (its validation) can import this
module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from stylize_server.job.layout import MIN_SIDE

MULTISCALE_THRESHOLD = 256  # multi-scale is on by default above this size
# Scales above this longest side get half the iteration share of the scale
# before them: at print sizes the layout is settled, and an iteration there
# costs 4x the one below.
FULL_SHARE_MAX_SIZE = 1024

Shape = tuple[int, int]


class ScaleOptions(Protocol):
    """The options that decide the scales (fields of `JobOptions`)."""

    @property
    def size(self) -> int: ...
    @property
    def iterations(self) -> int: ...
    @property
    def multiscale(self) -> bool | None: ...
    @property
    def multiscale_min_size(self) -> int: ...
    @property
    def scale_ratio(self) -> float: ...
    @property
    def first_scale_share(self) -> float: ...
    @property
    def style_scale(self) -> float: ...


@dataclass(frozen=True)
class Scale:
    size: int  # longest side
    iterations: int


@dataclass(frozen=True)
class ScaleShape:
    """One scale laid out: its size and iterations, the output's (height,
    width) there and each style's (style_shape)."""

    size: int
    iterations: int
    height: int
    width: int
    styles: tuple[Shape, ...]


def scaled_shape(shape: Sequence[int], longest: int) -> Shape:
    h, w = int(shape[0]), int(shape[1])
    scale = longest / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def style_shape(style_hw: Sequence[int], output_hw: Sequence[int], style_scale: float) -> Shape:
    """(height, width) of a style image for an output of `output_hw`: its
    aspect kept, its area style_scale² times the output's, and its shorter side
    at least MIN_SIDE (so that block 5 is never empty)."""
    sh, sw = int(style_hw[0]), int(style_hw[1])
    area = style_scale**2 * int(output_hw[0]) * int(output_hw[1])
    factor = math.sqrt(area / (sh * sw))
    factor = max(factor, MIN_SIDE / min(sh, sw))
    return max(MIN_SIDE, round(sh * factor)), max(MIN_SIDE, round(sw * factor))


def output_shape(options: ScaleOptions, content_hw: Sequence[int]) -> Shape:
    """(height, width) of the output: the content scaled to `size`."""
    return scaled_shape(content_hw, options.size)


def multiscale_on(options: ScaleOptions) -> bool:
    """`multiscale` as asked, or by default on above MULTISCALE_THRESHOLD."""
    return options.size > MULTISCALE_THRESHOLD if options.multiscale is None else options.multiscale


def plan_scales(options: ScaleOptions, content_hw: Sequence[int]) -> list[Scale]:
    """The coarse-to-fine schedule. Sizes grow by `scale_ratio` (2: doubling; √2:
    crowsonkb's ladder) from at least `multiscale_min_size` to `size` (scale k
    below it is ⌊size / ratio^k⌋). The coarsest scale, where an iteration is
    cheapest and most of the structure forms, gets `first_scale_share` (2) shares;
    each finer scale up to FULL_SHARE_MAX_SIZE 1; each above it 1/ratio of the one
    before (its iterations cost ratio² as much and refine texture only). Rounding
    goes to the coarsest; every scale gets one iteration while the budget lasts."""
    sizes = [options.size]
    if multiscale_on(options):
        for k in range(1, 64):
            s = int(options.size / options.scale_ratio**k + 1e-6)  # ratio 2: exactly size // 2**k
            if s < options.multiscale_min_size or min(scaled_shape(content_hw, s)) < MIN_SIDE:
                break  # (the second: a very wide or tall image, no coarser scale deep enough for VGG-19)
            sizes.append(s)
        sizes.reverse()
    if options.iterations < len(sizes):  # fewer iterations than scales: keep the finest
        sizes = sizes[-options.iterations :]
    shares = [options.first_scale_share]
    for size in sizes[1:]:
        shares.append(1.0 if size <= FULL_SHARE_MAX_SIZE else min(1.0, shares[-1]) / options.scale_ratio)
    total_share = sum(shares)
    its = [max(1, int(options.iterations * sh / total_share)) for sh in shares]
    its[0] += options.iterations - sum(its)
    return [Scale(s, i) for s, i in zip(sizes, its)]


def shape_scale(scale: Scale, content_hw: Sequence[int], styles_hw: Sequence[Shape], style_scale: float) -> ScaleShape:
    """`scale` laid out for a content of `content_hw` and styles of `styles_hw`."""
    height, width = scaled_shape(content_hw, scale.size)
    styles = tuple(style_shape(s, (height, width), style_scale) for s in styles_hw)
    return ScaleShape(scale.size, scale.iterations, height, width, styles)


def shape_scales(
    options: ScaleOptions, content_hw: Sequence[int], styles_hw: Sequence[Shape]
) -> tuple[ScaleShape, ...]:
    """Every scale of the schedule (plan_scales), laid out."""
    scales = plan_scales(options, content_hw)
    return tuple(shape_scale(s, content_hw, styles_hw, options.style_scale) for s in scales)
