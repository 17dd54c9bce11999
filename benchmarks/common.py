"""Shared pieces of the benchmarks: sample images, workers in their own
processes (so that peak RSS is one measurement's), formatting."""

from __future__ import annotations

import json
import os
import pathlib
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def floor_step(features: Callable[[Any], dict[str, Any]]) -> Callable[[Any], tuple[Any, Any]]:
    """The floor a served step is compared with: one bare forward+backward
    through `features` (image -> feature maps), compiled once for any size."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    def step(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(image)
            total = tf.add_n([tf.reduce_sum(f) for f in features(image).values()])
        return total, tape.gradient(total, image)

    return step


def seconds_per_call(step: Callable[[Any], tuple[Any, Any]], x: Any, calls: int) -> float:
    """Mean seconds of `calls` calls of a floor step after one warm call."""
    float(step(x)[0])
    start = time.perf_counter()
    for _ in range(calls):
        float(step(x)[0])
    return (time.perf_counter() - start) / calls


def job_seconds_per_iteration(engine: Any, options: Any, inputs: Any) -> float:
    """Median seconds of one iteration of a real job (plan and run on
    `engine`): not the first (it builds the targets) nor the last (an
    optimizer that has settled returns at once). `options.iterations` >= 3."""
    from stylize_server.engine import RunHooks

    times: list[float] = []
    engine.run(engine.plan(options, inputs), RunHooks(on_iteration=lambda i, dt: times.append(dt)))
    return median(times[1:-1] or times)


def sample_images(height: int, width: int | None = None) -> tuple[Any, Any]:
    """(content, style) H×W×3 uint8: the demo's drawn samples when available."""
    width = width or height
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from make_samples import content_image, style_image  # type: ignore[import-not-found]

        return content_image(width, height), style_image(width, height)
    except Exception:
        import numpy as np

        yy, xx = np.mgrid[0:height, 0:width]
        content = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 127 // (height + width)], -1)
        rng = np.random.default_rng(0)
        cells = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3)).repeat(16, 0).repeat(16, 1)
        return content.astype(np.uint8), cells[:height, :width].astype(np.uint8)


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def device_peak_bytes() -> int | None:
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return None
    return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])


def reset_peak_memory() -> int:
    """Start a peak-memory measurement; returns the bytes in use now. On a
    GPU: TensorFlow's allocator statistics of GPU:0; on a CPU: the process's
    resident high-water mark (VmHWM, reset through /proc/self/clear_refs)."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        tf.config.experimental.reset_memory_stats("GPU:0")
        return int(tf.config.experimental.get_memory_info("GPU:0")["current"])
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")
    return rss_bytes()


def peak_memory() -> int:
    """The peak since reset_peak_memory() (same device, same units)."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    with open("/proc/self/status", encoding="ascii") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kib * 1024


def run_worker(module: str, args: list[str], timeout: float = 3600) -> dict[str, Any]:
    """Run `python -m benchmarks.<module> --worker args...` in its own process
    and return the JSON it prints last."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", "--worker", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=timeout,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"worker {module} {args} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def emit(result: dict[str, Any]) -> None:
    """A worker's answer: one JSON line on stdout."""
    print(json.dumps(result), flush=True)


def mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f} MiB"


def median(values: list[float]) -> float:
    import statistics

    return float(statistics.median(values))
