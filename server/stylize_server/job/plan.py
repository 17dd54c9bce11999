"""A job as admission plans it, and as the engine runs it: resolved options
(defaults filled in) and the cost model's
estimate, whose scales say each scale's size, iterations, tiling and L-BFGS
history; then, once the images are decoded, the inputs.

A `Planner` is the one place that resolves and prices: it holds everything
but the options (the images' shapes, the engine's defaults and loss terms,
the device, the budget), so that the plan and every other pricing asked of
it (what would fit the time limit: timing.py) are priced alike. Admission
plans from the images' headers before anything is decoded; the engine's
Python API with decoded images. Nothing after it resolves or estimates
again: the `started` frame, the scheduler's budget, the ETA and the engine
all read the same plan."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from stylize_server.job import cost
from stylize_server.job.layout import Pooling
from stylize_server.job.options import Inputs, InputShapes, JobOptions, TermValue, resolve
from stylize_server.job.profiles import Profile
from stylize_server.job.types import Estimate, ScaleEstimate

UNLIMITED = 1 << 62


@dataclass(frozen=True)
class JobPlan:
    options: JobOptions  # resolved: no None left
    estimate: Estimate
    inputs: Inputs | None = None  # the decoded images; None until they are decoded

    @property
    def scales(self) -> tuple[ScaleEstimate, ...]:
        return self.estimate.scales

    @property
    def total_iterations(self) -> int:
        return self.estimate.total_iterations

    @property
    def output_shape(self) -> tuple[int, int]:
        return self.estimate.output_shape

    def with_inputs(self, inputs: Inputs | None) -> JobPlan:
        """The same plan with (or, None, without) its decoded images."""
        return dataclasses.replace(self, inputs=inputs)

    @property
    def decoded(self) -> Inputs:
        if self.inputs is None:
            raise ValueError("the plan's images are not decoded yet")
        return self.inputs


@dataclass(frozen=True)
class Planner:
    """How jobs on these images are planned: everything but the options.

    `regions` is the number of mask regions the loss will have (an upper bound
    before the masks are decoded); `target_bytes` the job's share of the budget
    that the cost model fits each scale's tiling and history into;
    `budget_bytes` the whole budget (TooLarge above it); `tile_setting` -1 the
    model's choice, 0 never tile, N tiles of N px. `term_costs` and
    `term_defaults` are the engine's loss terms' shares of the cost and the
    defaults of the options they own (EnginePort)."""

    shapes: InputShapes
    default_pooling: Pooling
    profile: Profile
    term_costs: cost.Terms
    term_defaults: Mapping[str, TermValue]
    regions: int = 1
    target_bytes: int = UNLIMITED
    budget_bytes: int = UNLIMITED
    tile_setting: int = -1

    def plan(self, options: JobOptions) -> JobPlan:
        """Resolve checked options and price them: the job's plan (no images yet)."""
        resolved = resolve(options, self.default_pooling)
        owned = {**self.term_defaults, **dict(resolved.term_options)}
        resolved = resolved.replace(term_options=tuple(sorted(owned.items())))
        return JobPlan(options=resolved, estimate=self.price(resolved))

    def price(self, resolved: JobOptions) -> Estimate:
        """The estimate of these (resolved) options on the same images, device and budget."""
        return cost.estimate(
            resolved,
            self.shapes,
            self.profile,
            self.target_bytes,
            self.budget_bytes,
            self.tile_setting,
            self.regions,
            terms=self.term_costs,
        )


def make_plan(
    options: JobOptions,
    shapes: InputShapes,
    *,
    default_pooling: Pooling,
    profile: Profile,
    regions: int,
    target_bytes: int = UNLIMITED,
    budget_bytes: int = UNLIMITED,
    tile_setting: int = -1,
    term_costs: cost.Terms,
    term_defaults: Mapping[str, TermValue],
) -> JobPlan:
    """`Planner.plan` in one call (the engine's Python API)."""
    planner = Planner(
        shapes, default_pooling, profile, term_costs, term_defaults, regions, target_bytes, budget_bytes, tile_setting
    )
    return planner.plan(options)
