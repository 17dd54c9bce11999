"""The device the engine runs on: its name, GPU memory growth, and the
start-up measurement that `precision="auto"` decides by (precision.py)."""

from __future__ import annotations

import logging
import platform
import time
from typing import Any

import numpy as np
import tensorflow as tf

from stylize_server.engine.objective import IMAGE, Objective
from stylize_server.engine.spec import job_spec
from stylize_server.engine.vgg import VGG19Features
from stylize_server.job.layout import Pooling
from stylize_server.job.options import JobOptions
from stylize_server.job.precision import MEASURE_SIZE, Measurement, Precision

log = logging.getLogger(__name__)

MEASURE_ROUNDS = 3


def enable_memory_growth() -> None:
    """Let TensorFlow take GPU memory as jobs need it instead of all at start,
    so a pod's memory use tracks its work. Must run before the GPU is used."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialized: the setting can no longer change
            log.warning("could not turn on memory growth on %s: the GPU was already initialized", gpu.name)


def gpu_total_memory() -> int | None:
    """The first GPU's memory as TensorFlow's allocator sees it, or None."""
    try:
        from tensorflow.python.client import device_lib  # the allocator's view, not the card's label

        for device in device_lib.list_local_devices():
            if device.device_type == "GPU" and device.memory_limit:
                return int(device.memory_limit)
    except Exception:  # no TensorFlow, no GPU, or a driver that will not say
        log.debug("could not read the GPU's memory", exc_info=True)
    return None


def describe_device() -> tuple[str, str]:
    """("GPU" or "CPU", the device's name)."""
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


def _evaluation(objective: Objective) -> Any:
    def evaluate(x: tf.Tensor, *targets: Any) -> Any:
        return objective.value_and_grad(x, targets)

    return evaluate


def measure_precisions(vgg: VGG19Features, pooling: Pooling, xla: bool) -> tuple[Measurement, Measurement]:
    """One whole-image objective evaluation (forward and input gradient, the
    default layers) at MEASURE_SIZE px in float32 and in bfloat16: each traced
    and run once first, then timed in alternation, best of MEASURE_ROUNDS.
    The targets are zeros: the losses only need to be comparable."""
    size = MEASURE_SIZE
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32))
    options = JobOptions(pooling=pooling)  # the default terms and layers
    steps = {}
    args: tuple[Any, ...] = ()
    for precision in (Precision.FLOAT32, Precision.BFLOAT16):
        job = job_spec(options, precision, guided=False)
        objective = Objective(vgg, job.loss, xla=xla)
        args = objective.placeholder_targets(size, size, job.weights).args
        steps[precision] = tf.function(_evaluation(objective), input_signature=[IMAGE, *objective.target_specs])
    losses: dict[Precision, float] = {}
    for precision, step in steps.items():
        terms, _ = step(x, *args)  # trace and first run
        losses[precision] = float(tf.reduce_sum(terms))
    best = {p: float("inf") for p in steps}
    for _ in range(MEASURE_ROUNDS):
        for precision, step in steps.items():
            started = time.perf_counter()
            terms, grad = step(x, *args)
            float(terms[0]), grad.shape  # wait for it
            best[precision] = min(best[precision], time.perf_counter() - started)
    f32, bf16 = Precision.FLOAT32, Precision.BFLOAT16
    return Measurement(best[f32], losses[f32]), Measurement(best[bf16], losses[bf16])
