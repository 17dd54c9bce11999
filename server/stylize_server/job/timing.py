"""A job's time, read from its estimate: what fits a time limit (fewer
iterations at the same size, or a smaller size) for admission's refusal, and
the ETA that progress frames report. cost.py prices; this reads the prices."""

from __future__ import annotations

import math
from collections.abc import Callable

from stylize_server.job import layout
from stylize_server.job.errors import TooLarge
from stylize_server.job.options import InputShapes, JobOptions, plan_scales
from stylize_server.job.types import Estimate


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


def size_within(options: JobOptions, spent: float, seconds: float, seconds_at: Callable[[JobOptions], float]) -> int:
    """A `size` (multiple of 16) at which the job, with its iterations, is
    estimated at most `seconds`, given that at its own size it is estimated
    at `spent`; 0 when none is. Time grows about with the pixels, so the
    first guess scales the side by the square root of the time ratio;
    `seconds_at` (the estimate with other options) checks it, at most four
    times, each miss shrinking the guess by what it missed by. Bounded,
    because admission asks this on the event loop."""
    size = options.size
    for _ in range(4):
        size = int(size * math.sqrt(seconds / spent) * 0.97) // layout.ALIGN * layout.ALIGN
        if size < layout.MIN_SIDE:
            return 0
        try:
            spent = seconds_at(options.replace(size=size))
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
