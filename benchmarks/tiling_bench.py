"""Tiling (issue 12): peak memory and seconds per iteration, tiled against
whole-image, at 0.25, 1, 4 and 16 MP, side by side in one run (each
measurement in its own process, so that its peak RSS is its own).

Configurations (L-BFGS with 5 history pairs throughout, jcjohnson's setting
for large outputs, so that the objective's memory is what differs):
* whole:  the whole image at once;
* cut2:   tiles of 512 px (256 px at 0.25 MP) through blocks 1-2, blocks 3-5
          whole (the fast cut);
* cut3:   tiles of 512 px (256 px) through blocks 1-3, blocks 4-5 whole, or
          in their own tiles where whole would not be bounded by the tile
          (16 MP): the memory-bounded cut.
Seconds: one process per size evaluates the loss and gradient of every
configuration on the same image and targets, interleaved round by round
(the machine is shared: only side-by-side ratios are fair), after tracing
each on a 256 px image; the median per configuration. Memory: one process
per (size, configuration) runs a 1-iteration job (targets included) and
reports its peak RSS above the loaded, traced engine. A configuration whose
estimate exceeds --max-gib is not run (the machine is shared); its estimate
is printed instead. 16 MP is timed by its single iteration.

    python -m benchmarks.tiling_bench [--megapixels 0.25,1,4,16]
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from benchmarks.common import (
    device_peak_bytes,
    emit,
    median,
    mib,
    peak_rss_bytes,
    rss_bytes,
    run_worker,
    sample_images,
)

HISTORY = 5
TILE = 512


def side_for(megapixels: float) -> int:
    return round(math.sqrt(megapixels * 1e6)) // 16 * 16


def tile_for(side: int) -> int:
    """512 px tiles; 256 px below 1 MP, so that 0.25 MP is tiled too."""
    return TILE if side > 2 * 256 else 256


def tiling_for(name: str, side: int) -> Any:
    from stylize_server.job.tilings import Tiling

    tile = tile_for(side)
    if name == "whole":
        return Tiling()
    if name == "cut2":
        return Tiling(tile, 2, 0)
    return Tiling(tile, 3, tile if side * side > 8_000_000 else 0)


def plan_for(engine: Any, side: int, name: str, iterations: int) -> Any:
    from stylize_server.engine import regions
    from stylize_server.job import cost
    from stylize_server.job.geometry import Scale
    from stylize_server.job.options import Inputs, JobOptions, StyleSource, resolve
    from stylize_server.job.plan import JobPlan
    from stylize_server.job.types import Estimate

    content, style = sample_images(side)
    inputs = Inputs(content, (StyleSource(style),))
    options = resolve(JobOptions(size=side, iterations=iterations, multiscale=False, lbfgs_history=HISTORY))
    count = regions.count_regions(inputs.styles, options.unmasked_region)
    scale = cost.scale_estimate(
        options,
        inputs.shapes,
        Scale(side, iterations),
        count,
        engine.profile,
        tiling_for(name, side),
        HISTORY,
        engine.term_costs,
    )
    estimate = Estimate(inputs.shapes.pixels, (scale,), scale.device_memory_bytes, 0.0, 0.0)
    return JobPlan(options, estimate, inputs)


def worker_time(
    megapixels: float, names: list[str], weights: str, rounds: int, precision: str = "auto"
) -> dict[str, Any]:
    """Median seconds of one loss-and-gradient evaluation per configuration,
    interleaved round by round on one image and one set of targets."""
    import time

    import numpy as np

    from stylize_server.engine import regions
    from stylize_server.engine import targets as job_targets
    from stylize_server.engine.runner import Engine
    from stylize_server.engine.spec import job_spec, layout_of

    engine = Engine(weights=weights, precision=precision)

    def setup(side: int) -> tuple[Any, dict[str, Any], Any]:
        plans = {n: plan_for(engine, side, n, 1) for n in names}
        first = next(iter(plans.values()))
        job = job_spec(first.options, engine.precision, False)
        options = job.options
        steps = engine.compiled(job.loss)
        evaluators = {n: steps.evaluator(layout_of(p.scales[0])) for n, p in plans.items()}
        inputs = first.inputs
        found = regions.plan_regions(inputs.styles, options.unmasked_region, inputs.content.shape[:2])
        build_with = evaluators[names[-1]]  # the most tiled: the least memory
        built = job_targets.build(build_with, job, inputs.content, [s.image for s in inputs.styles], found, bool)
        x = job_targets.batch(inputs.content.astype(np.float32))
        return x, evaluators, built

    x, evaluators, built = setup(256)
    for evaluator in evaluators.values():
        evaluator.value_and_grad(x, built)  # trace
    side = side_for(megapixels)
    x, evaluators, built = setup(side)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        for name, evaluator in evaluators.items():
            started = time.perf_counter()
            terms, grad = evaluator.value_and_grad(x, built)
            float(terms[0]), grad.numpy()
            samples[name].append(time.perf_counter() - started)
    return {
        "megapixels": side * side / 1e6,
        "side": side,
        "precision": engine.precision.value,
        "seconds": {n: median(v) for n, v in samples.items()},
        "ratio_to_whole": (
            {n: median([a / b for a, b in zip(v, samples["whole"])]) for n, v in samples.items()}
            if "whole" in samples
            else {}
        ),
    }


def worker_memory(
    megapixels: float, name: str, weights: str, iterations: int, precision: str = "auto"
) -> dict[str, Any]:
    from dataclasses import replace

    from stylize_server.engine.runner import Engine, RunHooks
    from stylize_server.job.tilings import describe

    engine = Engine(weights=weights, precision=precision)
    side = side_for(megapixels)
    # Trace every function this configuration may use (the whole-image step,
    # and the tile functions through 64 px tiles) on a small image first.
    engine.run(plan_for(engine, 256, "whole", 2))
    if name != "whole":
        small = plan_for(engine, 256, name, 2)
        scale = replace(small.scales[0], **{**_tiled_fields(name), "tiles": 16})
        engine.run(replace(small, estimate=replace(small.estimate, scales=(scale,))))
    base = rss_bytes()
    plan = plan_for(engine, side, name, iterations)
    times: list[float] = []
    result = engine.run(plan, RunHooks(on_iteration=lambda i, dt: times.append(dt)))
    assert result.iterations == iterations
    scale = plan.scales[0]
    return {
        "megapixels": side * side / 1e6,
        "side": side,
        "config": name,
        "precision": engine.precision.value,
        "layout": describe(scale),
        "seconds_per_iteration": sum(times) / iterations,
        "peak_rss_bytes": peak_rss_bytes(),
        "peak_over_loaded_bytes": peak_rss_bytes() - base,
        "device_peak_bytes": device_peak_bytes(),
        "estimated_bytes": scale.device_memory_bytes,
        "estimated_seconds_per_iteration": scale.seconds_per_iteration,
    }


def _tiled_fields(name: str) -> dict[str, int]:
    split = 2 if name == "cut2" else 3
    return {"tile_size": 64, "split_block": split, "deep_tile_size": 0 if name == "cut2" else 64}


def estimate_only(megapixels: float, name: str, precision: str) -> dict[str, Any]:
    from stylize_server.engine import terms
    from stylize_server.job import cost, profiles
    from stylize_server.job.geometry import Scale
    from stylize_server.job.options import InputShapes, JobOptions, resolve

    side = side_for(megapixels)
    shapes = InputShapes((side, side), ((side, side),), (None,), (1.0,))
    options = resolve(JobOptions(size=side, iterations=1, multiscale=False, lbfgs_history=HISTORY))
    profile = profiles.profile_for("CPU", precision)
    scale = cost.scale_estimate(
        options, shapes, Scale(side, 1), 1, profile, tiling_for(name, side), HISTORY, terms.costs()
    )
    return {
        "estimated_bytes": scale.device_memory_bytes,
        "estimated_seconds_per_iteration": scale.seconds_per_iteration,
    }


def _cells(
    name: str,
    seconds: dict[str, float],
    ratios: dict[str, float],
    used: dict[str, int],
    estimates: dict[str, dict[str, float]],
) -> tuple[str, str, str]:
    if name not in seconds:
        return "not run", "-", f"~{estimates[name]['estimated_bytes'] / 2**30:.0f} GiB*"
    vs = f"{ratios[name]:.2f}x" if name in ratios else "-"
    return f"{seconds[name]:.2f}", vs, mib(used[name])


def section(weights: str, megapixels: list[float], max_gib: float = 12.0, precision: str = "bfloat16") -> list[Any]:
    print(
        f"\ntiling ({precision}): seconds per iteration (loss and gradient, interleaved in one process) and peak "
        f"memory (RSS above the loaded engine, 1-iteration job in its own process); L-BFGS m={HISTORY}, "
        f"tiles of {TILE} px (256 px at 0.25 MP); runs estimated over {max_gib:g} GiB are not run"
    )
    print(
        f"{'MP':>5} | {'whole s/it':>10} {'mem':>10} | {'cut2 s/it':>9} {'vs whole':>8} {'mem':>9} | "
        f"{'cut3 s/it':>9} {'vs whole':>8} {'mem':>9} {'mem/whole':>9}"
    )
    rows = []
    for mp in megapixels:
        row: dict[str, Any] = {"megapixels": mp, "memory": {}, "estimates": {}}
        runnable = []
        for name in ("whole", "cut2", "cut3"):
            est = estimate_only(mp, name, precision)
            row["estimates"][name] = est
            if est["estimated_bytes"] > max_gib * 2**30:
                continue
            runnable.append(name)
            row["memory"][name] = run_worker("tiling_bench", ["memory", repr(mp), name, weights, "1"], timeout=7200)
        if mp < 8 and runnable:
            row["time"] = run_worker("tiling_bench", ["time", repr(mp), ",".join(runnable), weights, "2"], 7200)
            seconds = row["time"]["seconds"]
        else:  # one iteration each: the memory runs' own
            seconds = {n: row["memory"][n]["seconds_per_iteration"] for n in runnable}
        used = {n: m["device_peak_bytes"] or m["peak_over_loaded_bytes"] for n, m in row["memory"].items()}
        ratios = row.get("time", {}).get("ratio_to_whole", {})

        w, c2, c3 = (_cells(n, seconds, ratios, used, row["estimates"]) for n in ("whole", "cut2", "cut3"))
        share = f"{used['cut3'] / used['whole']:.2f}x" if "whole" in used and "cut3" in used else "-"
        print(
            f"{mp:>5g} | {w[0]:>10} {w[2]:>10} | {c2[0]:>9} {c2[1]:>8} {c2[2]:>9} | "
            f"{c3[0]:>9} {c3[1]:>8} {c3[2]:>9} {share:>9}",
            flush=True,
        )
        rows.append(row)
    print("  (* not run: the cost model's estimate; the machine is shared)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="random:0")
    parser.add_argument("--megapixels", default="0.25,1,4,16")
    parser.add_argument("--max-gib", type=float, default=12.0)
    parser.add_argument("--worker", nargs="*")
    args = parser.parse_args()
    if args.worker is not None:
        kind, mp, *rest = args.worker
        if kind == "time":
            emit(worker_time(float(mp), rest[0].split(","), rest[1], int(rest[2]), *rest[3:]))
        else:
            name, weights, iterations, *precision = rest
            emit(worker_memory(float(mp), name, weights, int(iterations), *precision))
        return
    section(args.weights, [float(m) for m in args.megapixels.split(",")], args.max_gib)


if __name__ == "__main__":
    main()
