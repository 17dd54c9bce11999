"""The cost model against measurement (issue 9, item 2): estimated and
measured peak memory and seconds per iteration over a grid of sizes, whole
and tiled, in float32 and bfloat16. Each measurement runs in its own process
(tiling_bench's worker): memory is the process's peak RSS above the loaded,
traced engine (CPU) or TensorFlow's peak device memory (GPU); seconds are the
mean of a few iterations after tracing. `fit` prints the profile figures that
would make the model match (what profiles.PROFILES holds).

    python -m benchmarks.cost_bench [--sides 256,512,768,1024] [--tiled-sides 1024,1536]
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.common import mib, run_worker

PRECISIONS = ("float32", "bfloat16")
SIDES = [256, 512, 768, 1024]  # whole image
TILED_SIDES = [1024, 1536]


def measure(side: int, name: str, weights: str, precision: str) -> dict[str, Any]:
    iterations = 3 if side <= 1024 else 2
    mp = side * side / 1e6
    return run_worker("tiling_bench", ["memory", repr(mp), name, weights, str(iterations), precision], timeout=7200)


def fit(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per precision: the multiply-add rate that makes the whole-image
    estimates match (median of the sizes), and the ratio measured/estimated
    memory (median): the factor by which `keep` should move."""
    import statistics

    out: dict[str, dict[str, float]] = {}
    for precision in PRECISIONS:
        mine = [r for r in rows if r["precision"] == precision]
        whole = [r for r in mine if r["config"] == "whole"]
        if not whole:
            continue
        speed = [r["estimated_seconds_per_iteration"] / r["seconds_per_iteration"] for r in whole]
        memory = [r["used_bytes"] / r["estimated_bytes"] for r in mine if r["side"] >= 512]
        out[precision] = {
            "rate_factor": statistics.median(speed),
            "memory_factor": statistics.median(memory) if memory else float("nan"),
        }
    return out


def section(weights: str, sides: list[int], tiled_sides: list[int]) -> dict[str, Any]:
    print("\ncost model: estimated vs measured, per iteration (memory: peak above the loaded engine)")
    print(
        f"{'precision':>9} {'side':>5} {'run':>5} | {'est mem':>9} {'measured':>9} {'ratio':>6} | "
        f"{'est s/it':>8} {'measured':>8} {'ratio':>6}"
    )
    rows = []
    for precision in PRECISIONS:
        grid = [(s, "whole") for s in sides] + [(s, "cut3") for s in tiled_sides] + [(s, "cut2") for s in tiled_sides]
        for side, name in grid:
            r = measure(side, name, weights, precision)
            r["used_bytes"] = r["device_peak_bytes"] or r["peak_over_loaded_bytes"]
            rows.append(r)
            est_s, got_s = r["estimated_seconds_per_iteration"], r["seconds_per_iteration"]
            print(
                f"{precision:>9} {side:>5} {name:>5} | {mib(r['estimated_bytes']):>9} {mib(r['used_bytes']):>9} "
                f"{r['used_bytes'] / r['estimated_bytes']:>5.2f}x | {est_s:>8.2f} {got_s:>8.2f} {got_s / est_s:>5.2f}x",
                flush=True,
            )
    factors = fit(rows)
    for precision, f in factors.items():
        print(
            f"  fit {precision}: measured/estimated memory {f['memory_factor']:.2f} (sides >= 512), "
            f"estimated/measured speed {f['rate_factor']:.2f} (whole image)"
        )
    return {"rows": rows, "fit": factors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="random:0")
    parser.add_argument("--sides", default=",".join(map(str, SIDES)))
    parser.add_argument("--tiled-sides", default=",".join(map(str, TILED_SIDES)))
    args = parser.parse_args()
    section(args.weights, [int(s) for s in args.sides.split(",")], [int(s) for s in args.tiled_sides.split(",")])


if __name__ == "__main__":
    main()
