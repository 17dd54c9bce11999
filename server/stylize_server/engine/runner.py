"""The engine: one resident VGG-19 in the chosen precision and a bounded
cache of compiled steps, running planned jobs (multi-scale, whole or in
exact tiles, style blending per region, colour control) and reporting
progress. Thread-safe: several jobs may run at once on one Engine.

    engine = Engine(weights="imagenet")
    result = engine.stylize(photo, [StyleSource(painting)], size=512)      # or:
    plan = engine.plan(JobOptions(size=512), Inputs(photo, (StyleSource(painting),)))
    result = engine.run(plan, RunHooks(on_progress=print, stop=lambda: None))
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from stylize_server.engine import prepare, regions, targets, terms
from stylize_server.engine.device import describe_device, enable_memory_growth, gpu_total_memory, measure_precisions
from stylize_server.engine.objective import LossSpec, Objective
from stylize_server.engine.optimize import Carry, LoopHooks, run_scale
from stylize_server.engine.spec import job_spec, layout_of
from stylize_server.engine.stepcache import CompiledSteps, StepCache
from stylize_server.engine.vgg import VGG19Features
from stylize_server.job import images, profiles
from stylize_server.job.cost import TermCost
from stylize_server.job.layout import Pooling
from stylize_server.job.options import Inputs, JobOptions, Limits, Optimizer, StyleSource, TermValue, validate
from stylize_server.job.plan import UNLIMITED, JobPlan, make_plan
from stylize_server.job.port import RunHooks
from stylize_server.job.precision import Precision, choose
from stylize_server.job.types import Estimate, Losses, ModelInfo, Progress, Result, StopReason

__all__ = ["Engine", "RunHooks", "layout_of"]

log = logging.getLogger(__name__)

DEFAULT_MAX_COMPILED = 8


class Engine:
    """A resident VGG-19 and the compiled steps that run jobs on it.

    precision:    "auto" (measured at start-up: precision.py), "float32" or
                  "bfloat16": what the convolutions run in
    max_compiled: loss specifications whose compiled steps are kept (LRU)
    """

    def __init__(
        self,
        weights: str = "imagenet",
        pooling: Pooling | str = Pooling.AVG,
        xla: bool = False,
        limits: Limits | None = None,
        precision: Precision | str = Precision.AUTO,
        max_compiled: int = DEFAULT_MAX_COMPILED,
    ) -> None:
        enable_memory_growth()
        self.vgg = VGG19Features(weights)
        self.default_pooling = Pooling(pooling)
        self.xla = xla
        self.limits = limits or Limits()
        self._steps = StepCache(max_compiled, self._compile)
        self._compile_factor = 1.0  # measured compile time / the profile's figure
        self._compiles_seen = 0
        kind, name = describe_device()
        choice = choose(precision, lambda: measure_precisions(self.vgg, self.default_pooling, xla))
        self.precision = choice.precision
        self.model_info = ModelInfo(
            name="vgg19",
            weights_source=self.vgg.weights.source,
            random_weights=self.vgg.weights.random,
            default_pooling=self.default_pooling.value,
            load_seconds=self.vgg.weights.load_seconds,
            device_kind=kind,
            device_name=name,
            xla=xla,
            precision=self.precision.value,
            precision_reason=choice.reason,
            device_memory_total=gpu_total_memory() if kind == "GPU" else None,
        )
        self.profile = profiles.profile_for(kind, self.precision.value)
        log.info(
            "engine ready: vgg19 weights=%s random=%s pooling=%s device=%s (%s) precision=%s (%s) in %.2fs",
            weights,
            self.model_info.random_weights,
            self.default_pooling.value,
            kind,
            name,
            self.precision.value,
            choice.reason,
            self.model_info.load_seconds,
        )

    # --------------------------------------------------------------- terms

    @property
    def term_defaults(self) -> Mapping[str, TermValue]:
        return terms.option_defaults()

    @property
    def term_costs(self) -> tuple[TermCost, ...]:
        return terms.costs()

    def check_options(self, options: JobOptions) -> None:
        terms.check_options(options)

    # ------------------------------------------------------------ compiled

    def _compile(self, spec: LossSpec) -> CompiledSteps:
        return CompiledSteps(Objective(self.vgg, spec, xla=self.xla), self.xla)

    def compiled(self, spec: LossSpec) -> CompiledSteps:
        """The compiled steps of `spec` (from the LRU, or built now)."""
        return self._steps.get(spec)

    def compile_seconds(self, options: JobOptions, estimate: Estimate, guided: bool) -> float:
        """Seconds of tracing a job with these resolved options would pay
        before its iterations (StepCache.compile_units), times what this
        engine measured of its own compiles (`_learn_compile`). 0.0 when
        everything is compiled. Admission adds it to the estimate (a job's
        time limit counts it)."""
        job = job_spec(options, self.precision, guided, estimate)
        return self._steps.compile_units(job, self.profile) * self._compile_factor

    @property
    def step_cache(self) -> StepCache:
        return self._steps

    def device_memory_bytes(self) -> int | None:
        if self.model_info.device_kind != "GPU":
            return None
        try:
            return int(tf.config.experimental.get_memory_info("GPU:0")["current"])
        except Exception:
            return None

    def warm_up(self, sizes: tuple[int, ...] = (256,), iterations: int = 2) -> float:
        """Trace and run the default job's steps (both optimizers) at `sizes`."""
        start = time.perf_counter()
        rng = np.random.default_rng(0)
        for size in sizes:
            content = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            style = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            for optimizer in Optimizer:
                self.stylize(
                    content,
                    [StyleSource(style)],
                    size=size,
                    iterations=iterations,
                    optimizer=optimizer,
                    multiscale=False,
                )
        seconds = time.perf_counter() - start
        log.info("warm-up at sizes %s took %.2fs", list(sizes), seconds)
        return seconds

    # ----------------------------------------------------------------- plan

    def plan(
        self,
        options: JobOptions,
        inputs: Inputs,
        *,
        target_bytes: int = UNLIMITED,
        budget_bytes: int = UNLIMITED,
        tile_setting: int = -1,
        limits: Limits | None = None,
    ) -> JobPlan:
        """Resolve, check (against `limits`, default the engine's) and plan a
        job; the cost model picks each scale's tiling and history to fit
        `target_bytes` (tile_setting: -1 its choice, 0 never tile, N tiles of
        N px)."""
        validate(options, inputs.shapes, limits or self.limits)
        self.check_options(options)
        plan = make_plan(
            options,
            inputs.shapes,
            default_pooling=self.default_pooling,
            profile=self.profile,
            regions=regions.count_regions(inputs.styles, options.unmasked_region),
            target_bytes=target_bytes,
            budget_bytes=budget_bytes,
            tile_setting=tile_setting,
            term_costs=self.term_costs,
            term_defaults=self.term_defaults,
        )
        return plan.with_inputs(inputs)

    def stylize(
        self,
        content: np.ndarray,
        styles: list[StyleSource],
        hooks: RunHooks | None = None,
        init_image: np.ndarray | None = None,
        **options: Any,
    ) -> Result:
        """Plan and run a job in one call (for use from Python)."""
        inputs = Inputs(content=content, styles=tuple(styles), init_image=init_image)
        return self.run(self.plan(JobOptions(**options), inputs), hooks)

    # ------------------------------------------------------------------ run

    def run(self, plan: JobPlan, hooks: RunHooks | None = None) -> Result:
        """Run a planned job. The plan flows one way: its JobSpec (spec.py)
        is derived once; then, scale by scale, the images at the scale
        (prepare), the compiled steps (stepcache), the targets (targets) and
        the iterations (optimize); then the output's colours (prepare)."""
        hooks = hooks or RunHooks()
        start = time.perf_counter()
        # Previews read only the colour options, which job_spec leaves as planned.
        progress = _Progress(hooks, plan.total_iterations, start, plan.options)
        inputs = plan.decoded
        guided = any(s.mask is not None for s in inputs.styles)
        job = job_spec(plan.options, self.precision, guided, plan.estimate)
        options = job.options
        assert options.learning_rate is not None
        compiling = self._steps.compile_units(job, self.profile)
        steps = self._steps.get(job.loss)
        job_images = prepare.job_images(options, inputs, plan.output_shape)
        total = plan.total_iterations
        stopped: StopReason | None = None
        latest = Losses.of((name, 0.0) for name in steps.objective.names)  # the returned image's

        def stop_requested() -> bool:
            nonlocal stopped
            if stopped is None and hooks.stop is not None:
                stopped = hooks.stop()
            return stopped is not None

        def on_iteration(iteration: int, seconds: float) -> None:
            if iteration == 1 and compiling:
                # Iteration 1 is read once iteration 2 is dispatched (optimize.run_scale).
                first = plan.scales[0].seconds_per_iteration * min(2, plan.scales[0].iterations)
                self._learn_compile(compiling, time.perf_counter() - start - first)
            if hooks.on_iteration is not None:
                hooks.on_iteration(iteration, seconds)

        ema = options.ema_decay if options.iterate_average.value == "ema" else None
        carry = Carry()  # the image and Adam's moments, from scale to scale
        images_at: prepare.ScaleImages | None = None
        done = 0
        for index, (scale, scale_steps) in enumerate(zip(plan.scales, job.scales)):
            if hooks.on_phase is not None:
                hooks.on_phase(f"scale {index + 1} of {len(plan.scales)}")
            if stop_requested():
                break
            shape = (scale.height, scale.width)
            images_at = prepare.at_scale(job_images, shape, first=carry.image is None)
            evaluator = steps.evaluator(scale_steps.layout)
            scale_targets = targets.build(
                evaluator,
                job,
                images_at.content,
                job_images.styles,
                job_images.regions,
                stop_requested,
                hooks.on_phase,
                inputs.temporal,
            )
            if scale_targets is None:
                break
            if images_at.start is not None:
                carry.image = targets.batch(images_at.start)
            report = functools.partial(progress.report, index, scale.size, images_at.content)
            ran, losses = run_scale(
                steps.optimizer(scale_steps.optimizer, scale_steps.history),
                evaluator,
                scale_targets,
                shape,
                options.learning_rate,
                scale.iterations,
                done + 1,
                LoopHooks(on_report=report, should_stop=stop_requested, on_iteration=on_iteration),
                carry,
                average=ema,
            )
            done += ran
            latest = losses or latest
            if ran < scale.iterations:
                break

        final_shape = plan.output_shape
        # Upsampled where it stopped at a coarser scale; None where it stopped
        # before the first scale began (prepare.output then starts it).
        pixels = None if carry.image is None else carry.image_at(final_shape)[0].numpy()
        return Result(
            pixels=prepare.output(job_images, pixels, final_shape, images_at),
            losses=latest,  # of the image returned (at its scale, if stopped at a coarser one)
            iterations=done,
            iterations_requested=total,
            compute_seconds=time.perf_counter() - start,
            complete=stopped is None and done == total,
            stop_reason=stopped or StopReason.NONE,
        )

    def _learn_compile(self, units: float, seconds: float) -> None:
        """Fold one job's compile into the factor: everything before its first
        iteration was read, less the estimate of the iterations run by then
        (the style pass stays in, so it errs long, as admission should), over the profile's
        figure. A geometric mean with the factor so far, bounded to 1/4..8,
        so one outlier moves it at most by its square root."""
        self._compiles_seen += 1
        if self._compiles_seen == 1:  # the process's first also pays TensorFlow's own start-up
            return
        ratio = min(8.0, max(0.25, seconds / units))
        self._compile_factor = min(8.0, max(0.25, (self._compile_factor * ratio) ** 0.5))
        log.debug("compiled in %.2fs (%.2fs by the profile): factor %.2f", seconds, units, self._compile_factor)


class _Progress:
    """A job's progress frames: each reported iteration with its losses and
    a preview drawn on demand (the optimized image in the job's colours),
    bound to its scale (`report`'s first three arguments) by the runner."""

    def __init__(self, hooks: RunHooks, total: int, start: float, options: JobOptions) -> None:
        self.hooks, self.total, self.start, self.options = hooks, total, start, options

    def report(self, index: int, size: int, content: np.ndarray, iteration: int, losses: Losses, x: tf.Tensor) -> None:
        if self.hooks.on_progress is None:
            return
        elapsed = time.perf_counter() - self.start
        draw = functools.partial(self._draw, x, content)
        self.hooks.on_progress(Progress(iteration, self.total, losses, elapsed, index, size, draw))

    def _draw(self, x: tf.Tensor, content: np.ndarray) -> np.ndarray:
        return images.to_uint8(prepare.finish(x[0].numpy(), self.options, content))
