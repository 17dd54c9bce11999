"""Serving benchmarks (numbers, not pass/fail): what the server adds to the
engine, measured side by side against a baseline build (default: the
foundation commit, before the grpc.aio serving core).

1. Served step at 256 px: seconds per iteration of a job served through a
   real `stylize-server` subprocess (from its stylize_iteration_seconds
   histogram, progress frames every iteration), against the floor, a bare
   VGG-19 forward+backward pass in this process. Rounds alternate floor,
   baseline server, this server, so machine drift hits all alike.
2. Overload rejection: the reliability suite's overload scenario (ten times
   as many clients as slots plus queue places, backing off exponentially)
   against each server in turn; p50 and p99 of the RESOURCE_EXHAUSTED answer.

    python benchmarks/serving_bench.py --out benchmarks/results [--baseline 610326f] [--rounds 3]

Prints a table and writes serving_bench.json. Both servers run float32 on
random weights (the weights change values, not cost).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import floor_step, seconds_per_call  # noqa: E402
from tests.reliability import load  # noqa: E402
from tests.reliability.harness import FAST, ServerProc, main_server_args, make_request, spawn_server, stylize  # noqa: E402

FOUNDATION = "610326f"
SIZE = 256


@contextlib.contextmanager
def baseline_tree(ref: str) -> Iterator[pathlib.Path]:
    """The server and client packages of `ref`, unpacked (no git metadata is touched)."""
    with tempfile.TemporaryDirectory(prefix="stylize-baseline-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "server", "client"],
            check=True,
            capture_output=True,
        ).stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        yield pathlib.Path(tmp)


def baseline_env(tree: pathlib.Path) -> dict[str, str]:
    # PYTHONPATH comes before the editable install's finder on sys.path.
    return {"PYTHONPATH": f"{tree / 'server'}:{tree / 'client'}"}


def check_baseline_imports(tree: pathlib.Path) -> str:
    env = dict(os.environ, **baseline_env(tree))
    done = subprocess.run(
        [sys.executable, "-c", "import stylize_server; print(stylize_server.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    where = done.stdout.strip()
    if not where.startswith(str(tree)):
        raise SystemExit(f"the baseline build does not import from {tree}: {where}")
    return where


def floor_seconds(per_round: int) -> float:
    """Seconds of one bare VGG-19 forward+backward at SIZE px (this process)."""
    import numpy as np
    import tensorflow as tf

    from stylize_server.engine.vgg import VGG19Features
    from stylize_server.job.layout import Pooling, needed_layers
    from stylize_server.job.options import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS

    global _floor
    if "_floor" not in globals():
        vgg = VGG19Features("random:0")
        layers = needed_layers([n for n, _ in DEFAULT_CONTENT_LAYERS], [n for n, _ in DEFAULT_STYLE_LAYERS])

        step = floor_step(lambda image: vgg(image, layers, Pooling.AVG))
        x = tf.constant(np.random.default_rng(0).uniform(0, 255, (1, SIZE, SIZE, 3)).astype(np.float32))
        _floor = (step, x)
    step, x = _floor
    return seconds_per_call(step, x, per_round)


def served_seconds(server: ServerProc, iterations: int) -> float:
    """Seconds per iteration of one served SIZE px job, from the server's histogram."""
    count0 = server.metric("stylize_iteration_seconds_count")
    sum0 = server.metric("stylize_iteration_seconds_sum")
    request = make_request(size=SIZE, iterations=iterations, content=(SIZE, SIZE), style=(SIZE, SIZE))
    request.multiscale = False
    outcome = stylize(server.stub(), request, timeout=600)
    if not outcome.ok:
        raise SystemExit(f"served job failed: {outcome.code.name} {outcome.details}")
    count = server.metric("stylize_iteration_seconds_count") - count0
    return (server.metric("stylize_iteration_seconds_sum") - sum0) / count


def server_args(own: bool) -> list[str]:
    args = ["--warmup-sizes", str(SIZE), "--max-pixels", str(SIZE * SIZE), "--max-side", str(SIZE)]
    return args + (["--precision", "float32"] if own else [])


def measure_step(args: argparse.Namespace, command: list[str], env: dict[str, str]) -> dict:
    floors: list[float] = []
    served: dict[str, list[float]] = {"baseline": [], "branch": []}
    with (
        spawn_server(*server_args(False), command=command, env=env) as base,
        spawn_server(*server_args(True)) as own,
    ):
        for server in (base, own):  # warm: the first job traces the step for this shape
            served_seconds(server, 3)
        for _ in range(args.rounds):
            floors.append(floor_seconds(args.iterations))
            served["baseline"].append(served_seconds(base, args.iterations))
            served["branch"].append(served_seconds(own, args.iterations))
    out: dict = {"floor_s_per_it": statistics.median(floors)}
    for name, values in served.items():
        ratios = [s / f for s, f in zip(values, floors)]
        out[f"{name}_s_per_it"] = statistics.median(values)
        out[f"{name}_over_floor"] = statistics.median(ratios)
        out[f"{name}_over_floor_min_max"] = [min(ratios), max(ratios)]
    return out


def measure_overload(args: argparse.Namespace, command: list[str], env: dict[str, str]) -> dict:
    rejections: dict[str, list[dict]] = {"baseline": [], "branch": []}
    for _ in range(args.overload_rounds):
        for name, cmd, extra in (("baseline", command, env), ("branch", None, None)):
            with spawn_server(*main_server_args(FAST), command=cmd, env=extra) as server:
                result = load.run_overload(server, FAST)
            keys = ("rejected", "reject_p50_ms", "reject_p99_ms", "jobs_completed")
            rejections[name].append({k: result.figures.get(k) for k in keys})
    return {
        name: {
            "rounds": runs,
            "reject_p50_ms": statistics.median(r["reject_p50_ms"] for r in runs if r["reject_p50_ms"] is not None),
            "reject_p99_ms": statistics.median(r["reject_p99_ms"] for r in runs if r["reject_p99_ms"] is not None),
        }
        for name, runs in rejections.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--baseline", default=FOUNDATION, help="git ref of the baseline build")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=12, help="iterations of each served job")
    parser.add_argument("--overload-rounds", type=int, default=2)
    parser.add_argument("--skip-step", action="store_true", help="only the overload rejection")
    args = parser.parse_args()

    report: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "baseline": args.baseline}
    command = [sys.executable, "-m", "stylize_server.app"]
    with baseline_tree(args.baseline) as tree:
        report["baseline_imports_from"] = check_baseline_imports(tree)
        env = baseline_env(tree)
        if not args.skip_step:
            report["served_step"] = measure_step(args, command, env)
        report["overload"] = measure_overload(args, command, env)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nServing, CPU float32, baseline {args.baseline} vs this branch, side by side in one run\n")
    print("| build | served step at 256 px (s/it) | served / floor (min-max) | overload reject p50 | p99 |")
    print("|---|---|---|---|---|")
    step, over = report.get("served_step"), report["overload"]
    for name in ("baseline", "branch"):
        if step:
            lo, hi = step[f"{name}_over_floor_min_max"]
            stepped = f"{step[f'{name}_s_per_it']:.3f} | {step[f'{name}_over_floor']:.2f}x ({lo:.2f}-{hi:.2f})"
        else:
            stepped = "- | -"
        print(f"| {name} | {stepped} | {over[name]['reject_p50_ms']:.1f} ms | {over[name]['reject_p99_ms']:.1f} ms |")
    if step:
        print(f"\nfloor: bare VGG-19 fwd+bwd at {SIZE} px, {step['floor_s_per_it']:.3f} s/it")
    print(f"wrote {args.out / 'serving_bench.json'}")


if __name__ == "__main__":
    main()
