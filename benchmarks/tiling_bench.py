"""Tiling (issue 12): peak memory and seconds per iteration, tiled against
whole-image, at 0.25, 1, 4 and 16 MP, side by side in one run (each
measurement in its own process, so that its peak RSS is its own).

Configurations (L-BFGS with 5 history pairs throughout, jcjohnson's setting
for large outputs, so that the objective's memory is what differs):
* whole:  the whole image at once;
* cut2:   tiles of 512 px through blocks 1-2, blocks 3-5 whole (the fast cut);
* cut3:   tiles of 512 px through blocks 1-3, blocks 4-5 whole, or in their
          own 512 px tiles where whole would not be bounded by the tile
          (16 MP): the memory-bounded cut.
Each process first runs the same configuration on a 256 px image so that
every function is traced before the clock starts; 16 MP runs one iteration.
A configuration whose estimate exceeds --max-gib is not run (the machine is
shared); its estimate is printed instead.

    python -m benchmarks.tiling_bench [--megapixels 0.25,1,4,16]
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from benchmarks.common import device_peak_bytes, emit, mib, peak_rss_bytes, rss_bytes, run_worker, sample_images

HISTORY = 5
TILE = 512


def side_for(megapixels: float) -> int:
    return int(math.sqrt(megapixels * 1e6)) // 16 * 16


def tiling_for(name: str, side: int) -> Any:
    from stylize_server.cost import Tiling

    if name == "whole":
        return Tiling()
    if name == "cut2":
        return Tiling(TILE, 2, 0)
    return Tiling(TILE, 3, TILE if side * side > 8_000_000 else 0)


def plan_for(engine: Any, side: int, name: str, iterations: int) -> Any:
    from stylize_server import cost, regions
    from stylize_server.options import Inputs, JobOptions, Scale, StyleSource, resolve
    from stylize_server.plan import JobPlan
    from stylize_server.types import Estimate

    content, style = sample_images(side)
    inputs = Inputs(content, (StyleSource(style),))
    options = resolve(JobOptions(size=side, iterations=iterations, multiscale=False, lbfgs_history=HISTORY))
    count = regions.count_regions(inputs.styles, options.unmasked_region)
    scale = cost.scale_estimate(
        options, inputs.shapes, Scale(side, iterations), count, engine.profile, tiling_for(name, side), HISTORY
    )
    estimate = Estimate(inputs.shapes.pixels, (scale,), scale.device_memory_bytes, 0.0, 0.0)
    return JobPlan(options, inputs, estimate)


def worker(megapixels: float, name: str, weights: str, iterations: int) -> dict[str, Any]:
    from dataclasses import replace

    from stylize_server.cost import describe
    from stylize_server.engine import Engine, RunHooks

    engine = Engine(weights=weights)
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
    from stylize_server import cost
    from stylize_server.options import InputShapes, JobOptions, Scale, resolve

    side = side_for(megapixels)
    shapes = InputShapes((side, side), ((side, side),), (None,), (1.0,))
    options = resolve(JobOptions(size=side, iterations=1, multiscale=False, lbfgs_history=HISTORY))
    profile = cost.profile_for("CPU", precision)
    scale = cost.scale_estimate(options, shapes, Scale(side, 1), 1, profile, tiling_for(name, side), HISTORY)
    return {
        "estimated_bytes": scale.device_memory_bytes,
        "estimated_seconds_per_iteration": scale.seconds_per_iteration,
    }


def section(weights: str, megapixels: list[float], max_gib: float = 12.0, precision: str = "bfloat16") -> list[Any]:
    print(
        f"\ntiling: seconds per iteration and peak memory (RSS above the loaded engine), L-BFGS m={HISTORY}, "
        f"tiles of {TILE} px; runs over {max_gib:g} GiB (estimated) are not run"
    )
    print(
        f"{'MP':>5} | {'whole s/it':>10} {'mem':>10} | {'cut2 s/it':>9} {'mem':>9} {'vs whole':>8} | "
        f"{'cut3 s/it':>9} {'mem':>9} {'mem vs whole':>12}"
    )
    rows = []
    for mp in megapixels:
        row: dict[str, Any] = {"megapixels": mp}
        for name in ("whole", "cut2", "cut3"):
            est = estimate_only(mp, name, precision)
            if est["estimated_bytes"] > max_gib * 2**30:
                row[name] = {"not_run": True, **est}
                continue
            iterations = 1 if mp >= 8 else (2 if mp >= 2 else 4)
            row[name] = run_worker("tiling_bench", [str(mp), name, weights, str(iterations)], timeout=7200)

        def cell(name: str, row: dict[str, Any] = row) -> tuple[str, str]:
            r = row[name]
            if r.get("not_run"):
                return "not run", f"~{r['estimated_bytes'] / 2**30:.0f} GiB*"
            used = r["device_peak_bytes"] or r["peak_over_loaded_bytes"]
            return f"{r['seconds_per_iteration']:.2f}", mib(used)

        def ratio(name: str, key: str, row: dict[str, Any] = row) -> str:
            a, b = row[name], row["whole"]
            if a.get("not_run") or b.get("not_run"):
                return "-"
            if key == "time":
                return f"{a['seconds_per_iteration'] / b['seconds_per_iteration']:.2f}x"
            used = (a["device_peak_bytes"] or a["peak_over_loaded_bytes"]) / (
                b["device_peak_bytes"] or b["peak_over_loaded_bytes"]
            )
            return f"{used:.2f}x"

        w, c2, c3 = cell("whole"), cell("cut2"), cell("cut3")
        print(
            f"{mp:>5g} | {w[0]:>10} {w[1]:>10} | {c2[0]:>9} {c2[1]:>9} {ratio('cut2', 'time'):>8} | "
            f"{c3[0]:>9} {c3[1]:>9} {ratio('cut3', 'mem'):>12}",
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
        mp, name, weights, iterations = args.worker
        emit(worker(float(mp), name, weights, int(iterations)))
        return
    section(args.weights, [float(m) for m in args.megapixels.split(",")], args.max_gib)


if __name__ == "__main__":
    main()
