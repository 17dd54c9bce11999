"""A job's time, read from its estimate: the time per job's check, with what
fits the limit (fewer iterations at the same size, or a smaller size, priced
by the job's own `cost.Pricing`) for admission's refusal, and the ETA that progress
frames report. cost.py prices; this reads the prices."""

from __future__ import annotations

import math
from collections.abc import Callable

from stylize_server.job import layout
from stylize_server.job.cost import Pricing
from stylize_server.job.errors import OverTimeLimit, TooLarge
from stylize_server.job.geometry import plan_scales
from stylize_server.job.options import InputShapes, JobOptions
from stylize_server.job.types import Estimate

Compiling = Callable[[JobOptions, Estimate], float]


def check_time(
    pricing: Pricing,
    options: JobOptions,
    estimate: Estimate,
    limit: float,
    accept_partial: bool,
    compiling: Compiling,
) -> None:
    """Refuse (OverTimeLimit) a job whose estimate, its compiling included,
    is over the time per job `limit`: it would be stopped there. With
    `accept_partial` it runs until the limit instead, unless not even its
    first iteration fits. The message names the estimate, the limit and what
    would fit, priced by `pricing` (the one that made `estimate` of these
    resolved `options`). `compiling`: the seconds of compiling a job needs
    (engine.compile_seconds)."""
    compile_seconds = compiling(options, estimate)
    total = compile_seconds + estimate.seconds
    if total <= limit:
        return
    first = compile_seconds + estimate.scales[0].seconds_per_iteration
    if accept_partial and first <= limit:
        return
    room = limit - compile_seconds
    fits: list[str] = []
    field = "size"
    if room > 0:
        iterations = most_iterations_within(options, pricing.shapes, estimate, room)
        if iterations and not accept_partial:
            fits.append(f"iterations {iterations} or fewer")
            field = "iterations"
        size = size_within(options.size, total, limit, lambda s: _seconds(options.replace(size=s), pricing, compiling))
        if size:
            fits.append(f"size {size} (with {estimate.total_iterations} iterations)")
    if not accept_partial and first <= limit:
        fits.append("accept_partial, for the best image after the limit")
    plus = f" + {compile_seconds:.1f} s compiling" if compile_seconds else ""
    if accept_partial:
        told = f"not even one iteration fits: the first is estimated at {first:.1f} s"
        told += f" ({estimate.scales[0].seconds_per_iteration:.2f} s{plus})"
    else:
        told = f"the job is estimated at {total:.1f} s ({estimate.seconds:.1f} s of {estimate.total_iterations}"
        told += f" iterations{plus})"
    if fits:
        hint = f"what would fit: {', or '.join(fits)}"
    elif room <= 0:
        hint = "compiling alone is over it (a job with layers and pooling this server already ran compiles nothing)"
    else:
        hint = "no size or number of iterations fits"
    raise OverTimeLimit(field, f"{told}, over this server's limit of {limit:g} s per job (--max-job-seconds); {hint}")


def _seconds(options: JobOptions, pricing: Pricing, compiling: Compiling) -> float:
    estimate = pricing.estimate(options)
    return estimate.seconds + compiling(options, estimate)


def iterations_seconds(options: JobOptions, shapes: InputShapes, estimate: Estimate, iterations: int) -> float:
    """The estimated seconds of the job with `iterations` instead, at the same
    sizes (fewer iterations than scales keep the finest: plan_scales)."""
    per_iteration = {s.size: s.seconds_per_iteration for s in estimate.scales}
    scales = plan_scales(options.replace(iterations=iterations), shapes.content)
    return sum(per_iteration[s.size] * s.iterations for s in scales)


def most_iterations_within(options: JobOptions, shapes: InputShapes, estimate: Estimate, seconds: float) -> int:
    """The most iterations, fewer than the estimate's, whose estimated time
    at the same size is at most `seconds`; 0 when not even one fits."""
    lo, hi, best = 1, estimate.total_iterations - 1, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if iterations_seconds(options, shapes, estimate, mid) <= seconds:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def size_within(size: int, spent: float, seconds: float, seconds_at: Callable[[int], float]) -> int:
    """A `size` (multiple of 16) at which the job, with its iterations, is
    estimated at most `seconds`, given that at its own `size` it is estimated
    at `spent`; 0 when none is. Time grows about with the pixels, so the
    first guess scales the side by the square root of the time ratio;
    `seconds_at` (the estimate at another size) checks it, at most four
    times, each miss shrinking the guess by what it missed by. Bounded,
    because admission asks this on the event loop."""
    for _ in range(4):
        size = int(size * math.sqrt(seconds / spent) * 0.97) // layout.ALIGN * layout.ALIGN
        if size < layout.MIN_SIDE:
            return 0
        try:
            spent = seconds_at(size)
        except TooLarge:
            continue
        if spent <= seconds:
            return size
    return 0


def eta_seconds(estimate: Estimate, scale_index: int, done_in_scale: int, measured: float, predicted: float) -> float:
    """Seconds left: the model's remaining work scaled by how fast this job has
    really run so far (measured / predicted seconds), so the ratio carries
    across scales of different cost."""
    ratio = measured / predicted if predicted > 0 and measured > 0 else 1.0
    return estimate.seconds_left(scale_index, done_in_scale, ratio)
