"""Precision table (issue 13): seconds per iteration and peak memory at
128, 256 and 512 px in float32 and bfloat16, side by side in one run.

* time: one process per size holds a float32 and a bfloat16 engine and
  interleaves them round by round (the machine is shared; interleaving keeps
  the ratio fair); per precision the served step (the engine's whole L-BFGS
  step, host bookkeeping included) and the floor (a bare forward + input
  gradient through the same truncated VGG-19 in the same precision).
* memory: one process per (size, precision) runs a job; peak RSS above the
  loaded engine's RSS (CPU), or TensorFlow's peak device memory (GPU).

    python -m benchmarks.precision_bench [--sizes 128,256,512]
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.common import (
    device_peak_bytes,
    emit,
    floor_step,
    median,
    mib,
    peak_rss_bytes,
    rss_bytes,
    run_worker,
    sample_images,
    seconds_per_call,
)

PRECISIONS = ("float32", "bfloat16")


def _job(size: int, iterations: int) -> tuple[Any, Any]:
    from stylize_server.job.options import Inputs, JobOptions, StyleSource

    content, style = sample_images(size)
    return JobOptions(size=size, iterations=iterations, multiscale=False), Inputs(content, (StyleSource(style),))


def worker_time(size: int, weights: str, rounds: int, per_round: int) -> dict[str, Any]:
    import numpy as np
    import tensorflow as tf

    from stylize_server.engine.runner import Engine, RunHooks
    from stylize_server.job.layout import needed_layers

    options, inputs = _job(size, per_round + 2)
    layers = needed_layers([n for n, _ in options.content_layers], [n for n, _ in options.style_layers])
    engines = {p: Engine(weights=weights, precision=p) for p in PRECISIONS}
    x = tf.constant(inputs.content[None].astype(np.float32))

    def floor_for(engine: Engine) -> Any:
        dtype = tf.bfloat16 if engine.precision.value == "bfloat16" else tf.float32
        return floor_step(lambda image: engine.vgg(image, layers, engine.default_pooling, dtype))

    floors = {p: floor_for(e) for p, e in engines.items()}

    def time_floor(p: str) -> float:
        return seconds_per_call(floors[p], x, per_round)

    def time_step(p: str) -> float:
        times: list[float] = []
        engine = engines[p]
        engine.run(engine.plan(options, inputs), RunHooks(on_iteration=lambda i, dt: times.append(dt)))
        # The first includes the one-off targets; on a CPU each call blocks, so
        # the last settles at once and reads ~0: neither is a step.
        return median(times[1:-1])

    for p in PRECISIONS:
        time_step(p)  # trace
    out: dict[str, Any] = {"size": size}
    samples: dict[str, dict[str, list[float]]] = {p: {"floor": [], "step": []} for p in PRECISIONS}
    for _ in range(rounds):
        for p in PRECISIONS:
            samples[p]["floor"].append(time_floor(p))
            samples[p]["step"].append(time_step(p))
    for p in PRECISIONS:
        out[p] = {
            "floor_s_per_it": median(samples[p]["floor"]),
            "step_s_per_it": median(samples[p]["step"]),
            "step_over_floor": median([s / f for s, f in zip(samples[p]["step"], samples[p]["floor"])]),
        }
    out["speedup"] = median([a / b for a, b in zip(samples["float32"]["step"], samples["bfloat16"]["step"])])
    return out


def worker_memory(size: int, weights: str, precision: str) -> dict[str, Any]:
    from stylize_server.engine.runner import Engine, RunHooks

    engine = Engine(weights=weights, precision=precision)
    options, inputs = _job(32, 2)
    engine.run(engine.plan(options, inputs), RunHooks())  # trace at a tiny size
    base = rss_bytes()
    options, inputs = _job(size, 4)
    engine.run(engine.plan(options, inputs), RunHooks())
    return {
        "size": size,
        "precision": precision,
        "peak_rss_bytes": peak_rss_bytes(),
        "peak_over_loaded_bytes": peak_rss_bytes() - base,
        "device_peak_bytes": device_peak_bytes(),
    }


def section(weights: str, sizes: list[int], rounds: int, per_round: int) -> dict[str, Any]:
    print("\nprecision: seconds per iteration (served L-BFGS step and bare VGG floor, same precision), peak memory")
    print(
        f"{'size':>5} | {'f32 step':>9} {'f32 floor':>9} {'step/floor':>10} | {'bf16 step':>9} {'bf16 floor':>10} "
        f"{'step/floor':>10} | {'f32/bf16':>8} | {'f32 mem':>9} {'bf16 mem':>9}"
    )
    rows = []
    for size in sizes:
        t = run_worker("precision_bench", ["time", str(size), weights, str(rounds), str(per_round)])
        mem = {p: run_worker("precision_bench", ["memory", str(size), weights, p]) for p in PRECISIONS}
        f, b = t["float32"], t["bfloat16"]

        def used(m: dict[str, Any]) -> float:
            return float(m["device_peak_bytes"] or m["peak_over_loaded_bytes"])

        print(
            f"{size:>5} | {f['step_s_per_it']:>9.3f} {f['floor_s_per_it']:>9.3f} {f['step_over_floor']:>9.2f}x | "
            f"{b['step_s_per_it']:>9.3f} {b['floor_s_per_it']:>10.3f} {b['step_over_floor']:>9.2f}x | "
            f"{t['speedup']:>7.2f}x | {mib(used(mem['float32'])):>9} {mib(used(mem['bfloat16'])):>9}",
            flush=True,
        )
        rows.append({"time": t, "memory": mem})
    print("  (memory: peak RSS above the loaded engine on a CPU; TensorFlow's peak device memory on a GPU)")
    return {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="random:0")
    parser.add_argument("--sizes", default="128,256,512")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=3)
    parser.add_argument("--worker", nargs="*")
    args = parser.parse_args()
    if args.worker is not None:
        kind, *rest = args.worker
        if kind == "time":
            emit(worker_time(int(rest[0]), rest[1], int(rest[2]), int(rest[3])))
        else:
            emit(worker_memory(int(rest[0]), rest[1], rest[2]))
        return
    section(args.weights, [int(s) for s in args.sizes.split(",")], args.rounds, args.per_round)


if __name__ == "__main__":
    main()
