"""Issue 18, side by side in one run: the Wasserstein-2 style loss
(`style_loss = mean_cov`) against the Gram loss, and the iterate average.

* sqrtm:   the C×C square root per layer, eigendecomposition vs Newton–Schulz:
           milliseconds per call and error against numpy float64, on the M of
           a regularized rank-deficient covariance (what a deep layer has);
* step:    seconds per iteration, mean_cov vs gram, per size and precision,
           interleaved round by round in one process per precision;
* quality: W2 distance to the style and content distance of a gram result and
           a mean_cov result at equal iterations, scored by an independent
           float64 numpy implementation on the same VGG (relative per layer:
           W2_l / tr Σ_s,l, averaged over relu1_1..relu5_1; content:
           |F − P|² / |P|² at relu4_2);
* ema:     the returned image's loss with and without the iterate EMA at equal
           iterations (evaluated once on the returned image), and how noisy
           the previews are (mean |Δpixel| between consecutive reported images).

    python -m benchmarks.w2_bench [--sizes 256,512] [--quality-size 128 --iterations 200]
"""

from __future__ import annotations

import argparse
import itertools
import platform
import subprocess
import time
from typing import Any

from benchmarks.common import emit, median, run_worker, sample_images

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def cpu_line() -> str:
    try:
        flags = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        flags = ""
    model = next((ln.split(":", 1)[1].strip() for ln in flags.splitlines() if ln.startswith("Model name")), "?")
    return f"{model} ({'AMX' if ' amx' in flags else 'no AMX'}), {platform.machine()}"


# ------------------------------------------------------------------ sqrtm


def worker_sqrtm(channels: list[int], calls: int) -> dict[str, Any]:
    import numpy as np
    import tensorflow as tf

    from stylize_server.engine import wasserstein

    rows = []
    rng = np.random.default_rng(0)
    for c in channels:
        # features of a deep layer at a small size: fewer positions than channels
        positions = max(8, c // 4)
        f = np.maximum(rng.normal(0, 30, (positions, c)), 0)
        g = np.maximum(rng.normal(0, 30, (4 * c, c)), 0)
        co, cs = np.cov(f.T, bias=True), np.cov(g.T, bias=True)
        eps = 1e-3 * np.trace(cs) / c + 1e-2
        lam, v = np.linalg.eigh(cs + eps * np.eye(c))
        root = (v * np.sqrt(lam)) @ v.T
        m = root @ (co + eps * np.eye(c)) @ root
        want = float(np.sum(np.sqrt(np.maximum(np.linalg.eigvalsh(m), 0))))
        row: dict[str, Any] = {"channels": c, "condition": float(np.linalg.cond(m))}
        for dtype in (tf.float32, tf.float64):
            mt = tf.constant(m[None], dtype)
            floor = tf.constant([eps * eps], dtype)
            variants = {
                "eigh": tf.function(lambda x, fl=floor: wasserstein.sqrtm_eigh(x, fl)[0]),
                "ns20": tf.function(lambda x: wasserstein.sqrtm_newton_schulz(x, 20)[0]),
                "ns40": tf.function(lambda x: wasserstein.sqrtm_newton_schulz(x, 40)[0]),
            }
            for name, fn in variants.items():
                got = float(fn(mt)[0])
                start = time.perf_counter()
                for _ in range(calls):
                    float(fn(mt)[0])
                key = f"{name}_{dtype.name}"
                row[key + "_ms"] = 1e3 * (time.perf_counter() - start) / calls
                row[key + "_error"] = abs(got - want) / want
        rows.append(row)
    return {"rows": rows}


def section_sqrtm(channels: list[int], calls: int) -> list[dict[str, Any]]:
    print("\nW2 square root of M = Σ_s^½ Σ_o Σ_s^½ (a rank-deficient Σ_o + ε·I): ms per call, |tr M^½ error| / tr")
    r = run_worker("w2_bench", ["sqrtm", ",".join(map(str, channels)), str(calls)])
    names = [f"{n}_{d}" for d in ("float32", "float64") for n in ("eigh", "ns20", "ns40")]
    print(f"{'C':>5} {'cond':>8} " + " ".join(f"{n:>20}" for n in names))
    for row in r["rows"]:
        cells = " ".join(f"{row[n + '_ms']:>8.2f}ms {row[n + '_error']:>9.1e}" for n in names)
        print(f"{row['channels']:>5} {row['condition']:>8.1e} {cells}", flush=True)
    return list(r["rows"])


# ------------------------------------------------------------------- step


def worker_step(sizes: list[int], weights: str, rounds: int, per_round: int, precision: str) -> dict[str, Any]:
    from stylize_server.engine.runner import Engine, RunHooks
    from stylize_server.job.options import Inputs, JobOptions, StyleSource

    engine = Engine(weights=weights, precision=precision)
    rows = []
    for size in sizes:
        content, style = sample_images(size)
        inputs = Inputs(content, (StyleSource(style),))
        jobs = {
            loss: JobOptions(
                size=size, iterations=per_round + 2, multiscale=False, term_options=(("style_loss", loss),)
            )
            for loss in ("gram", "mean_cov")
        }

        def time_job(options: JobOptions, inputs: Inputs = inputs) -> float:
            times: list[float] = []
            engine.run(engine.plan(options, inputs), RunHooks(on_iteration=lambda i, dt: times.append(dt)))
            return median(times[1:-1])

        estimate = {k: engine.plan(o, inputs).estimate.scales[0].seconds_per_iteration for k, o in jobs.items()}
        for options in jobs.values():
            time_job(options)  # trace
        samples: dict[str, list[float]] = {k: [] for k in jobs}
        for _ in range(rounds):
            for k, options in jobs.items():
                samples[k].append(time_job(options))
        rows.append(
            {
                "size": size,
                "precision": engine.precision.value,
                **{k: median(v) for k, v in samples.items()},
                "ratio": median([m / g for m, g in zip(samples["mean_cov"], samples["gram"])]),
                "estimated": estimate,
            }
        )
    return {"rows": rows}


def section_step(weights: str, sizes: list[int], rounds: int, per_round: int) -> list[dict[str, Any]]:
    print("\nseconds per iteration, mean_cov vs gram (L-BFGS, one scale); the cost model's estimate beside")
    print(f"{'size':>5} {'precision':>9} {'gram':>8} {'mean_cov':>9} {'ratio':>6} {'est. gram':>10} {'est. w2':>8}")
    rows = []
    for precision in ("float32", "bfloat16"):
        args = ["step", ",".join(map(str, sizes)), weights, str(rounds), str(per_round), precision]
        for r in run_worker("w2_bench", args)["rows"]:
            e = r["estimated"]
            print(
                f"{r['size']:>5} {r['precision']:>9} {r['gram']:>8.3f} {r['mean_cov']:>9.3f} {r['ratio']:>5.2f}x "
                f"{e['gram']:>10.3f} {e['mean_cov']:>8.3f}",
                flush=True,
            )
            rows.append(r)
    return rows


# ---------------------------------------------------------------- quality


def scores(engine: Any, image: Any, content: Any, style: Any) -> dict[str, float]:
    """Independent float64 scores of `image` (numpy eigh, the same VGG)."""
    import numpy as np
    import tensorflow as tf

    from stylize_server.job.layout import Pooling

    def feats(x: Any) -> dict[str, Any]:
        out = engine.vgg(tf.constant(np.asarray(x, np.float32)[None]), (*LAYERS, "relu4_2"), Pooling.AVG)
        return {k: v.numpy().reshape(-1, v.shape[-1]).astype(np.float64) for k, v in out.items()}

    def sqrtm(m: Any) -> Any:
        lam, v = np.linalg.eigh(0.5 * (m + m.T))
        return (v * np.sqrt(np.maximum(lam, 0.0))) @ v.T

    fi, fc, fs = feats(image), feats(content), feats(style)
    relative = []
    for n in LAYERS:
        mo, ms = fi[n].mean(0), fs[n].mean(0)
        co, cs = np.cov(fi[n].T, bias=True), np.cov(fs[n].T, bias=True)
        root = sqrtm(cs)
        w2 = np.sum((mo - ms) ** 2) + np.trace(co) + np.trace(cs) - 2 * np.trace(sqrtm(root @ co @ root))
        relative.append(max(float(w2), 0.0) / float(np.trace(cs) + 1e-12))
    p = fc["relu4_2"]
    return {
        "w2": float(np.mean(relative)),
        "w2_per_layer": relative,
        "content": float(np.sum((fi["relu4_2"] - p) ** 2) / np.sum(p**2)),
    }


def worker_quality(size: int, weights: str, iterations: int, scale: float, style_weight: float) -> dict[str, Any]:
    from stylize_server.engine.runner import Engine
    from stylize_server.engine.terms import meancov
    from stylize_server.job.options import Inputs, JobOptions, StyleSource, output_shape, style_shape

    meancov.W2_SCALE = scale  # a candidate of the weight search (the default when not given)
    engine = Engine(weights=weights, precision="float32")
    content, style = sample_images(size)
    inputs = Inputs(content, (StyleSource(style),))
    shape = output_shape(JobOptions(size=size), content.shape[:2])
    from stylize_server.engine import prepare

    style_at = prepare.resize(style, style_shape(style.shape[:2], shape, 1.0))
    out: dict[str, Any] = {"size": size, "iterations": iterations, "w2_scale": scale, "style_weight": style_weight}
    for loss in ("gram", "mean_cov"):
        options = JobOptions(
            size=size, iterations=iterations, style_weight=style_weight, term_options=(("style_loss", loss),)
        )
        result = engine.run(engine.plan(options, inputs))
        out[loss] = scores(engine, result.pixels, prepare.resize(content, shape), style_at)
    out["w2_ratio"] = out["mean_cov"]["w2"] / out["gram"]["w2"]
    out["content_ratio"] = out["mean_cov"]["content"] / max(out["gram"]["content"], 1e-12)
    return out


def section_quality(weights: str, size: int, iterations: int, scale: float | None) -> dict[str, Any]:
    from stylize_server.engine.terms import meancov

    k = meancov.W2_SCALE if scale is None else scale
    print(f"\nquality at {size} px, {iterations} iterations (L-BFGS, defaults; W2_SCALE {k:g}), float64 numpy scores")
    r = run_worker("w2_bench", ["quality", str(size), weights, str(iterations), str(k), "100"])
    print(f"{'loss':>9} {'W2/tr(Σs)':>10} {'content':>8}   per layer relu1_1..relu5_1")
    for loss in ("gram", "mean_cov"):
        s = r[loss]
        print(f"{loss:>9} {s['w2']:>10.4f} {s['content']:>8.4f}   " + " ".join(f"{v:.3f}" for v in s["w2_per_layer"]))
    print(f"mean_cov / gram: W2 {r['w2_ratio']:.2f}x (goal <= 0.7), content {r['content_ratio']:.2f}x (goal <= 1.5)")
    return r


# -------------------------------------------------------------------- ema


def frames_of(frames: list[Any]) -> Any:
    import numpy as np

    return lambda p: frames.append(np.asarray(p.image, np.float32))


def worker_ema(size: int, weights: str, iterations: int, optimizer: str) -> dict[str, Any]:
    import numpy as np

    from stylize_server.engine.runner import Engine, RunHooks
    from stylize_server.job.options import Inputs, JobOptions, StyleSource

    engine = Engine(weights=weights, precision="float32")
    content, style = sample_images(size)
    inputs = Inputs(content, (StyleSource(style),))
    out: dict[str, Any] = {"size": size, "iterations": iterations, "optimizer": optimizer}
    for average in ("none", "ema"):
        frames: list[Any] = []
        options = JobOptions(
            size=size, iterations=iterations, multiscale=False, optimizer=optimizer, iterate_average=average
        )
        hooks = RunHooks(on_progress=frames_of(frames))
        result = engine.run(engine.plan(options, inputs), hooks)
        tail = frames[len(frames) // 2 :]
        flicker = [float(np.mean(np.abs(b - a))) for a, b in itertools.pairwise(tail)]
        out[average] = {"loss": result.losses.total, "preview_flicker": float(np.mean(flicker))}
    return out


def section_ema(weights: str, size: int, iterations: int) -> list[dict[str, Any]]:
    print(f"\niterate EMA (decay 0.99) vs none at {size} px, {iterations} iterations: the returned image's loss,")
    print("and preview flicker (mean |Δ pixel| between consecutive previews, second half of the run)")
    print(f"{'optimizer':>9} {'loss none':>11} {'loss ema':>11} {'flicker none':>13} {'flicker ema':>12}")
    rows = []
    for optimizer in ("adam", "lbfgs"):
        r = run_worker("w2_bench", ["ema", str(size), weights, str(iterations), optimizer])
        n, e = r["none"], r["ema"]
        print(
            f"{optimizer:>9} {n['loss']:>11.4g} {e['loss']:>11.4g} {n['preview_flicker']:>13.3f} "
            f"{e['preview_flicker']:>12.3f}",
            flush=True,
        )
        rows.append(r)
    return rows


# ------------------------------------------------------------------- main


def section(args: argparse.Namespace) -> dict[str, Any]:
    print(f"\nW2 style loss and iterate EMA (issue 18) on {cpu_line()}")
    sizes = [int(s) for s in args.w2_sizes.split(",")]
    return {
        "cpu": cpu_line(),
        "sqrtm": section_sqrtm([64, 128, 256, 512], 5),
        "step": section_step(args.weights, sizes, args.rounds, args.per_round),
        "quality": section_quality(args.weights, args.w2_quality_size, args.w2_iterations, None),
        "ema": section_ema(args.weights, args.w2_quality_size, args.w2_iterations),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--w2-sizes", default="256,512")
    parser.add_argument("--w2-quality-size", type=int, default=128)
    parser.add_argument("--w2-iterations", type=int, default=200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="random:0")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=3)
    parser.add_argument("--only", default="sqrtm,step,quality,ema")
    parser.add_argument("--w2-scale", type=float, default=None, help="quality only: a candidate W2_SCALE")
    parser.add_argument("--worker", nargs="*")
    add_arguments(parser)
    args = parser.parse_args()
    if args.worker is not None:
        kind, *rest = args.worker
        if kind == "sqrtm":
            emit(worker_sqrtm([int(c) for c in rest[0].split(",")], int(rest[1])))
        elif kind == "step":
            sizes, weights, rounds, per_round, precision = rest
            emit(worker_step([int(s) for s in sizes.split(",")], weights, int(rounds), int(per_round), precision))
        elif kind == "quality":
            size, weights, iterations, scale, style_weight = rest
            emit(worker_quality(int(size), weights, int(iterations), float(scale), float(style_weight)))
        else:
            size, weights, iterations, optimizer = rest
            emit(worker_ema(int(size), weights, int(iterations), optimizer))
        return
    wanted = set(args.only.split(","))
    print(f"W2 style loss and iterate EMA (issue 18) on {cpu_line()}")
    if "sqrtm" in wanted:
        section_sqrtm([64, 128, 256, 512], 5)
    if "step" in wanted:
        section_step(args.weights, [int(s) for s in args.w2_sizes.split(",")], args.rounds, args.per_round)
    if "quality" in wanted:
        section_quality(args.weights, args.w2_quality_size, args.w2_iterations, args.w2_scale)
    if "ema" in wanted:
        section_ema(args.weights, args.w2_quality_size, args.w2_iterations)


if __name__ == "__main__":
    main()
