"""Engine benchmarks (numbers, not pass/fail): `make bench`.

1. Seconds per iteration at 128, 256 and 512 px: the engine's full L-BFGS step
   (loss, gradient, two-loop direction, host bookkeeping) against the floor, a
   bare forward+backward pass through the same truncated VGG-19. Measured side
   by side in one process, interleaved round by round, medians reported.
   Also the same step with XLA, to decide where XLA helps.
2. Time to quality at 256 px: the engine (L-BFGS, multi-scale 128 -> 256)
   against a baseline that mirrors the TensorFlow tutorial (Adam lr 0.02,
   β1 0.99, ε 0.1 on a 0..1 image clipped each step, single scale), same
   images, weights and loss: wall time until the engine's total loss at full
   size is at or below what the baseline reaches after 500 iterations.
3. Peak memory per size: process peak RSS on the CPU (each size runs in its
   own process) and the device's peak where TensorFlow reports it (GPU).

Prints a table and writes JSON to --out. Runs on random weights by default
(--weights imagenet or PATH for the real ones).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def sample_images(size: int):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from make_samples import content_image, style_image  # type: ignore[import-not-found]

        return content_image(size, size), style_image(size, size)
    except Exception:
        import numpy as np

        yy, xx = np.mgrid[0:size, 0:size]
        content = np.stack([xx * 255 // size, yy * 255 // size, (xx + yy) * 127 // size], -1).astype(np.uint8)
        rng = np.random.default_rng(0)
        style = rng.integers(0, 256, (size // 16, size // 16, 3)).repeat(16, 0).repeat(16, 1).astype(np.uint8)
        return content, style


def device_peak_bytes() -> int | None:
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return None
    return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])


def worker_step(size: int, weights: str, rounds: int, per_round: int, xla: bool) -> dict:
    import numpy as np
    import tensorflow as tf

    from stylize_server.engine import Engine, RunHooks
    from stylize_server.layout import needed_layers
    from stylize_server.options import Inputs, JobOptions, StyleSource

    engine = Engine(weights=weights, xla=False)
    engine_xla = Engine(weights=weights, xla=True) if xla else None
    content, style = sample_images(size)
    options = JobOptions(size=size, iterations=per_round + 1, multiscale=False)
    inputs = Inputs(content, (StyleSource(style),))
    layers = needed_layers([n for n, _ in options.content_layers], [n for n, _ in options.style_layers])

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    def floor_step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            feats = engine.vgg(x, layers, engine.default_pooling)
            total = tf.add_n([tf.reduce_sum(f) for f in feats.values()])
        return total, tape.gradient(total, x)

    x = tf.constant(content[None].astype(np.float32))

    def time_floor() -> float:
        floor_step(x)[0].numpy()  # warm
        t = time.perf_counter()
        for _ in range(per_round):
            total, _grad = floor_step(x)
            float(total)
        return (time.perf_counter() - t) / per_round

    def time_engine(e) -> float:
        times: list[float] = []
        e.run(e.plan(options, inputs), RunHooks(on_iteration=lambda i, dt: times.append(dt)))
        return statistics.median(times[1:])  # the first includes the one-off targets

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
    out = {
        "size": size,
        "floor_s_per_it": statistics.median(floors),
        "step_s_per_it": statistics.median(steps),
        "step_over_floor": statistics.median(ratios),
        "step_over_floor_min_max": [min(ratios), max(ratios)],
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "device_peak_bytes": device_peak_bytes(),
    }
    if xla_steps:
        out["xla_step_s_per_it"] = statistics.median(xla_steps)
        out["xla_over_plain"] = statistics.median([a / b for a, b in zip(xla_steps, steps)])
    return out


def worker_quality(size: int, weights: str, baseline_iterations: int, engine_iterations: int) -> dict:
    import numpy as np
    import tensorflow as tf

    from stylize_server.engine import Engine, RunHooks
    from stylize_server.optimize import LossSpec, target_args
    from stylize_server.options import Inputs, JobOptions, Optimizer, StyleSource, resolve

    engine = Engine(weights=weights)
    content, style = sample_images(size)
    inputs = Inputs(content, (StyleSource(style),))
    options = resolve(JobOptions(size=size, multiscale=False))
    assert options.pooling is not None
    spec = LossSpec(
        tuple(n for n, _ in options.content_layers), tuple(n for n, _ in options.style_layers), options.pooling
    )
    objective = engine._objective(spec)
    targets = engine.targets(objective, options, inputs, content, lambda: False)
    assert targets is not None
    args = target_args(targets)

    # The TensorFlow tutorial's loop: a 0..1 image variable, Adam(0.02, 0.99, 0.1), clip after each step.
    image = tf.Variable(content[None].astype(np.float32) / 255.0)
    adam = tf.keras.optimizers.Adam(learning_rate=0.02, beta_1=0.99, epsilon=1e-1)

    @tf.function
    def baseline_step():
        with tf.GradientTape() as tape:
            terms = objective.weighted_terms(image * 255.0, args)
            total = terms[0] + terms[1] + terms[2]
        adam.apply_gradients([(tape.gradient(total, image), image)])
        image.assign(tf.clip_by_value(image, 0.0, 1.0))
        return total

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
        "baseline": {
            "iterations": baseline_iterations,
            "final_loss": baseline_loss,
            "seconds": baseline_seconds,
            "initial_loss": curve[0][1],
        },
        **results,
    }


def run_worker(args: list[str]) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", *args], capture_output=True, text=True, env=env, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"worker {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def fmt_bytes(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--weights", default="random:0")
    parser.add_argument("--sizes", default="128,256,512")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=4, help="iterations timed per round")
    parser.add_argument("--no-xla", action="store_true")
    parser.add_argument("--quality-size", type=int, default=256)
    parser.add_argument("--baseline-iterations", type=int, default=500)
    parser.add_argument("--engine-iterations", type=int, default=200)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker is not None:
        kind, *rest = args.worker
        if kind == "step":
            size, weights, rounds, per_round, xla = rest
            print(json.dumps(worker_step(int(size), weights, int(rounds), int(per_round), xla == "1")))
        else:
            size, weights, base_its, eng_its = rest
            print(json.dumps(worker_quality(int(size), weights, int(base_its), int(eng_its))))
        return

    import tensorflow as tf  # only for the device line

    gpus = tf.config.list_physical_devices("GPU")
    report: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "gpu": [g.name for g in gpus],
            "tensorflow": tf.__version__,
        },
        "weights": args.weights,
        "steps": [],
    }
    print(f"device: {'GPU ' + str(gpus) if gpus else 'CPU'} ({os.cpu_count()} cores), weights {args.weights}")
    print(
        f"{'size':>6} {'floor s/it':>11} {'step s/it':>10} {'step/floor':>11} {'(min-max)':>14} "
        f"{'xla/plain':>10} {'peak RSS':>9} {'dev peak':>9}"
    )
    for size in [int(s) for s in args.sizes.split(",")]:
        r = run_worker(
            ["step", str(size), args.weights, str(args.rounds), str(args.per_round), "0" if args.no_xla else "1"]
        )
        report["steps"].append(r)
        lo, hi = r["step_over_floor_min_max"]
        xla = f"{r['xla_over_plain']:.2f}x" if "xla_over_plain" in r else "-"
        print(
            f"{size:>6} {r['floor_s_per_it']:>11.4f} {r['step_s_per_it']:>10.4f} {r['step_over_floor']:>10.3f}x "
            f"{f'{lo:.2f}-{hi:.2f}':>14} {xla:>10} {fmt_bytes(r['peak_rss_bytes']):>9} "
            f"{fmt_bytes(r['device_peak_bytes']):>9}",
            flush=True,
        )

    if not args.skip_quality:
        q = run_worker(
            [
                "quality",
                str(args.quality_size),
                args.weights,
                str(args.baseline_iterations),
                str(args.engine_iterations),
            ]
        )
        report["time_to_quality"] = q
        b = q["baseline"]
        print(
            f"\ntime to quality at {q['size']} px: baseline (TF tutorial Adam, {b['iterations']} it) reaches "
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

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "engine_bench.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
