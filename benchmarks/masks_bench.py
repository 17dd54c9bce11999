"""Masks (issue 11): seconds per iteration of a job with 2 styles on
complementary masks (guided Gram matrices, 2 regions) against 1 unmasked
style, at 256 px, side by side in one process, interleaved round by round.
And (issue 17) masked jobs' peak memory against the cost model's estimate,
each case in its own process (tests/support/maskmem.py).

    python -m benchmarks.masks_bench
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.common import emit, median, run_worker, sample_images


def worker(size: int, weights: str, rounds: int, per_round: int, precision: str) -> dict[str, Any]:
    import numpy as np

    from stylize_server.engine.runner import Engine, RunHooks
    from stylize_server.job.options import Inputs, JobOptions, StyleSource

    engine = Engine(weights=weights, precision=precision)
    content, style = sample_images(size)
    other = np.ascontiguousarray(style[:, ::-1, ::-1])
    left = np.zeros((size, size), np.float32)
    left[:, : size // 2] = 1.0
    jobs = {
        "unmasked_1_style": Inputs(content, (StyleSource(style),)),
        "masked_2_styles": Inputs(content, (StyleSource(style, mask=left), StyleSource(other, mask=1.0 - left))),
    }
    options = JobOptions(size=size, iterations=per_round + 2, multiscale=False)

    def time_job(inputs: Inputs) -> float:
        times: list[float] = []
        engine.run(engine.plan(options, inputs), RunHooks(on_iteration=lambda i, dt: times.append(dt)))
        return median(times[1:-1])

    for inputs in jobs.values():
        time_job(inputs)  # trace
    samples: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(rounds):
        for name, inputs in jobs.items():
            samples[name].append(time_job(inputs))
    ratios = [m / u for m, u in zip(samples["masked_2_styles"], samples["unmasked_1_style"])]
    return {
        "size": size,
        "precision": engine.precision.value,
        **{name: median(values) for name, values in samples.items()},
        "masked_over_unmasked": median(ratios),
        "ratio_min_max": [min(ratios), max(ratios)],
    }


def section(weights: str, rounds: int, per_round: int, size: int = 256) -> list[dict[str, Any]]:
    print(f"\nmasks at {size} px: seconds per iteration, 2 masked styles (2 regions) vs 1 unmasked style")
    print(f"{'precision':>10} {'1 unmasked':>11} {'2 masked':>9} {'ratio':>7} {'(min-max)':>11}")
    rows = []
    for precision in ("float32", "bfloat16"):
        r = run_worker("masks_bench", [str(size), weights, str(rounds), str(per_round), precision])
        lo, hi = r["ratio_min_max"]
        print(
            f"{r['precision']:>10} {r['unmasked_1_style']:>11.3f} {r['masked_2_styles']:>9.3f} "
            f"{r['masked_over_unmasked']:>6.2f}x {f'{lo:.2f}-{hi:.2f}':>11}",
            flush=True,
        )
        rows.append(r)
    return rows


MEMORY_CASES = (
    "256:8:late:float32:whole",
    "256:8:early:float32:whole",
    "512:8:late:float32:whole",
    "512:8:early:float32:whole",
    "512:8:early:bfloat16:whole",
    "512:8:early:float32:tiled",
)


def memory_section(cases: tuple[str, ...] = MEMORY_CASES) -> list[dict[str, Any]]:
    import json
    import os
    import subprocess
    import sys

    from benchmarks.common import ROOT, mib

    print("\nmasks: peak memory (RSS rise of the job) against the estimate; case = side:regions:layers:precision:run")
    print(f"{'case':>28} {'measured':>10} {'estimated':>10} {'ratio':>6}")
    rows = []
    for case in cases:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run(
            [sys.executable, "-m", "tests.support.maskmem", case],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            check=False,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"maskmem {case} failed:\n{proc.stderr[-3000:]}")
        r = json.loads(lines[-1])
        print(f"{case:>28} {mib(r['used_bytes']):>10} {mib(r['estimated_bytes']):>10} {r['ratio']:>5.2f}x", flush=True)
        rows.append(r)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="random:0")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=3)
    parser.add_argument("--worker", nargs="*")
    args = parser.parse_args()
    if args.worker is not None:
        size, weights, rounds, per_round, precision = args.worker
        emit(worker(int(size), weights, int(rounds), int(per_round), precision))
        return
    section(args.weights, args.rounds, args.per_round, args.size)
    memory_section()


if __name__ == "__main__":
    main()
