"""A job as admission plans it, and as the engine runs it: resolved options
(defaults filled in) and the cost model's
estimate, whose scales say each scale's size, iterations, tiling and L-BFGS
history; then, once the images are decoded, the inputs.

`plan_job` is admission's one plan of a job, from the images' headers before
anything is decoded: it resolves the options and prices them with one
`cost.Pricing` (everything but the options: the images' shapes, the engine's
loss terms, the device, the budget), and the same pricing prices what would
fit the time limit (timing.py). The engine's Python API plans with decoded
images (`make_plan`). Nothing after it resolves or estimates
again: the `started` frame, the scheduler's budget, the ETA and the engine
all read the same plan."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from stylize_server.job import cost, timing
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


class Planning(Protocol):
    """What planning reads of the engine (EnginePort has all of it): its
    defaults, its loss terms' shares of the cost, the device's figures and
    what compiling a job would cost."""

    @property
    def default_pooling(self) -> Pooling: ...

    @property
    def profile(self) -> Profile: ...

    @property
    def term_defaults(self) -> Mapping[str, TermValue]:
        """The options the loss terms own, with their defaults."""
        ...

    @property
    def term_costs(self) -> Sequence[cost.TermCost]:
        """The loss terms' shares of the cost model."""
        ...

    def compile_seconds(self, options: JobOptions, estimate: Estimate, guided: bool) -> float:
        """Seconds of tracing a job with these resolved options would pay
        before its first iteration (0.0 when everything is compiled)."""
        ...


class Settings(Protocol):
    """The server settings a plan reads (config.ServerConfig)."""

    @property
    def max_concurrent_jobs(self) -> int: ...
    @property
    def max_job_seconds(self) -> float: ...
    @property
    def tile_size(self) -> int: ...


def resolve_and_price(
    options: JobOptions, pricing: cost.Pricing, default_pooling: Pooling, term_defaults: Mapping[str, TermValue]
) -> JobPlan:
    """Resolve checked options (the engine's defaults, and those of the
    options its loss terms own) and price them: the job's plan (no images yet)."""
    resolved = resolve(options, default_pooling)
    owned = {**term_defaults, **dict(resolved.term_options)}
    resolved = resolved.replace(term_options=tuple(sorted(owned.items())))
    return JobPlan(options=resolved, estimate=pricing.estimate(resolved))


def plan_job(
    options: JobOptions,
    shapes: InputShapes,
    accept_partial: bool,
    regions: int,
    engine: Planning,
    budget_bytes: int,
    settings: Settings,
) -> JobPlan:
    """The one plan of a job on this server, from its images' headers:
    resolved, priced against its share of the budget (TooLarge over the
    whole budget), and checked against the time per job (OverTimeLimit),
    whose alternatives the same pricing prices. `regions`: the request's
    mask regions (an upper bound before the masks are decoded)."""
    target_bytes = budget_bytes // settings.max_concurrent_jobs
    pricing = cost.Pricing(
        shapes, engine.profile, target_bytes, budget_bytes, settings.tile_size, regions, engine.term_costs
    )
    plan = resolve_and_price(options, pricing, engine.default_pooling, engine.term_defaults)
    guided = any(mask is not None for mask in shapes.masks)
    compiling = functools.partial(engine.compile_seconds, guided=guided)
    timing.check_time(pricing, plan.options, plan.estimate, settings.max_job_seconds, accept_partial, compiling)
    return plan


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
    """A plan with no time limit (the engine's Python API). `regions` is the
    number of mask regions the loss will have; `target_bytes` the job's share
    of the budget that the cost model fits each scale's tiling and history
    into; `budget_bytes` the whole budget (TooLarge above it); `tile_setting`
    -1 the model's choice, 0 never tile, N tiles of N px. `term_costs` and
    `term_defaults` are the engine's loss terms' shares of the cost and the
    defaults of the options they own (EnginePort)."""
    pricing = cost.Pricing(shapes, profile, target_bytes, budget_bytes, tile_setting, regions, term_costs)
    return resolve_and_price(options, pricing, default_pooling, term_defaults)
