"""What a job costs, known before anything of it is decoded: the one place
that knows. Admission (the memory budget, what would fit), the tiling and
L-BFGS history choice, the `started` frame's estimate, the ETA and the metrics
all read it; admission also asks it what would fit in the time limit.

From the images' headers (`InputShapes`) and the options alone, per scale:

* output pixels P, and style pixels (each style sized by area: style_scale²·P);
* how the scale runs (`Tiling`): the whole image at once, or the network cut
  after block 2 or 3 with the part before the cut in tiles of T px (halo:
  the reach of that part's deepest layer) and the part after it whole or in
  tiles of its own (tiling.py). A tiled part runs forward twice and backward
  once per iteration (its Gram sums first, then the gradient), a whole part
  forward and backward once;
* work per iteration: VGG-19's multiply-adds per pixel of each part
  (layout.conv_macs_per_pixel) over the pixels its tiles cover, halos
  included, plus the extra regions' Gram matrices, and the activation values
  each pass writes (the wide early layers are bound by memory traffic, not
  multiply-adds); seconds = multiply-adds / the device's rate + values / its
  rate + a fixed cost per tile call;
* peak memory, the largest of
  - the optimization: the activations the backward pass keeps for the
    largest piece in flight (the whole image, or one tile with its halo:
    layout.activation_values_per_pixel of that part), times `keep`; plus the
    image-sized state: pixels, gradient, trial point, 2·m L-BFGS history
    vectors or Adam's 2 moments, the content targets and, when cut, the
    map handed between the parts and its gradient; plus the loss side
    (each term's declared share): loss layers' float32 maps beyond `keep`'s fit, the
    guided Gram's working set, and each mask region's guides and Grams;
  - the style pass: one style image's forward pass (two feature maps at
    once), in the same tiles when the scale is tiled.

The device figures (`Profile`) live in profiles.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from stylize_server.job import layout
from stylize_server.job.errors import TooLarge
from stylize_server.job.options import InputShapes, JobOptions, Optimizer, Scale, output_shape, plan_scales, style_shape
from stylize_server.job.profiles import GIB, Profile
from stylize_server.job.types import Estimate, ScaleEstimate


class TermCost(Protocol):
    """A loss term's share of the cost, as the term declares it (engine/terms),
    in float32 values: what it keeps at the image's resolution through a job
    (state), what its layers hold in a piece in flight (working), what it keeps
    and computes whatever the size (fixed), and what it computes per pixel beyond
    the network's passes (macs). `regions`: mask regions of a guided job, else 0."""

    def active(self, options: JobOptions) -> bool: ...

    def state_values_per_pixel(self, options: JobOptions, regions: int) -> float: ...

    def macs_per_pixel(self, options: JobOptions, regions: int) -> float: ...

    def working_values_per_pixel(
        self, options: JobOptions, regions: int, first_block: int, last_block: int
    ) -> float: ...

    def fixed_values(self, options: JobOptions, regions: int) -> float: ...

    def fixed_macs(self, options: JobOptions, regions: int) -> float: ...


Terms = Sequence[TermCost]


# Tiles tried from the largest down when the whole image does not fit; all
# multiples of the pooling grid.
TILE_SIZES = (1024, 768, 512, 384, 256, 192, 128)
# L-BFGS histories tried from the requested one down (jcjohnson uses 5 pairs
# for its largest outputs).
HISTORIES = (20, 10, 5)
# Where the network may be cut: after block 2 (the deep part holds 202 of the
# 610 activation values per pixel to relu5_1, but carries 74% of the work, run
# once) or after block 3 (74 values per pixel, 38% of the work).
SPLITS = (3, 2)


@dataclass(frozen=True)
class Tiling:
    """How one scale runs: tiles of `tile` px (0: the whole image); cut after
    block `split` (0: not cut), the part after the cut in tiles of `deep_tile` px (0: whole)."""

    tile: int = 0
    split: int = 0
    deep_tile: int = 0


@dataclass(frozen=True)
class Part:
    """A run of blocks as the cost model sees it."""

    first_block: int
    deepest: str  # the deepest layer it computes
    tile: int  # px; 0 = whole
    emits_next: bool


def deepest_layer(options: JobOptions) -> str:
    return layout.deepest([n for n, _ in options.content_layers] + [n for n, _ in options.style_layers])


def parts(deepest: str, tiling: Tiling) -> list[Part]:
    last = layout.block_of(deepest)
    if tiling.tile <= 0:
        return [Part(1, deepest, 0, False)]
    if not tiling.split or tiling.split >= last:
        return [Part(1, deepest, tiling.tile, False)]
    cut = layout.last_conv(tiling.split).replace("conv", "relu")
    return [Part(1, cut, tiling.tile, True), Part(tiling.split + 1, deepest, tiling.deep_tile, False)]


def halo_px(part: Part) -> int:
    """A part's tile halo in image pixels (its stage halo on the pooling grid)."""
    unit = 1 << (part.first_block - 1)
    align = max(1, layout.ALIGN >> (part.first_block - 1))
    reach = layout.stage_reach(part.deepest, part.first_block)
    return -(-reach // align) * align * unit


def tile_grid(height: int, width: int, tile: int) -> tuple[int, int]:
    """(rows, columns) of tiles of interior side `tile`."""
    return -(-height // tile), -(-width // tile)


def extents(height: int, width: int, tile: int, halo: int) -> list[int]:
    """Pixels each tile covers, halo included (clipped to the image)."""
    if tile <= 0 or tile >= max(height, width):
        return [height * width]
    rows, cols = tile_grid(height, width, tile)
    sides_y = [min(height, (r + 1) * tile + halo) - max(0, r * tile - halo) for r in range(rows)]
    sides_x = [min(width, (c + 1) * tile + halo) - max(0, c * tile - halo) for c in range(cols)]
    return [y * x for y in sides_y for x in sides_x]


def activation_bytes(height: int, width: int, deepest: str, profile: Profile, tiling: Tiling) -> int:
    """Activations the backward pass keeps for the largest piece in flight."""
    per_value = profile.value_bytes * profile.keep
    peak = 0.0
    for part in parts(deepest, tiling):
        values = layout.activation_values_per_pixel(part.deepest, part.first_block)
        if part.emits_next:
            values += layout.pooled_values_per_pixel(layout.block_of(part.deepest))
        peak = max(peak, max(extents(height, width, part.tile, halo_px(part))) * values * per_value)
    return int(peak)


def work(height: int, width: int, deepest: str, tiling: Tiling) -> tuple[float, float, int]:
    """(multiply-adds, activation values written, tile calls) of one
    iteration: forward and input gradient (about twice the forward) of each
    part, and one more forward for a tiled part (its Gram sums come before
    its gradient). The values count because the early layers are wide and
    cheap in multiply-adds: there the memory traffic sets the time."""
    macs, values, calls = 0.0, 0.0, 0
    cut = parts(deepest, tiling)
    for index, part in enumerate(cut):
        area = extents(height, width, part.tile, halo_px(part))
        tiled = len(area) > 1
        passes = 3.0 if tiled or (part.tile and index < len(cut) - 1) else 2.0
        macs += passes * layout.conv_macs_per_pixel(part.deepest, part.first_block) * sum(area)
        values += passes * layout.activation_values_per_pixel(part.deepest, part.first_block) * sum(area)
        calls += 2 * len(area) if passes == 3.0 else 1
    return macs, values, calls


def vector_bytes(
    height: int, width: int, options: JobOptions, history: int, regions: int, tiling: Tiling, terms: Terms
) -> int:
    """Image-sized state: pixels, gradient, trial point, optimizer state, the
    iterate average, what the loss terms keep (content targets, guides, ...), and
    when cut, the map between the parts (in the activations' precision, with a
    float32 gradient) and the tiled gradient's accumulator."""
    pixels = height * width
    vectors = 4 + (2 * history if options.optimizer is Optimizer.LBFGS else 2) + (1 if tiling.tile else 0)
    vectors += 1 if options.iterate_average.value == "ema" else 0
    kept = sum(t.state_values_per_pixel(options, regions) for t in terms if t.active(options))
    between = 0.0
    if tiling.tile and tiling.split:
        between = layout.pooled_values_per_pixel(tiling.split) * 2  # the map, its gradient (both at most 4 B)
    return int(pixels * (3 * vectors + kept + between) * 4)


def loss_bytes(height: int, width: int, options: JobOptions, regions: int, tiling: Tiling, terms: Terms) -> int:
    """The loss side of the largest piece in flight beyond what `keep` covers
    (it was fitted with the default job, so the default terms' maps are in
    it): the float32 maps of the loss terms' layers and their working sets
    (the guided Grams'), as each term declares them."""
    default = JobOptions()
    peak = 0.0
    for part in parts(deepest_layer(options), tiling):
        first, last = part.first_block, layout.block_of(part.deepest)
        mine = sum(t.working_values_per_pixel(options, regions, first, last) for t in terms if t.active(options))
        fitted = sum(t.working_values_per_pixel(default, 0, first, last) for t in terms if t.active(default))
        values = max(0.0, mine - fitted)
        peak = max(peak, max(extents(height, width, part.tile, halo_px(part))) * values * 4)
    return int(peak)


def style_pass_bytes(style_height: int, style_width: int, deepest: str, profile: Profile, tile: int) -> int:
    """One style image's forward pass: the widest two feature maps at once,
    for the whole image or its largest tile."""
    widest = max(
        layout.channels(n) / layout.stride(n) ** 2 for n in layout.CONV_LAYERS[: layout.conv_index(deepest) + 1]
    )
    piece = max(extents(style_height, style_width, tile, layout.halo(deepest) if tile else 0))
    return int(piece * widest * 2 * profile.value_bytes)


def scale_estimate(
    options: JobOptions,
    shapes: InputShapes,
    scale: Scale,
    regions: int,
    profile: Profile,
    tiling: Tiling,
    history: int,
    terms: Terms,
) -> ScaleEstimate:
    height, width = output_shape(options.replace(size=scale.size), shapes.content)
    deepest = deepest_layer(options)
    if tiling.tile and tiling.tile >= max(height, width):
        tiling = Tiling()
    if tiling.deep_tile and tiling.deep_tile >= max(height, width):
        tiling = Tiling(tiling.tile, tiling.split, 0)
    style_sizes = [style_shape(s, (height, width), options.style_scale) for s in shapes.styles]
    lbfgs = history if options.optimizer is Optimizer.LBFGS else 0
    # A guided job's terms work per mask region; an unguided job has none.
    guided = max(1, regions) if regions > 1 or any(m is not None for m in shapes.masks) else 0
    mine = [t for t in terms if t.active(options)]
    optimization = (
        activation_bytes(height, width, deepest, profile, tiling)
        + vector_bytes(height, width, options, lbfgs, guided, tiling, terms)
        + loss_bytes(height, width, options, guided, tiling, terms)
        + 4 * int(sum(t.fixed_values(options, guided) for t in mine))
    )
    styles = max(style_pass_bytes(h, w, deepest, profile, tiling.tile) for h, w in style_sizes)
    memory = max(optimization, styles) + profile.base_bytes
    macs, values, calls = work(height, width, deepest, tiling)
    # What the terms compute beyond the network (the extra regions' Grams, the W2's matrix work).
    term_macs = sum(height * width * t.macs_per_pixel(options, guided) + t.fixed_macs(options, guided) for t in mine)
    seconds = (
        (macs + term_macs) / (profile.gmacs_per_second * 1e9)
        + values / (profile.gvalues_per_second * 1e9)
        + (calls * profile.tile_seconds if tiling.tile else 0.0)
    )
    rows, cols = tile_grid(height, width, tiling.tile) if tiling.tile else (1, 1)
    return ScaleEstimate(
        size=scale.size,
        height=height,
        width=width,
        iterations=scale.iterations,
        style_pixels=sum(h * w for h, w in style_sizes),
        device_memory_bytes=int(memory),
        flops_per_iteration=2.0 * (macs + term_macs),
        seconds_per_iteration=seconds,
        tile_size=tiling.tile,
        tiles=rows * cols,
        lbfgs_history=lbfgs,
        split_block=tiling.split if tiling.tile else 0,
        deep_tile_size=tiling.deep_tile if tiling.tile and tiling.split else 0,
    )


def tilings(deepest: str, tile_setting: int) -> list[Tiling]:
    """The ways a scale may run: whole (unless tiles are forced), then each
    tile size cut after block 3 or 2 (the part after the cut whole or tiled)
    and uncut."""
    if tile_setting == 0:
        return [Tiling()]
    sizes = [tile_setting] if tile_setting > 0 else list(TILE_SIZES)
    out = [] if tile_setting > 0 else [Tiling()]
    last = layout.block_of(deepest)
    for tile in sizes:
        for split in SPLITS:
            if split < last:
                out += [Tiling(tile, split, 0), Tiling(tile, split, tile)]
        out.append(Tiling(tile))
    return out


def _candidates(
    options: JobOptions,
    shapes: InputShapes,
    scale: Scale,
    regions: int,
    profile: Profile,
    tile_setting: int,
    tiled: bool,
    terms: Terms,
) -> list[ScaleEstimate]:
    """Every (tiling, history) choice in order of preference, the whole image
    (`tiled` False) or in tiles: the whole image with the requested history,
    then shorter ones (tiling costs work, a shorter history only some
    convergence at the finest scales); tiled choices from the fastest, each
    with the longest history first."""
    histories = [options.lbfgs_history] + [h for h in HISTORIES if h < options.lbfgs_history]
    if options.optimizer is not Optimizer.LBFGS:
        histories = [options.lbfgs_history]
    out = [
        scale_estimate(options, shapes, scale, regions, profile, tiling, history, terms)
        for tiling in tilings(deepest_layer(options), tile_setting)
        if bool(tiling.tile) == tiled
        for history in histories
    ]
    if tiled:
        out.sort(key=lambda e: (round(e.seconds_per_iteration, 9), -e.lbfgs_history))
    return out


def estimate(
    options: JobOptions,
    shapes: InputShapes,
    profile: Profile,
    target_bytes: int,
    budget_bytes: int,
    tile_setting: int = -1,
    regions: int = 1,
    *,
    terms: Terms,
) -> Estimate:
    """The job's cost with, per scale, the first choice (see _candidates)
    whose memory fits `target_bytes` (a job's share of the budget). Raises
    TooLarge when even the smallest choice exceeds the whole `budget_bytes`.
    `tile_setting`: -1 the model chooses, 0 never tile, N tiles of N px."""
    scales: list[ScaleEstimate] = []
    for scale in plan_scales(options, shapes.content):
        # The whole image first: when it fits, the tiled choices (most of the
        # work of pricing a job, which admission does on the event loop) are
        # never priced.
        candidates = _candidates(options, shapes, scale, regions, profile, tile_setting, False, terms)
        chosen = next((c for c in candidates if c.device_memory_bytes <= target_bytes), None)
        if chosen is None:
            candidates += _candidates(options, shapes, scale, regions, profile, tile_setting, True, terms)
            fitting = [c for c in candidates if c.device_memory_bytes <= target_bytes]
            chosen = fitting[0] if fitting else min(candidates, key=lambda c: c.device_memory_bytes)
        if chosen.device_memory_bytes > budget_bytes:
            raise TooLarge("size", _never_fits(options, shapes, chosen, budget_bytes, profile, terms))
        scales.append(chosen)
    return Estimate(
        input_pixels=shapes.pixels,
        scales=tuple(scales),
        device_memory_bytes=max(s.device_memory_bytes for s in scales),
        flops=sum(s.flops_per_iteration * s.iterations for s in scales),
        seconds=sum(s.seconds_per_iteration * s.iterations for s in scales),
    )


def _never_fits(
    options: JobOptions, shapes: InputShapes, best: ScaleEstimate, budget: int, profile: Profile, terms: Terms
) -> str:
    fit = largest_size_that_fits(options, shapes, budget, profile, terms)
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


def largest_size_that_fits(
    options: JobOptions, shapes: InputShapes, budget: int, profile: Profile, terms: Terms
) -> int:
    """The largest `size` (multiple of 16) whose finest scale fits `budget`, or 0."""
    lo, hi, best = layout.MIN_SIDE, options.size, 0
    while lo <= hi:
        mid = (lo + hi) // 2 // layout.ALIGN * layout.ALIGN or layout.ALIGN
        probe = options.replace(size=mid, multiscale=False)
        every = [
            c
            for tiled in (False, True)
            for c in _candidates(probe, shapes, Scale(mid, 1), 1, profile, -1, tiled, terms)
        ]
        smallest = min(c.device_memory_bytes for c in every)
        if smallest <= budget:
            best, lo = mid, mid + layout.ALIGN
        else:
            hi = mid - layout.ALIGN
    return best


def describe(scale: ScaleEstimate) -> str:
    """How a scale runs, for logs: "whole" or "tiles 512 px, cut after block 3 (rest whole)"."""
    if not scale.tile_size:
        return "whole"
    text = f"{scale.tiles} tiles of {scale.tile_size} px"
    if scale.split_block:
        rest = f"tiles of {scale.deep_tile_size} px" if scale.deep_tile_size else "whole"
        text += f", cut after block {scale.split_block} (rest {rest})"
    return text
