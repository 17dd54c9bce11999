"""Engine benchmarks (numbers, not pass/fail): `make bench` runs every section
and writes one JSON file.

1. step:      seconds per iteration at 128, 256 and 512 px: the engine's full
              L-BFGS step (loss, gradient, two-loop direction, host
              bookkeeping) against the floor, a bare forward+backward pass
              through the same truncated VGG-19, in the engine's precision;
              interleaved round by round, medians. Also the step with XLA.
2. quality:   time to quality at 256 px: the engine (L-BFGS, multi-scale
              128 -> 256) against a baseline that mirrors the TensorFlow
              tutorial (Adam lr 0.02, β1 0.99, ε 0.1 on a 0..1 image clipped
              each step, single scale), same images, weights and loss.
3. precision: float32 against bfloat16 (benchmarks/precision_bench.py).
4. masks:     2 masked styles against 1 unmasked style, and masked jobs' peak
              memory against the estimate (masks_bench.py).
5. tiling:    tiled against whole-image evaluation (tiling_bench.py).
6. cost:      the cost model's estimates against measurement (cost_bench.py).
7. w2:        the Wasserstein-2 style loss against the Gram loss (square
              roots, s/it, W2 and content distances) and the iterate EMA
              against none (w2_bench.py).

Each measurement runs in its own process. Runs on random weights by default
(--weights imagenet or PATH for the real ones).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time
from typing import Any

from benchmarks.common import (
    ROOT,
    device_peak_bytes,
    emit,
    floor_step,
    job_seconds_per_iteration,
    median,
    mib,
    peak_rss_bytes,
    run_worker,
    sample_images,
    seconds_per_call,
)

SECTIONS = ("step", "quality", "precision", "masks", "tiling", "cost", "w2")


def worker_step(size: int, weights: str, rounds: int, per_round: int, xla: bool) -> dict[str, Any]:
    import numpy as np
    import tensorflow as tf

    from stylize_server.engine.runner import Engine
    from stylize_server.job.layout import needed_layers
    from stylize_server.job.options import Inputs, JobOptions, StyleSource

    engine = Engine(weights=weights, xla=False)
    engine_xla = Engine(weights=weights, xla=True, precision=engine.precision) if xla else None
    content, style = sample_images(size)
    options = JobOptions(size=size, iterations=per_round + 2, multiscale=False)
    inputs = Inputs(content, (StyleSource(style),))
    layers = needed_layers([n for n, _ in options.content_layers], [n for n, _ in options.style_layers])
    dtype = tf.bfloat16 if engine.precision.value == "bfloat16" else tf.float32

    floor = floor_step(lambda image: engine.vgg(image, layers, engine.default_pooling, dtype))
    x = tf.constant(content[None].astype(np.float32))

    def time_floor() -> float:
        return seconds_per_call(floor, x, per_round)

    def time_engine(e: Engine) -> float:
        return job_seconds_per_iteration(e, options, inputs)

    time_engine(engine)  # trace
    if engine_xla:
        time_engine(engine_xla)  # compile for this shape
    floors, steps, xla_steps = [], [], []
    for _ in range(rounds):
        floors.append(time_floor())
        steps.append(time_engine(engine))
        if engine_xla:
            xla_steps.append(time_engine(engine_xla))
    ratios = [s / f for s, f in zip(steps, floors)]
    out: dict[str, Any] = {
        "size": size,
        "precision": engine.precision.value,
        "floor_s_per_it": median(floors),
        "step_s_per_it": median(steps),
        "step_over_floor": median(ratios),
        "step_over_floor_min_max": [min(ratios), max(ratios)],
        "peak_rss_bytes": peak_rss_bytes(),
        "device_peak_bytes": device_peak_bytes(),
    }
    if xla_steps:
        out["xla_step_s_per_it"] = median(xla_steps)
        out["xla_over_plain"] = median([a / b for a, b in zip(xla_steps, steps)])
    return out


def worker_quality(size: int, weights: str, baseline_iterations: int, engine_iterations: int) -> dict[str, Any]:
    import numpy as np
    import tensorflow as tf

    from stylize_server.engine import targets as job_targets
    from stylize_server.engine.regions import plan_regions
    from stylize_server.engine.runner import Engine, RunHooks
    from stylize_server.engine.spec import job_spec
    from stylize_server.engine.tiling import WHOLE
    from stylize_server.job.options import Inputs, JobOptions, Optimizer, StyleSource, resolve

    engine = Engine(weights=weights)
    content, style = sample_images(size)
    inputs = Inputs(content, (StyleSource(style),))
    job = job_spec(resolve(JobOptions(size=size, multiscale=False)), engine.precision, False)
    options = job.options
    evaluator = engine.compiled(job.loss).evaluator(WHOLE)
    regions = plan_regions(inputs.styles, options.unmasked_region, (size, size))
    targets = job_targets.build(evaluator, job, content, [style], regions, lambda: False)
    assert targets is not None
    args = targets.args
    objective = evaluator.objective

    # The TensorFlow tutorial's loop: a 0..1 image variable, Adam(0.02, 0.99, 0.1), clip after each step.
    image = tf.Variable(content[None].astype(np.float32) / 255.0)
    adam = tf.keras.optimizers.Adam(learning_rate=0.02, beta_1=0.99, epsilon=1e-1)

    @tf.function
    def baseline_step() -> tf.Tensor:
        terms, grad = objective.value_and_grad(image * 255.0, args)
        adam.apply_gradients([(grad * 255.0, image)])
        image.assign(tf.clip_by_value(image, 0.0, 1.0))
        return tf.reduce_sum(terms)

    baseline_step()  # trace, then restart from the content image
    image.assign(content[None].astype(np.float32) / 255.0)
    for v in adam.variables:  # moments and step count; the learning rate stays
        if "learning_rate" not in v.name:
            v.assign(tf.zeros_like(v))
    curve = []
    start = time.perf_counter()
    for _i in range(baseline_iterations):
        total = float(baseline_step())
        curve.append((time.perf_counter() - start, total))
    baseline_seconds, baseline_loss = curve[-1]

    def engine_curve(multiscale: bool) -> tuple[list[tuple[float, float, int]], float]:
        run_options = JobOptions(
            size=size,
            iterations=engine_iterations,
            optimizer=Optimizer.LBFGS,
            multiscale=multiscale,
            multiscale_min_size=size // 2,
        )
        engine.run(engine.plan(run_options.replace(iterations=3), inputs))  # trace outside the clock
        points: list[tuple[float, float, int]] = []
        t0 = time.perf_counter()
        engine.run(
            engine.plan(run_options, inputs),
            RunHooks(on_progress=lambda p: points.append((time.perf_counter() - t0, p.losses.total, p.scale_index))),
        )
        return points, time.perf_counter() - t0

    results = {}
    for name, multiscale in (("lbfgs_multiscale", True), ("lbfgs_single_scale", False)):
        points, wall = engine_curve(multiscale)
        final_scale = max(s for _, _, s in points)
        hit = next(((t, i + 1) for i, (t, v, s) in enumerate(points) if s == final_scale and v <= baseline_loss), None)
        results[name] = {
            "seconds_to_baseline_loss": hit[0] if hit else None,
            "iterations_to_baseline_loss": hit[1] if hit else None,
            "final_loss": points[-1][1],
            "wall_seconds": wall,
            "speedup_vs_baseline": (baseline_seconds / hit[0]) if hit else None,
        }
    return {
        "size": size,
        "precision": engine.precision.value,
        "baseline": {
            "iterations": baseline_iterations,
            "final_loss": baseline_loss,
            "seconds": baseline_seconds,
            "initial_loss": curve[0][1],
        },
        **results,
    }


def section_step(args: argparse.Namespace) -> list[dict[str, Any]]:
    print(
        f"\nstep: {'size':>5} {'floor s/it':>11} {'step s/it':>10} {'step/floor':>11} {'(min-max)':>14} "
        f"{'xla/plain':>10} {'peak RSS':>9} {'dev peak':>9}"
    )
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        r = run_worker(
            "engine_bench",
            ["step", str(size), args.weights, str(args.rounds), str(args.per_round), "0" if args.no_xla else "1"],
        )
        rows.append(r)
        lo, hi = r["step_over_floor_min_max"]
        xla = f"{r['xla_over_plain']:.2f}x" if "xla_over_plain" in r else "-"
        print(
            f"      {size:>5} {r['floor_s_per_it']:>11.4f} {r['step_s_per_it']:>10.4f} {r['step_over_floor']:>10.3f}x "
            f"{f'{lo:.2f}-{hi:.2f}':>14} {xla:>10} {mib(r['peak_rss_bytes']):>9} {mib(r['device_peak_bytes']):>9}",
            flush=True,
        )
    print(f"      (precision {rows[0]['precision'] if rows else '-'}, chosen by auto)")
    return rows


def section_quality(args: argparse.Namespace) -> dict[str, Any]:
    q = run_worker(
        "engine_bench",
        ["quality", str(args.quality_size), args.weights, str(args.baseline_iterations), str(args.engine_iterations)],
    )
    b = q["baseline"]
    print(
        f"\nquality at {q['size']} px ({q['precision']}): baseline (TF tutorial Adam, {b['iterations']} it) reaches "
        f"loss {b['final_loss']:.4g} in {b['seconds']:.1f}s (from {b['initial_loss']:.4g})"
    )
    for name in ("lbfgs_multiscale", "lbfgs_single_scale"):
        e = q[name]
        if e["seconds_to_baseline_loss"] is None:
            print(f"  {name:20s} did not reach it in its budget (final {e['final_loss']:.4g})")
        else:
            print(
                f"  {name:20s} reaches it in {e['seconds_to_baseline_loss']:.1f}s "
                f"({e['iterations_to_baseline_loss']} it): {e['speedup_vs_baseline']:.1f}x faster"
            )
    return q


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--weights", default="random:0")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--sizes", default="128,256,512")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=3, help="iterations timed per round")
    parser.add_argument("--no-xla", action="store_true")
    parser.add_argument("--quality-size", type=int, default=256)
    parser.add_argument("--baseline-iterations", type=int, default=500)
    parser.add_argument("--engine-iterations", type=int, default=200)
    parser.add_argument("--tiling-megapixels", default="0.25,1,4,16")
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    from benchmarks import w2_bench

    w2_bench.add_arguments(parser)
    args = parser.parse_args()

    if args.worker is not None:
        kind, *rest = args.worker
        if kind == "step":
            size, weights, rounds, per_round, xla = rest
            emit(worker_step(int(size), weights, int(rounds), int(per_round), xla == "1"))
        else:
            size, weights, base_its, eng_its = rest
            emit(worker_quality(int(size), weights, int(base_its), int(eng_its)))
        return

    import tensorflow as tf  # only for the device line

    gpus = tf.config.list_physical_devices("GPU")
    wanted = set(args.only.split(","))
    report: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "gpu": [g.name for g in gpus],
            "tensorflow": tf.__version__,
        },
        "weights": args.weights,
    }
    print(f"device: {'GPU ' + str(gpus) if gpus else 'CPU'} ({os.cpu_count()} cores), weights {args.weights}")
    sizes = [int(s) for s in args.sizes.split(",")]
    if "step" in wanted:
        report["steps"] = section_step(args)
    if "quality" in wanted:
        report["time_to_quality"] = section_quality(args)
    if "precision" in wanted:
        from benchmarks import precision_bench

        report["precision"] = precision_bench.section(args.weights, sizes, args.rounds, args.per_round)
    if "masks" in wanted:
        from benchmarks import masks_bench

        report["masks"] = masks_bench.section(args.weights, args.rounds, args.per_round)
        report["masks_memory"] = masks_bench.memory_section()
    if "tiling" in wanted:
        from benchmarks import tiling_bench

        mps = [float(m) for m in args.tiling_megapixels.split(",")]
        report["tiling"] = tiling_bench.section(args.weights, mps)
    if "cost" in wanted:
        from benchmarks import cost_bench

        report["cost"] = cost_bench.section(args.weights, cost_bench.SIDES, cost_bench.TILED_SIDES)
    if "w2" in wanted:
        report["w2"] = w2_bench.section(args)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "engine_bench.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
