"""What a job costs, known before anything of it is decoded: the one place
that knows. Admission (the memory budget, what would fit), the tiling and
L-BFGS history choice, the `started` frame's estimate, the ETA and the metrics
all read it; admission also asks it what would fit in the time limit.

From the images' headers (`InputShapes`) and the options alone, per scale:

* output pixels P, and style pixels (each style sized by area: style_scale²·P);
* how the scale runs (tilings.py: whole, or cut and in tiles). A tiled part
  runs forward twice and backward once per iteration (its Gram sums first,
  then the gradient), a whole part forward and backward once;
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

What does not change between the choices is read once per job: the scales'
sizes (geometry.py), each part's network figures (tilings.py) and the loss
terms' shares (`Shares`). The device figures (`Profile`) live in profiles.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from stylize_server.job import geometry, layout
from stylize_server.job.errors import TooLarge
from stylize_server.job.geometry import Scale, ScaleShape
from stylize_server.job.options import InputShapes, JobOptions, Optimizer
from stylize_server.job.profiles import GIB, Profile
from stylize_server.job.tilings import Part, Tiling, run, tilings
from stylize_server.job.types import Estimate, ScaleEstimate


class TermCost(Protocol):
    """A loss term's share of the cost, as the term declares it (engine/terms),
    in float32 values: what it keeps at the image's resolution through a job
    (state), what its layers hold in a piece in flight (working), what it keeps
    and computes whatever the size (fixed), and what it computes per pixel beyond
    the network's passes (macs). `regions`: mask regions of a guided job, else 0.
    None of them depends on the size: a job asks them once (`Shares`)."""

    def active(self, options: JobOptions) -> bool: ...

    def state_values_per_pixel(self, options: JobOptions, regions: int) -> float: ...

    def macs_per_pixel(self, options: JobOptions, regions: int) -> float: ...

    def working_values_per_pixel(
        self, options: JobOptions, regions: int, first_block: int, last_block: int
    ) -> float: ...

    def fixed_values(self, options: JobOptions, regions: int) -> float: ...

    def fixed_macs(self, options: JobOptions, regions: int) -> float: ...


Terms = Sequence[TermCost]

# L-BFGS histories tried from the requested one down (jcjohnson uses 5 pairs
# for its largest outputs).
HISTORIES = (20, 10, 5)
BLOCKS = range(1, len(layout.BLOCK_SIZES) + 1)


@dataclass(frozen=True)
class Shares:
    """The active loss terms' shares of a job's cost (TermCost), asked once
    per job: none of them depends on the size or the tiling. `loss_values`:
    per (first, last) block of a part, the values per pixel of the terms'
    maps and working sets beyond what `keep` covers (it was fitted with the
    default job, so the default terms' maps are in it)."""

    state_values: float  # per pixel, through the job
    fixed_values: float
    macs: tuple[tuple[float, float], ...]  # per term: (per pixel, whatever the size)
    loss_values: Mapping[tuple[int, int], float]

    @classmethod
    def of(cls, terms: Terms, options: JobOptions, regions: int) -> Shares:
        mine = [t for t in terms if t.active(options)]
        default = JobOptions()
        fitted = [t for t in terms if t.active(default)]
        loss: dict[tuple[int, int], float] = {}
        for first in BLOCKS:
            for last in BLOCKS[first - 1 :]:
                values = sum(t.working_values_per_pixel(options, regions, first, last) for t in mine)
                keep_fit = sum(t.working_values_per_pixel(default, 0, first, last) for t in fitted)
                loss[first, last] = max(0.0, values - keep_fit)
        return cls(
            state_values=sum(t.state_values_per_pixel(options, regions) for t in mine),
            fixed_values=sum(t.fixed_values(options, regions) for t in mine),
            macs=tuple((t.macs_per_pixel(options, regions), t.fixed_macs(options, regions)) for t in mine),
            loss_values=loss,
        )


def guided_regions(regions: int, shapes: InputShapes) -> int:
    """The regions a guided job's terms work per; an unguided job has none (0)."""
    return max(1, regions) if regions > 1 or any(m is not None for m in shapes.masks) else 0


def deepest_layer(options: JobOptions) -> str:
    return layout.deepest([n for n, _ in options.content_layers] + [n for n, _ in options.style_layers])


def activation_bytes(cut: Sequence[Part], profile: Profile) -> int:
    """Activations the backward pass keeps for the largest piece in flight."""
    per_value = profile.value_bytes * profile.keep
    peak = 0.0
    for part in cut:
        values = part.values_per_pixel + part.emitted_per_pixel
        peak = max(peak, max(part.pieces) * values * per_value)
    return int(peak)


def work(cut: Sequence[Part]) -> tuple[float, float, int]:
    """(multiply-adds, activation values written, tile calls) of one
    iteration: forward and input gradient (about twice the forward) of each
    part, and one more forward for a tiled part (its Gram sums come before
    its gradient). The values count because the early layers are wide and
    cheap in multiply-adds: there the memory traffic sets the time."""
    macs, values, calls = 0.0, 0.0, 0
    for index, part in enumerate(cut):
        area = part.pieces
        tiled = len(area) > 1
        passes = 3.0 if tiled or (part.tile and index < len(cut) - 1) else 2.0
        macs += passes * part.macs_per_pixel * sum(area)
        values += passes * part.values_per_pixel * sum(area)
        calls += 2 * len(area) if passes == 3.0 else 1
    return macs, values, calls


def vector_bytes(
    height: int,
    width: int,
    options: JobOptions,
    history: int,
    shares: Shares,
    tiled: bool = False,
    between_per_pixel: float = 0.0,
) -> int:
    """Image-sized state: pixels, gradient, trial point, optimizer state, the
    iterate average, what the loss terms keep (content targets, guides, ...), and
    when tiled, the gradient's accumulator and, when cut, the map between the
    parts (Run.between_per_pixel, in the activations' precision, with a float32
    gradient)."""
    pixels = height * width
    vectors = 4 + (2 * history if options.optimizer is Optimizer.LBFGS else 2) + (1 if tiled else 0)
    vectors += 1 if options.iterate_average.value == "ema" else 0
    between = between_per_pixel * 2  # the map, its gradient (both at most 4 B)
    return int(pixels * (3 * vectors + shares.state_values + between) * 4)


def loss_bytes(cut: Sequence[Part], shares: Shares) -> int:
    """The loss side of the largest piece in flight beyond what `keep` covers
    (Shares.loss_values): the float32 maps of the loss terms' layers and their
    working sets (the guided Grams'), as each term declares them."""
    peak = 0.0
    for part in cut:
        values = shares.loss_values[part.first_block, part.last_block]
        peak = max(peak, max(part.pieces) * values * 4)
    return int(peak)


def style_pass_bytes(piece: int, deepest: str, profile: Profile) -> int:
    """One style image's forward pass: the widest two feature maps at once,
    for its largest piece (`piece` pixels: the whole image or its largest tile)."""
    widest = max(
        layout.channels(n) / layout.stride(n) ** 2 for n in layout.CONV_LAYERS[: layout.conv_index(deepest) + 1]
    )
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
    """One scale with one tiling and history, priced on its own (tests, benchmarks)."""
    laid = geometry.shape_scale(scale, shapes.content, shapes.styles, options.style_scale)
    shares = Shares.of(terms, options, guided_regions(regions, shapes))
    return price_scale(options, deepest_layer(options), shares, laid, profile, tiling, history)


def price_scale(
    options: JobOptions,
    deepest: str,
    shares: Shares,
    scale: ScaleShape,
    profile: Profile,
    tiling: Tiling,
    history: int,
) -> ScaleEstimate:
    height, width = scale.height, scale.width
    laid = run(scale, deepest, tiling)
    tiling, cut = laid.tiling, laid.parts
    lbfgs = history if options.optimizer is Optimizer.LBFGS else 0
    optimization = (
        activation_bytes(cut, profile)
        + vector_bytes(height, width, options, lbfgs, shares, bool(tiling.tile), laid.between_per_pixel)
        + loss_bytes(cut, shares)
        + 4 * int(shares.fixed_values)
    )
    styles = max(style_pass_bytes(piece, deepest, profile) for piece in laid.style_pieces)
    memory = max(optimization, styles) + profile.base_bytes
    macs, values, calls = work(cut)
    # What the terms compute beyond the network (the extra regions' Grams, the W2's matrix work).
    term_macs = sum(height * width * per_pixel + fixed for per_pixel, fixed in shares.macs)
    seconds = (
        (macs + term_macs) / (profile.gmacs_per_second * 1e9)
        + values / (profile.gvalues_per_second * 1e9)
        + (calls * profile.tile_seconds if tiling.tile else 0.0)
    )
    return ScaleEstimate(
        size=scale.size,
        height=height,
        width=width,
        iterations=scale.iterations,
        style_pixels=sum(h * w for h, w in scale.styles),
        device_memory_bytes=int(memory),
        flops_per_iteration=2.0 * (macs + term_macs),
        seconds_per_iteration=seconds,
        tile_size=tiling.tile,
        tiles=laid.tiles,
        lbfgs_history=lbfgs,
        split_block=tiling.split if tiling.tile else 0,
        deep_tile_size=tiling.deep_tile if tiling.tile and tiling.split else 0,
    )


def _candidates(
    options: JobOptions,
    deepest: str,
    shares: Shares,
    scale: ScaleShape,
    profile: Profile,
    tile_setting: int,
    tiled: bool,
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
        price_scale(options, deepest, shares, scale, profile, tiling, history)
        for tiling in tilings(deepest, tile_setting)
        if bool(tiling.tile) == tiled
        for history in histories
    ]
    if tiled:
        out.sort(key=lambda e: (round(e.seconds_per_iteration, 9), -e.lbfgs_history))
    return out


@dataclass(frozen=True)
class Pricing:
    """How a job on these images is priced, the options aside: the plan and
    every alternative asked of it (what would fit the time limit) are priced
    by one such object. See `estimate` for its fields."""

    shapes: InputShapes
    profile: Profile
    target_bytes: int
    budget_bytes: int
    tile_setting: int
    regions: int
    terms: Terms

    def estimate(self, options: JobOptions) -> Estimate:
        """The estimate of these (resolved) options."""
        return estimate(
            options,
            self.shapes,
            self.profile,
            self.target_bytes,
            self.budget_bytes,
            self.tile_setting,
            self.regions,
            terms=self.terms,
        )


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
    deepest = deepest_layer(options)
    shares = Shares.of(terms, options, guided_regions(regions, shapes))
    scales: list[ScaleEstimate] = []
    for scale in geometry.shape_scales(options, shapes.content, shapes.styles):
        # The whole image first: when it fits, the tiled choices (most of the
        # work of pricing a job, which admission does on the event loop) are
        # never priced.
        candidates = _candidates(options, deepest, shares, scale, profile, tile_setting, False)
        chosen = next((c for c in candidates if c.device_memory_bytes <= target_bytes), None)
        if chosen is None:
            candidates += _candidates(options, deepest, shares, scale, profile, tile_setting, True)
            fitting = [c for c in candidates if c.device_memory_bytes <= target_bytes]
            chosen = fitting[0] if fitting else min(candidates, key=lambda c: c.device_memory_bytes)
        if chosen.device_memory_bytes > budget_bytes:
            # Priced as one scale with one region at sizes down to the smallest.
            alone = Shares.of(terms, options, guided_regions(1, shapes))
            message = _never_fits(options, shapes, deepest, alone, chosen, budget_bytes, profile)
            raise TooLarge("size", message)
        scales.append(chosen)
    return Estimate(
        input_pixels=shapes.pixels,
        scales=tuple(scales),
        device_memory_bytes=max(s.device_memory_bytes for s in scales),
        flops=sum(s.flops_per_iteration * s.iterations for s in scales),
        seconds=sum(s.seconds_per_iteration * s.iterations for s in scales),
    )


def _never_fits(
    options: JobOptions,
    shapes: InputShapes,
    deepest: str,
    shares: Shares,
    best: ScaleEstimate,
    budget: int,
    profile: Profile,
) -> str:
    fit = largest_size_that_fits(options, shapes, deepest, shares, budget, profile)
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
    options: JobOptions, shapes: InputShapes, deepest: str, shares: Shares, budget: int, profile: Profile
) -> int:
    """The largest `size` (multiple of 16) whose finest scale fits `budget`, or 0."""
    lo, hi, best = layout.MIN_SIDE, options.size, 0
    while lo <= hi:
        mid = (lo + hi) // 2 // layout.ALIGN * layout.ALIGN or layout.ALIGN
        probe = options.replace(size=mid, multiscale=False)
        scale = geometry.shape_scale(Scale(mid, 1), shapes.content, shapes.styles, options.style_scale)
        every = [c for tiled in (False, True) for c in _candidates(probe, deepest, shares, scale, profile, -1, tiled)]
        smallest = min(c.device_memory_bytes for c in every)
        if smallest <= budget:
            best, lo = mid, mid + layout.ALIGN
        else:
            hi = mid - layout.ALIGN
    return best
