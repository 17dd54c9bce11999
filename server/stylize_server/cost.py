"""What a job costs, known before anything of it is decoded: the one place
that knows. Admission (the memory budget, what would fit), the tiling and
L-BFGS history choice, the `started` frame's estimate, the ETA and the metrics
all read it.

From the images' headers (`InputShapes`) and the options alone, per scale:

* output pixels P, and style pixels (each style sized by area: style_scale²·P);
* work per iteration: VGG-19's multiply-adds per pixel up to the deepest loss
  layer D (layout.conv_macs_per_pixel), forward plus input gradient, times the
  tiles' halo overhead; seconds = work / the device's measured rate;
* peak device memory, the largest of
  - the optimization: the activations the backward pass keeps
    (layout.activation_values_per_pixel(D) per pixel, for the whole image or
    one tile with its halo), times `keep`; plus the image-sized vectors
    (the pixels, the gradient, 2·m L-BFGS history vectors or Adam's 2
    moments, the content targets, the style guides);
  - the style pass: one style image's forward pass (two feature maps at once).

The device figures (`Profile`) are fitted to measurements: `make bench` prints
estimated against measured memory and seconds per iteration over a grid of
sizes, and the README quotes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import layout
from .errors import TooLarge
from .options import (
    InputShapes,
    JobOptions,
    Optimizer,
    Scale,
    output_shape,
    plan_scales,
    style_shape,
)
from .types import Estimate, ScaleEstimate

MIB = 1 << 20
GIB = 1 << 30
# Tiles tried from the largest down when the whole image does not fit; all
# multiples of the pooling grid.
TILE_SIZES = (1024, 768, 512, 384, 256, 192, 128)
# L-BFGS histories tried from the requested one down (jcjohnson uses 5 pairs
# for its largest outputs).
HISTORIES = (20, 10, 5)
# Deep layers run on the pooled map of blocks 1-3 (1/64 of the pixels) in one
# piece: only blocks 1-3 are tiled with this halo (conv3_4's reach, rounded).
SHALLOW_END = "relu3_4"


@dataclass(frozen=True)
class Profile:
    """How one kind of device runs the network, as measured."""

    kind: str = "CPU"
    precision: str = "float32"
    gmacs_per_second: float = 200.0  # forward multiply-adds per second, whole-image steps
    keep: float = 2.0  # bytes held per activation value, in units of the value's own size
    base_bytes: int = 96 * MIB  # per job, whatever its size (buffers, compiled scratch)

    @property
    def value_bytes(self) -> int:
        return 2 if self.precision == "bfloat16" else 4


# Calibrated with `make bench` (cost table); see the README's Benchmarks.
PROFILES: dict[tuple[str, str], Profile] = {
    ("CPU", "float32"): Profile("CPU", "float32", gmacs_per_second=110.0, keep=2.0),
    ("CPU", "bfloat16"): Profile("CPU", "bfloat16", gmacs_per_second=200.0, keep=2.0),
    ("GPU", "float32"): Profile("GPU", "float32", gmacs_per_second=20_000.0, keep=2.0),
    ("GPU", "bfloat16"): Profile("GPU", "bfloat16", gmacs_per_second=40_000.0, keep=2.0),
}


def profile_for(kind: str, precision: str) -> Profile:
    return PROFILES.get((kind, precision), Profile(kind, precision))


def deepest_layer(options: JobOptions) -> str:
    return layout.deepest([n for n, _ in options.content_layers] + [n for n, _ in options.style_layers])


def tile_grid(height: int, width: int, tile: int) -> tuple[int, int]:
    """(rows, columns) of tiles of interior side `tile`."""
    return -(-height // tile), -(-width // tile)


def _tiled_extent(tile: int, halo: int, length: int) -> int:
    """Pixels one tile covers along an axis of `length`, halo included."""
    return min(length, tile + 2 * halo)


def activation_bytes(height: int, width: int, deepest: str, profile: Profile, tile: int) -> int:
    """Activations the backward pass keeps, for the whole image (tile 0) or
    for the largest tile of the two-stage tiling: blocks 1-3 in tiles with
    conv3_4's halo, blocks 4-5 on their pooled map, tiled by the same count."""
    per_value = profile.value_bytes * profile.keep
    total_values = layout.activation_values_per_pixel(deepest)
    if tile <= 0:
        return int(height * width * total_values * per_value)
    shallow_end = deepest if layout.layer_index(deepest) <= layout.layer_index(SHALLOW_END) else SHALLOW_END
    shallow = layout.activation_values_per_pixel(shallow_end)
    halo = layout.halo(shallow_end)
    ty, tx = _tiled_extent(tile, halo, height), _tiled_extent(tile, halo, width)
    shallow_bytes = ty * tx * shallow * per_value
    deep_values = total_values - shallow
    if deep_values <= 0:
        return int(shallow_bytes)
    deep_halo = layout.halo(deepest)
    dy, dx = _tiled_extent(tile, deep_halo, height), _tiled_extent(tile, deep_halo, width)
    return int(max(shallow_bytes, dy * dx * deep_values * per_value))


def work_macs(height: int, width: int, deepest: str, tile: int) -> float:
    """Multiply-adds of one iteration: forward and input gradient (about twice
    the forward); tiled, the forward runs twice (once for the global Gram
    matrices, once under the gradient tape) over tiles enlarged by their halo."""
    macs = layout.conv_macs_per_pixel(deepest)
    if tile <= 0:
        return 2.0 * macs * height * width
    rows, cols = tile_grid(height, width, tile)
    halo = layout.halo(min(deepest, SHALLOW_END, key=layout.layer_index))
    covered = 0.0
    for r in range(rows):
        th = min(tile, height - r * tile)
        ey = th + halo * ((r > 0) + (r < rows - 1))
        for c in range(cols):
            tw = min(tile, width - c * tile)
            ex = tw + halo * ((c > 0) + (c < cols - 1))
            covered += ey * ex
    return 3.0 * macs * covered


def vector_bytes(height: int, width: int, options: JobOptions, history: int, regions: int) -> int:
    """Image-sized state: pixels, gradient, trial point and optimizer state,
    content targets at their layers, and one guide per style region."""
    pixels = height * width
    vectors = 4 + (2 * history if options.optimizer is Optimizer.LBFGS else 2)
    content = sum(layout.channels(n) / layout.stride(n) ** 2 for n, _ in options.content_layers)
    guides = regions if regions > 1 else 0
    return int(pixels * (3 * vectors + content + guides) * 4)


def style_pass_bytes(style_pixels_max: int, deepest: str, profile: Profile) -> int:
    widest = max(
        layout.channels(n) / layout.stride(n) ** 2 for n in layout.CONV_LAYERS[: layout.conv_index(deepest) + 1]
    )
    return int(style_pixels_max * widest * 2 * profile.value_bytes)


def scale_estimate(
    options: JobOptions,
    shapes: InputShapes,
    scale: Scale,
    regions: int,
    profile: Profile,
    tile: int,
    history: int,
) -> ScaleEstimate:
    height, width = output_shape(options.replace(size=scale.size), shapes.content)
    deepest = deepest_layer(options)
    style_sizes = [style_shape(s, (height, width), options.style_scale) for s in shapes.styles]
    style_pixels = [h * w for h, w in style_sizes]
    if tile and tile >= max(height, width):
        tile = 0
    lbfgs = history if options.optimizer is Optimizer.LBFGS else 0
    memory = (
        max(
            activation_bytes(height, width, deepest, profile, tile)
            + vector_bytes(height, width, options, lbfgs, regions),
            style_pass_bytes(max(style_pixels), deepest, profile) if not tile else 0,
        )
        + profile.base_bytes
    )
    macs = work_macs(height, width, deepest, tile)
    # The Gram matrices of extra regions, forward and backward.
    style_names = [n for n, _ in options.style_layers]
    gram_macs = (
        3.0
        * max(0, regions - 1)
        * sum(height * width / layout.stride(n) ** 2 * layout.channels(n) ** 2 for n in style_names)
    )
    flops = 2.0 * (macs + gram_macs)
    rows, cols = tile_grid(height, width, tile) if tile else (1, 1)
    return ScaleEstimate(
        size=scale.size,
        height=height,
        width=width,
        iterations=scale.iterations,
        style_pixels=sum(style_pixels),
        device_memory_bytes=int(memory),
        flops_per_iteration=flops,
        seconds_per_iteration=(macs + gram_macs) / (profile.gmacs_per_second * 1e9),
        tile_size=tile,
        tiles=rows * cols,
        lbfgs_history=lbfgs,
        split_block=3 if tile and layout.block_of(deepest) > 3 else 0,
    )


def _choices(options: JobOptions, tile_setting: int) -> list[tuple[int, int]]:
    """(tile, history) pairs in order of preference."""
    histories = [options.lbfgs_history] + [h for h in HISTORIES if h < options.lbfgs_history]
    if options.optimizer is not Optimizer.LBFGS:
        histories = [options.lbfgs_history]
    if tile_setting > 0:
        tiles = [tile_setting]
    elif tile_setting == 0:
        tiles = [0]
    else:
        tiles = [0, *TILE_SIZES]
    # Whole image with a shorter history before tiles: tiling costs work, a
    # shorter history costs some convergence only at the finest scales.
    return [(t, h) for t in tiles for h in histories]


def estimate(
    options: JobOptions,
    shapes: InputShapes,
    profile: Profile,
    target_bytes: int,
    budget_bytes: int,
    tile_setting: int = -1,
    regions: int = 1,
) -> Estimate:
    """The job's cost with, per scale, the first (tile, history) choice whose
    memory fits `target_bytes` (a job's share of the budget). Raises TooLarge
    when even the smallest choice exceeds the whole `budget_bytes`."""
    scales: list[ScaleEstimate] = []
    for scale in plan_scales(options, shapes.content):
        candidates = [
            scale_estimate(options, shapes, scale, regions, profile, t, h) for t, h in _choices(options, tile_setting)
        ]
        fitting = [c for c in candidates if c.device_memory_bytes <= target_bytes]
        chosen = fitting[0] if fitting else min(candidates, key=lambda c: c.device_memory_bytes)
        if chosen.device_memory_bytes > budget_bytes:
            raise TooLarge("size", _never_fits(options, shapes, chosen, budget_bytes, profile))
        scales.append(chosen)
    flops = sum(s.flops_per_iteration * s.iterations for s in scales)
    seconds = sum(s.seconds_per_iteration * s.iterations for s in scales)
    return Estimate(
        input_pixels=shapes.pixels,
        scales=tuple(scales),
        device_memory_bytes=max(s.device_memory_bytes for s in scales),
        flops=flops,
        seconds=seconds,
    )


def _never_fits(options: JobOptions, shapes: InputShapes, best: ScaleEstimate, budget: int, profile: Profile) -> str:
    fit = largest_size_that_fits(options, shapes, budget, profile)
    hints = [f"size {fit} or less" if fit else "a smaller size"]
    if len(shapes.styles) > 1 or options.style_scale > 1:
        hints.append("fewer or smaller styles (style_scale)")
    if options.optimizer is Optimizer.LBFGS:
        hints.append("optimizer adam")
    return (
        f"the job needs an estimated {best.device_memory_bytes / GIB:.2f} GiB of device memory at "
        f"{best.width}x{best.height} even in tiles, over this server's budget of {budget / GIB:.2f} GiB; "
        f"what would fit: {', or '.join(hints)}"
    )


def largest_size_that_fits(options: JobOptions, shapes: InputShapes, budget: int, profile: Profile) -> int:
    """The largest `size` (multiple of 16) whose finest scale fits `budget`, or 0."""
    lo, hi, best = layout.MIN_SIDE, options.size, 0
    while lo <= hi:
        mid = (lo + hi) // 2 // layout.ALIGN * layout.ALIGN or layout.ALIGN
        probe = options.replace(size=mid, multiscale=False)
        smallest = min(
            scale_estimate(probe, shapes, Scale(mid, 1), 1, profile, t, h).device_memory_bytes
            for t, h in _choices(probe, -1)
        )
        if smallest <= budget:
            best, lo = mid, mid + layout.ALIGN
        else:
            hi = mid - layout.ALIGN
    return best


def eta_seconds(estimate: Estimate, scale_index: int, done_in_scale: int, measured: float, predicted: float) -> float:
    """Seconds left: the model's remaining work scaled by how fast this job has
    really run so far (measured / predicted seconds), so the ratio carries
    across scales of different cost."""
    ratio = measured / predicted if predicted > 0 and measured > 0 else 1.0
    return estimate.seconds_left(scale_index, done_in_scale, ratio)


def round_up(value: int, to: int) -> int:
    return int(math.ceil(value / to) * to)
