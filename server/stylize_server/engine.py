"""The engine: one resident VGG-19 and a cache of compiled steps, running
style-transfer jobs (multi-scale, style blending, colour preservation) and
reporting progress. Thread-safe: several jobs may run at once on one Engine.

    engine = Engine(weights="imagenet")
    result = engine.run(JobOptions(content=..., styles=[StyleSource(...)]),
                        on_progress=print, should_stop=lambda: False)
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import platform
import threading
import time
from typing import Callable

import numpy as np
import tensorflow as tf

from . import images
from .errors import InvalidArgument
from .optimize import LBFGS, Adam, LossSpec, LoopHooks, Objective, Targets, run_scale, target_args
from .options import (
    MIN_SIDE,
    Init,
    JobOptions,
    Limits,
    Optimizer,
    Pooling,
    Scale,
    StyleSource,
    blend_weights,
    plan_scales,
    resolve,
    scaled_shape,
    style_side,
    validate,
)
from .vgg import IMAGENET_MEAN_RGB, VGG19Features

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Losses:
    """Weighted loss terms; total = content + style + tv."""

    content: float
    style: float
    tv: float
    total: float


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str
    weights_source: str
    random_weights: bool
    default_pooling: Pooling
    load_seconds: float
    device_kind: str  # "GPU" or "CPU"
    device_name: str
    xla: bool


class Progress:
    """One progress report. `image` is computed on first access (from any
    thread), so a caller that wants no preview pays no device-to-host copy."""

    def __init__(self, iteration: int, total_iterations: int, losses: Losses, elapsed_seconds: float,
                 scale_index: int, scale_size: int, render: Callable[[], np.ndarray]) -> None:
        self.iteration = iteration
        self.total_iterations = total_iterations
        self.losses = losses
        self.elapsed_seconds = elapsed_seconds
        self.scale_index = scale_index
        self.scale_size = scale_size
        self._render = render

    @functools.cached_property
    def image(self) -> np.ndarray:
        return self._render()

    def __repr__(self) -> str:
        return (f"Progress({self.iteration}/{self.total_iterations}, total={self.losses.total:.4g}, "
                f"scale={self.scale_index}, {self.elapsed_seconds:.2f}s)")


@dataclasses.dataclass(frozen=True)
class Result:
    image: np.ndarray  # H×W×3 uint8 RGB
    losses: Losses
    iterations: int
    compute_seconds: float
    options: JobOptions  # resolved
    scales: tuple[Scale, ...]


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
        except Exception:  # noqa: BLE001 - details are best effort
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

    def __init__(self, weights: str = "imagenet", pooling: Pooling | str = Pooling.AVG, xla: bool = False,
                 limits: Limits | None = None) -> None:
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
            default_pooling=self.default_pooling,
            load_seconds=self.vgg.weights.load_seconds,
            device_kind=kind,
            device_name=name,
            xla=xla,
        )
        self._objectives: dict[LossSpec, Objective] = {}
        self._optimizers: dict[tuple, LBFGS | Adam] = {}
        self._lock = threading.Lock()
        log.info("engine ready: vgg19 weights=%s random=%s pooling=%s device=%s (%s) in %.2fs",
                 weights, self.model_info.random_weights, self.default_pooling.value, kind, name,
                 self.model_info.load_seconds)

    # ------------------------------------------------------------ compiled

    def _objective(self, spec: LossSpec) -> Objective:
        with self._lock:
            if spec not in self._objectives:
                self._objectives[spec] = Objective(self.vgg, spec, xla=self.xla)
            return self._objectives[spec]

    def _optimizer(self, spec: LossSpec, options: JobOptions) -> LBFGS | Adam:
        key = (spec, options.optimizer, options.lbfgs_history if options.optimizer is Optimizer.LBFGS else 0)
        objective = self._objective(spec)
        with self._lock:
            if key not in self._optimizers:
                if options.optimizer is Optimizer.LBFGS:
                    self._optimizers[key] = LBFGS(objective, history=options.lbfgs_history, xla=self.xla)
                else:
                    self._optimizers[key] = Adam(objective, xla=self.xla)
            return self._optimizers[key]

    def device_memory_bytes(self) -> int | None:
        if self.model_info.device_kind != "GPU":
            return None
        try:
            return int(tf.config.experimental.get_memory_info("GPU:0")["current"])
        except Exception:  # noqa: BLE001 - not every build reports it
            return None

    def warm_up(self, sizes: tuple[int, ...] = (256,), iterations: int = 2) -> float:
        """Trace and run the default job's steps (both optimizers) at `sizes`."""
        start = time.perf_counter()
        rng = np.random.default_rng(0)
        for size in sizes:
            content = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            style = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            for optimizer in Optimizer:
                self.run(JobOptions(content=content, styles=[StyleSource(style)], size=size,
                                    iterations=iterations, optimizer=optimizer, multiscale=False))
        seconds = time.perf_counter() - start
        log.info("warm-up at sizes %s took %.2fs", list(sizes), seconds)
        return seconds

    # ----------------------------------------------------------------- run

    def resolve(self, options: JobOptions) -> JobOptions:
        return resolve(options, self.default_pooling)

    def run(
        self,
        options: JobOptions,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_iteration: Callable[[int, float], None] | None = None,
    ) -> Result:
        validate(options, self.limits)
        options = self.resolve(options)
        assert options.pooling is not None and options.learning_rate is not None
        start = time.perf_counter()
        spec = LossSpec(
            content_layers=tuple(n for n, _ in options.content_layers),
            style_layers=tuple(n for n, _ in options.style_layers),
            pooling=options.pooling,
        )
        objective = self._objective(spec)
        optimizer = self._optimizer(spec, options)
        scales = tuple(plan_scales(options))
        total = sum(s.iterations for s in scales)

        x: tf.Tensor | None = None
        done = 0
        for index, scale in enumerate(scales):
            shape = scaled_shape(options.content.shape[:2], scale.size)
            content = images.resize(options.content, shape)
            targets = self.targets(objective, options, content, scale.size)
            if x is None:
                x = self._initial_image(options, shape, content)
            else:
                x = tf.image.resize(x, shape, method="bicubic")
            render = functools.partial(_render, preserve=options.preserve_colors, content=content)

            def report(iteration: int, values: tuple[float, ...], x_in: tf.Tensor,
                       _index: int = index, _size: int = scale.size, _draw=render) -> None:
                if on_progress is not None:
                    on_progress(Progress(iteration, total, Losses(*values), time.perf_counter() - start,
                                         _index, _size, functools.partial(_draw, x_in)))

            x = run_scale(
                optimizer, x, targets, options.learning_rate, scale.iterations, done + 1,
                options.progress_interval, total,
                LoopHooks(on_report=report, should_stop=should_stop, on_iteration=on_iteration),
            )
            done += scale.iterations

        assert x is not None
        final_terms = [float(v) for v in objective.terms(x, *target_args(targets))]
        final = Losses(*final_terms, total=sum(final_terms))
        image = render(x)  # the last scale is the output size
        return Result(image=image, losses=final, iterations=done, compute_seconds=time.perf_counter() - start,
                      options=options, scales=scales)

    def targets(self, objective: Objective, options: JobOptions, content: np.ndarray, size: int) -> Targets:
        """The objective's inputs at one scale: `content` already resized to it."""
        spec = objective.spec
        return Targets(
            content=tuple(objective.content_features(_batch(content))) if spec.content_layers else (),
            style=(self._blended_grams(objective, options, size, blend_weights(options.styles))
                   if spec.style_layers else ()),
            content_layer_weights=tf.constant([w for _, w in options.content_layers], tf.float32,
                                              shape=[len(spec.content_layers)]),
            style_layer_weights=tf.constant([w for _, w in options.style_layers], tf.float32,
                                            shape=[len(spec.style_layers)]),
            loss_weights=tf.constant([options.content_weight, options.style_weight, options.tv_weight], tf.float32),
        )

    def _blended_grams(self, objective: Objective, options: JobOptions, size: int,
                       blend: list[float]) -> tuple[tf.Tensor, ...]:
        """Style Gram targets at this scale, blended by the styles' weights."""
        longest = style_side(size, options.style_scale)
        blended: list[tf.Tensor] | None = None
        for style, weight in zip(options.styles, blend):
            if weight == 0:
                continue
            # A thin style keeps MIN_SIDE on its shorter side, so block 5 is never empty.
            resized = images.fit_longest(style.image, longest, min_side=MIN_SIDE)
            grams = objective.style_grams(_batch(resized))
            scaled = [weight * g for g in grams]
            blended = scaled if blended is None else [a + b for a, b in zip(blended, scaled)]
        assert blended is not None  # validate() guarantees a positive weight
        return tuple(blended)

    def _initial_image(self, options: JobOptions, shape: tuple[int, int], content: np.ndarray) -> tf.Tensor:
        if options.init is Init.CONTENT:
            start = content.astype(np.float32)
        elif options.init is Init.NOISE:
            # Near the mean pixel with a little seeded noise, as jcjohnson's init.
            rng = np.random.default_rng(options.seed)
            start = np.asarray(IMAGENET_MEAN_RGB, np.float32) + rng.normal(0.0, 16.0, (*shape, 3)).astype(np.float32)
        elif options.init is Init.STYLE:
            start = images.resize(options.styles[0].image, shape).astype(np.float32)
        elif options.init is Init.IMAGE:
            if options.init_image is None:
                raise InvalidArgument("init_image", "is required when init is 'image'")
            start = images.resize(options.init_image, shape).astype(np.float32)
        else:  # pragma: no cover - enum is closed
            raise InvalidArgument("init", f"unknown init {options.init!r}")
        return tf.constant(start[None], tf.float32)


def _batch(image: np.ndarray) -> tf.Tensor:
    return tf.constant(image[None].astype(np.float32))


def _render(x: tf.Tensor, preserve: bool, content: np.ndarray) -> np.ndarray:
    """[1, H, W, 3] float RGB -> H×W×3 uint8, colours preserved if asked."""
    image = images.to_uint8(x[0].numpy())
    if preserve:
        image = images.to_uint8(images.transfer_luminance(image, content))
    return image
