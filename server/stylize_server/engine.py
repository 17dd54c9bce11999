"""The engine: one resident VGG-19 and a cache of compiled steps, running
planned jobs (multi-scale, style blending, colour preservation) and reporting
progress. Thread-safe: several jobs may run at once on one Engine.

    engine = Engine(weights="imagenet")
    result = engine.stylize(photo, [StyleSource(painting)], size=512)      # or:
    plan = engine.plan(JobOptions(size=512), Inputs(photo, (StyleSource(painting),)))
    result = engine.run(plan, RunHooks(on_progress=print, stop=lambda: None))
"""

from __future__ import annotations

import functools
import logging
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from . import color, cost, images
from .optimize import (
    LBFGS,
    Adam,
    LoopHooks,
    LossSpec,
    Objective,
    Targets,
    run_scale,
    target_args,
)
from .options import (
    Init,
    Inputs,
    JobOptions,
    Limits,
    Optimizer,
    Pooling,
    StyleSource,
    resolve,
    style_shape,
    validate,
)
from .plan import JobPlan
from .types import Losses, ModelInfo, Progress, Result, StopReason
from .vgg import IMAGENET_MEAN_RGB, VGG19Features

log = logging.getLogger(__name__)

UNLIMITED = 1 << 62


@dataclass
class RunHooks:
    """What a running job tells its caller, and how the caller stops it.

    on_progress:  every iteration (the caller decides which to forward)
    stop:         polled between iterations and phases; a StopReason stops the
                  job, which then returns its best image so far
    on_iteration: (iteration, seconds) of every iteration
    """

    on_progress: Callable[[Progress], None] | None = None
    stop: Callable[[], StopReason | None] | None = None
    on_iteration: Callable[[int, float], None] | None = None


def enable_memory_growth() -> None:
    """Let TensorFlow take GPU memory as jobs need it instead of all at start,
    so a pod's memory use tracks its work. Must run before the GPU is used."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialized: the setting can no longer change
            log.warning("could not turn on memory growth on %s: the GPU was already initialized", gpu.name)


def _device() -> tuple[str, str]:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        try:
            name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
        except Exception:
            name = gpus[0].name
        return "GPU", str(name)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "CPU", name


class Engine:
    """A resident VGG-19 and the compiled steps that run jobs on it."""

    def __init__(
        self,
        weights: str = "imagenet",
        pooling: Pooling | str = Pooling.AVG,
        xla: bool = False,
        limits: Limits | None = None,
    ) -> None:
        enable_memory_growth()
        self.vgg = VGG19Features(weights)
        self.default_pooling = Pooling(pooling)
        self.xla = xla
        self.limits = limits or Limits()
        kind, name = _device()
        self.model_info = ModelInfo(
            name="vgg19",
            weights_source=self.vgg.weights.source,
            random_weights=self.vgg.weights.random,
            default_pooling=self.default_pooling.value,
            load_seconds=self.vgg.weights.load_seconds,
            device_kind=kind,
            device_name=name,
            xla=xla,
        )
        self.profile = cost.profile_for(kind, self.model_info.precision)
        self._objectives: dict[LossSpec, Objective] = {}
        self._optimizers: dict[tuple[Any, ...], LBFGS | Adam] = {}
        self._lock = threading.Lock()
        log.info(
            "engine ready: vgg19 weights=%s random=%s pooling=%s device=%s (%s) in %.2fs",
            weights,
            self.model_info.random_weights,
            self.default_pooling.value,
            kind,
            name,
            self.model_info.load_seconds,
        )

    # ------------------------------------------------------------ compiled

    def _objective(self, spec: LossSpec) -> Objective:
        with self._lock:
            if spec not in self._objectives:
                self._objectives[spec] = Objective(self.vgg, spec, xla=self.xla)
            return self._objectives[spec]

    def _optimizer(self, spec: LossSpec, optimizer: Optimizer, history: int) -> LBFGS | Adam:
        key = (spec, optimizer, history if optimizer is Optimizer.LBFGS else 0)
        objective = self._objective(spec)
        with self._lock:
            if key not in self._optimizers:
                if optimizer is Optimizer.LBFGS:
                    self._optimizers[key] = LBFGS(objective, history=history, xla=self.xla)
                else:
                    self._optimizers[key] = Adam(objective, xla=self.xla)
            return self._optimizers[key]

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

    # ----------------------------------------------------------------- run

    def plan(
        self,
        options: JobOptions,
        inputs: Inputs,
        *,
        target_bytes: int = UNLIMITED,
        budget_bytes: int = UNLIMITED,
        tile_setting: int = 0,
        limits: Limits | None = None,
    ) -> JobPlan:
        """Resolve, check (against `limits`, default the engine's) and plan a
        job; the cost model picks each scale's tiling and history to fit
        `target_bytes`."""
        shapes = inputs.shapes
        validate(options, shapes, limits or self.limits)
        options = resolve(options, self.default_pooling)
        estimate = cost.estimate(options, shapes, self.profile, target_bytes, budget_bytes, tile_setting)
        return JobPlan(options=options, inputs=inputs, estimate=estimate)

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

    def run(self, plan: JobPlan, hooks: RunHooks | None = None) -> Result:
        hooks = hooks or RunHooks()
        options, inputs = plan.options, plan.inputs
        assert options.pooling is not None and options.learning_rate is not None
        start = time.perf_counter()
        spec = LossSpec(
            content_layers=tuple(n for n, _ in options.content_layers),
            style_layers=tuple(n for n, _ in options.style_layers),
            pooling=options.pooling,
        )
        objective = self._objective(spec)
        total = plan.total_iterations
        stopped: StopReason | None = None
        latest = [Losses(0.0, 0.0, 0.0, 0.0)]  # the last iteration's, for a stopped job

        def stop_requested() -> bool:
            nonlocal stopped
            if stopped is None and hooks.stop is not None:
                stopped = hooks.stop()
            return stopped is not None

        x: tf.Tensor | None = None
        content = inputs.content
        targets: Targets | None = None
        done = 0
        for index, scale in enumerate(plan.scales):
            if stop_requested():
                break
            shape = (scale.height, scale.width)
            content = images.resize(inputs.content, shape)
            targets = self.targets(objective, options, inputs, content, stop_requested)
            if targets is None:
                break
            x = (
                self._initial_image(options, inputs, shape, content)
                if x is None
                else tf.image.resize(x, shape, method="bicubic")
            )
            render = functools.partial(_render, preserve=options.preserve_colors, content=content)

            def report(
                iteration: int,
                values: tuple[float, float, float, float],
                x_in: tf.Tensor,
                _index: int = index,
                _size: int = scale.size,
                _draw: Callable[[tf.Tensor], np.ndarray] = render,
            ) -> None:
                latest[0] = Losses(*values)
                if hooks.on_progress is not None:
                    hooks.on_progress(
                        Progress(
                            iteration,
                            total,
                            Losses(*values),
                            time.perf_counter() - start,
                            _index,
                            _size,
                            functools.partial(_draw, x_in),
                        )
                    )

            optimizer = self._optimizer(spec, options.optimizer, scale.lbfgs_history or options.lbfgs_history)
            x, ran = run_scale(
                optimizer,
                x,
                targets,
                options.learning_rate,
                scale.iterations,
                done + 1,
                LoopHooks(on_report=report, should_stop=stop_requested, on_iteration=hooks.on_iteration),
            )
            done += ran
            if ran < scale.iterations:
                break

        last = plan.scales[-1]
        if x is None:  # stopped before the first scale began: the starting image
            content = images.resize(inputs.content, (last.height, last.width))
            x = self._initial_image(options, inputs, (last.height, last.width), content)
        elif tuple(x.shape[1:3]) != (last.height, last.width):  # stopped at a coarser scale
            content = images.resize(inputs.content, (last.height, last.width))
            x = tf.image.resize(x, (last.height, last.width), method="bicubic")
        complete = stopped is None and done == total
        if complete and targets is not None:
            losses = Losses.of(*[float(v) for v in objective.terms(x, *target_args(targets))])
        else:  # stopped: the losses of the last iteration that ran (at its scale)
            losses = latest[0]
        return Result(
            pixels=_pixels(x, options.preserve_colors, content),
            losses=losses,
            iterations=done,
            iterations_requested=total,
            compute_seconds=time.perf_counter() - start,
            complete=complete,
            stop_reason=stopped or StopReason.NONE,
        )

    def targets(
        self,
        objective: Objective,
        options: JobOptions,
        inputs: Inputs,
        content: np.ndarray,
        stop_requested: Callable[[], bool],
    ) -> Targets | None:
        """The objective's inputs at one scale (`content` already resized to
        it); None when a stop was requested while computing them."""
        spec = objective.spec
        content_targets = tuple(objective.content_features(_batch(content))) if spec.content_layers else ()
        grams: tuple[tf.Tensor, ...] = ()
        if spec.style_layers:
            total_weight = sum(s.weight for s in inputs.styles)
            blended: list[tf.Tensor] | None = None
            for style in inputs.styles:
                if stop_requested():
                    return None
                if style.weight == 0:
                    continue
                shaped = images.resize(
                    style.image, style_shape(style.image.shape[:2], content.shape[:2], options.style_scale)
                )
                scaled = [style.weight / total_weight * g for g in objective.style_grams(_batch(shaped))]
                blended = scaled if blended is None else [a + b for a, b in zip(blended, scaled)]
            assert blended is not None  # validate() guarantees a positive weight
            grams = tuple(blended)
        return Targets(
            content=content_targets,
            style=grams,
            content_layer_weights=tf.constant(
                [w for _, w in options.content_layers], tf.float32, shape=[len(spec.content_layers)]
            ),
            style_layer_weights=tf.constant(
                [w for _, w in options.style_layers], tf.float32, shape=[len(spec.style_layers)]
            ),
            loss_weights=tf.constant([options.content_weight, options.style_weight, options.tv_weight], tf.float32),
        )

    def _initial_image(
        self, options: JobOptions, inputs: Inputs, shape: tuple[int, int], content: np.ndarray
    ) -> tf.Tensor:
        if options.init is Init.NOISE:
            # Near the mean pixel with a little seeded noise, as jcjohnson's init.
            rng = np.random.default_rng(options.seed)
            start = np.asarray(IMAGENET_MEAN_RGB, np.float32) + rng.normal(0.0, 16.0, (*shape, 3)).astype(np.float32)
        elif options.init is Init.STYLE:
            start = images.resize(inputs.styles[0].image, shape).astype(np.float32)
        elif options.init is Init.IMAGE and inputs.init_image is not None:
            start = images.resize(inputs.init_image, shape).astype(np.float32)
        else:
            start = content.astype(np.float32)
        return tf.constant(start[None], tf.float32)


def _batch(image: np.ndarray) -> tf.Tensor:
    return tf.constant(image[None].astype(np.float32))


def _pixels(x: tf.Tensor, preserve: bool, content: np.ndarray) -> np.ndarray:
    """[1, H, W, 3] float RGB -> H×W×3 float32 in 0..255, colours preserved if asked."""
    image = np.clip(x[0].numpy(), 0.0, 255.0)
    if preserve:
        image = np.clip(color.transfer_luminance(image, content), 0.0, 255.0)
    return image.astype(np.float32)


def _render(x: tf.Tensor, preserve: bool, content: np.ndarray) -> np.ndarray:
    return images.to_uint8(_pixels(x, preserve, content))
