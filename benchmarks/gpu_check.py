"""`make gpu-check`: everything that needs a GPU, in one run of under 8
minutes, as one table; and the measured profile the cost model reads.

1. gate:   an NVIDIA GPU on this machine (/dev/nvidia*, the driver's
           /proc entry or `nvidia-smi -L`), before anything heavy is loaded;
           without one the check fails at once. Then TensorFlow must see it.
2. tests:  `pytest -m gpu` (tests/test_gpu.py: bfloat16 on the device,
           memory growth, the precision measurement, a short job through a
           real server). Skipped counts as failed.
3. steps:  seconds per iteration of a real job (L-BFGS, one scale, random
           weights) at 512 and 1024 px, float32 and bfloat16, XLA off and on;
           the device's peak memory of those iterations (TensorFlow's
           allocator peak, reset before each measurement, above what was in
           use), per megapixel; the cost model's estimates beside them.
4. fit:    the profile figures that make the cost model match (gpu_fit.py),
           written to OUT/device_profile.json: `stylize-server
           --device-profile PATH` (STYLIZE_DEVICE_PROFILE) makes the cost
           model use them; `--device-profile PATH` here compares against it.

Everything runs in subprocesses under one deadline: a stage that hangs or
a worker that dies costs its own rows, not the table. Exit 0: all passed;
1: something failed or was not run (the table says what); 2: no GPU.

    python -m benchmarks.gpu_check [--out benchmarks/results] [--sizes 512,1024]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from typing import Any

from benchmarks import gpu_fit
from benchmarks.common import ROOT, emit, median

BUDGET_SECONDS = 450.0  # the whole run; the promise is 8 minutes
TESTS_SECONDS = 200.0
PROBE_SECONDS = 90.0
PRECISIONS = ("float32", "bfloat16")
TEST_FILE = "tests/test_gpu.py"
NO_GPU = 2


def find_gpu(
    dev: pathlib.Path = pathlib.Path("/dev"),
    proc: pathlib.Path = pathlib.Path("/proc/driver/nvidia/gpus"),
    smi: str = "nvidia-smi",
) -> str | None:
    """What shows an NVIDIA GPU here (for the message), or None. Permissive:
    any one sign will do, TensorFlow's own look comes next."""
    nodes = sorted(p.name for p in dev.glob("nvidia[0-9]*"))
    if nodes:
        return f"{dev}/{nodes[0]}"
    if proc.is_dir() and any(proc.iterdir()):
        return str(proc)
    path = shutil.which(smi)
    if path:
        try:
            listed = subprocess.run([path, "-L"], capture_output=True, text=True, timeout=10, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            listed = ""
        gpus = [line for line in listed.splitlines() if line.startswith("GPU ")]
        if gpus:
            return gpus[0].strip()
    return None


def configs(sizes: list[int], xla: list[bool]) -> list[dict[str, Any]]:
    """What to measure, most needed first: XLA off (the server's default, the
    fit's input) before XLA on, so that a run out of time loses the least."""
    return [
        {"key": f"{p} xla {'on' if x else 'off'} {s}", "precision": p, "xla": x, "size": s}
        for x in xla
        for p in PRECISIONS
        for s in sizes
    ]


# ------------------------------------------------------------------ workers
def worker_probe() -> dict[str, Any]:
    import tensorflow as tf

    from stylize_server.engine.device import describe_device, enable_memory_growth, gpu_total_memory

    enable_memory_growth()  # reading the memory size starts the GPU: not with all of it taken
    kind, name = describe_device()
    build = tf.sysconfig.get_build_info()
    return {
        "kind": kind,
        "name": name,
        "tensorflow": tf.__version__,
        "cuda": build.get("cuda_version", "-"),
        "cudnn": build.get("cudnn_version", "-"),
        "tf32": bool(tf.config.experimental.tensor_float_32_execution_enabled()),
        "memory_bytes": gpu_total_memory() if kind == "GPU" else None,
    }


def worker_measure(spec: dict[str, Any]) -> None:
    """Emit one JSON line per configuration of `spec`, as each is done."""
    from stylize_server.engine import Engine
    from stylize_server.job import profiles

    engine: Any = None
    for config in spec["configs"]:
        wanted = (config["precision"], config["xla"])
        try:
            if engine is None or (engine.precision.value, engine.xla) != wanted:
                engine = None  # one engine at a time: its compiled steps go with it
                engine = Engine(weights=spec["weights"], xla=config["xla"], precision=config["precision"])
                engine.profile = profiles.in_force(spec.get("device_profile"), engine.profile)
            emit(_measure(engine, config, spec["iterations"], spec["rounds"]))
        except Exception as exc:  # an out-of-memory, an XLA that will not compile: this row's
            emit({**config, "status": "error", "error": f"{type(exc).__name__}: {str(exc)[:300]}"})


def _measure(engine: Any, config: dict[str, Any], iterations: int, rounds: int) -> dict[str, Any]:
    import dataclasses

    from benchmarks.common import job_seconds_per_iteration, peak_memory, reset_peak_memory, sample_images
    from stylize_server.job import cost, tilings
    from stylize_server.job.options import Inputs, JobOptions, StyleSource

    size = config["size"]
    content, style = sample_images(size)
    inputs = Inputs(content, (StyleSource(style),))
    options = JobOptions(size=size, iterations=iterations, multiscale=False)
    plan = engine.plan(options, inputs)
    scale = plan.scales[0]
    job_seconds_per_iteration(engine, options, inputs)  # trace (and compile, with XLA) at this size
    mark = reset_peak_memory()
    seconds = [job_seconds_per_iteration(engine, options, inputs) for _ in range(rounds)]
    peak = peak_memory() - mark
    profile = engine.profile
    h, w, deepest, whole = scale.height, scale.width, cost.deepest_layer(plan.options), tilings.Tiling()
    return {
        **config,
        "status": "ok",
        "height": h,
        "width": w,
        "megapixels": h * w / 1e6,
        "layout": tilings.describe(scale),
        "seconds_per_iteration": median(seconds),
        "rounds": seconds,
        "peak_bytes": peak,
        "estimated_seconds_per_iteration": scale.seconds_per_iteration,
        "estimated_bytes": scale.device_memory_bytes,
        "activation_bytes_at_keep_1": cost.activation_bytes(
            tilings.parts(deepest, whole, h, w), dataclasses.replace(profile, keep=1.0)
        ),
        "vector_bytes": cost.vector_bytes(
            h, w, plan.options, scale.lbfgs_history, cost.Shares.of(engine.term_costs, plan.options, 1)
        ),
        "style_bytes": cost.style_pass_bytes(h * w, deepest, profile),
        "profile": dataclasses.asdict(profile),
    }


def _run(args: list[str], timeout: float) -> tuple[int | None, list[dict[str, Any]], str]:
    """Run a worker; (exit status or None on timeout, its JSON lines, the tail of stderr)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "benchmarks.gpu_check", "--worker", *args]
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=max(1.0, timeout), check=False
        )
        rc: int | None = proc.returncode
        out, err = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:  # killed; what it printed so far still counts
        rc, out, err = None, _text(exc.stdout), _text(exc.stderr)
    rows = []
    for line in out.splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # not an answer (a library's print), or cut off when the worker was killed
            continue
        if isinstance(row, dict):
            rows.append(row)
    tail = " | ".join(line.strip() for line in err.strip().splitlines()[-3:])
    return rc, rows, tail[-400:]


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def measure(todo: list[dict[str, Any]], spec: dict[str, Any], deadline: float) -> list[dict[str, Any]]:
    """Every configuration's row: measured, or why not. A worker that dies is
    blamed on the configuration it was on, and a new one goes on after it."""
    done: dict[str, dict[str, Any]] = {}
    pending = list(todo)
    while pending:
        left = deadline - time.monotonic()
        if left < 10:
            break
        rc, rows, err = _run(["measure", json.dumps({**spec, "configs": pending})], left)
        done.update({r["key"]: r for r in rows if "key" in r})
        pending = [c for c in pending if c["key"] not in done]
        if not pending or rc is None:
            break
        first = pending.pop(0)
        done[first["key"]] = {**first, "status": "error", "error": f"the worker died (exit {rc}): {err}"}
    for c in pending:
        done[c["key"]] = {**c, "status": "not run", "error": "out of time (the check's budget ran out)"}
    return [done[c["key"]] for c in todo]


# -------------------------------------------------------------------- tests
def run_tests(out: pathlib.Path, timeout: float) -> tuple[list[dict[str, Any]], str | None]:
    """The GPU tests' outcomes, and a problem with the run itself (or None)."""
    report = out / "gpu_tests.xml"
    report.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-m", "gpu", TEST_FILE, "-q", "-p", "no:cacheprovider"]
    try:
        proc = subprocess.run(
            [*command, f"--junitxml={report}"], capture_output=True, text=True, cwd=ROOT, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return [], f"the GPU tests did not finish in {timeout:.0f} s"
    tests = parse_junit(report) if report.exists() else []
    if proc.returncode not in (0, 1) or not tests:
        tail = " | ".join(proc.stdout.strip().splitlines()[-3:])
        return tests, f"pytest -m gpu exited {proc.returncode} with {len(tests)} tests: {tail[-300:]}"
    return tests, None


def parse_junit(path: pathlib.Path) -> list[dict[str, Any]]:
    tests = []
    for case in ET.parse(path).getroot().iter("testcase"):
        status, message = "passed", ""
        for child, name in (("skipped", "skipped"), ("failure", "failed"), ("error", "error")):
            found = case.find(child)
            if found is not None:
                status, message = name, (found.get("message") or found.text or "").strip()
        tests.append({"name": case.get("name", "?"), "status": status, "seconds": float(case.get("time", 0) or 0)})
        tests[-1]["message"] = message.splitlines()[0][:200] if message else ""
    return tests


# -------------------------------------------------------------------- table
def _mib(n: float | None) -> str:
    return "" if n is None else f"{n / 2**20:,.0f}"


def table(device: dict[str, Any], tests: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[str]:
    head = (
        f"{'what':<58} {'result':<8} {'s/it':>8} {'est s/it':>8} {'meas/est':>8} "
        f"{'MiB/MP':>7} {'peak MiB':>8} {'est MiB':>8} {'meas/est':>8}"
    )
    lines = [
        f"gpu-check on {device['kind']} {device['name']} (TensorFlow {device['tensorflow']}, CUDA {device['cuda']}, "
        f"TF32 {'on' if device['tf32'] else 'off'}, {_mib(device['memory_bytes']) or '?'} MiB)",
        head,
        "-" * len(head),
    ]
    for t in tests:
        lines.append(f"{'test ' + t['name']:<58.58} {t['status']:<8} {'':>8} {'':>8} {'':>8}   {t['seconds']:.1f} s")
        if t["message"]:
            lines.append(f"    {t['message']}")
    for r in rows:
        what = f"step {r['size']} px {r['precision']} XLA {'on' if r['xla'] else 'off'}"
        if r["status"] != "ok":
            lines.append(f"{what:<58} {r['status']:<8} {r['error']}")
            continue
        est_s, est_b = r["estimated_seconds_per_iteration"], r["estimated_bytes"]
        lines.append(
            f"{what:<58} {'ok':<8} {r['seconds_per_iteration']:>8.4f} {est_s:>8.4f} "
            f"{r['seconds_per_iteration'] / est_s:>7.2f}x {_mib(r['peak_bytes'] / r['megapixels']):>7} "
            f"{_mib(r['peak_bytes']):>8} {_mib(est_b):>8} {r['peak_bytes'] / est_b:>7.2f}x"
        )
    return lines


def problems(tests: list[dict[str, Any]], test_problem: str | None, rows: list[dict[str, Any]]) -> list[str]:
    """Why the check fails; empty when it passes. A skipped GPU test fails it:
    on a GPU nothing of the GPU path may go untested."""
    found = [test_problem] if test_problem else []
    found += [f"test {t['name']} {t['status']}: {t['message']}" for t in tests if t["status"] != "passed"]
    found += [f"{r['key']} {r['status']}: {r['error']}" for r in rows if r["status"] != "ok"]
    return found


# --------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--weights", default="random:0")
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--xla", default="off,on", help="off, on or off,on")
    parser.add_argument("--iterations", type=int, default=8, help="per timed job (>= 3; the first and last not timed)")
    parser.add_argument("--rounds", type=int, default=3, help="timed jobs per configuration (median)")
    parser.add_argument("--budget-seconds", type=float, default=BUDGET_SECONDS)
    parser.add_argument("--device-profile", help="estimate with this measured profile instead of the built-in one")
    parser.add_argument("--allow-cpu", action="store_true", help=argparse.SUPPRESS)  # the script's own test
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        kind, *rest = args.worker
        if kind == "probe":
            emit(worker_probe())
        else:
            worker_measure(json.loads(rest[0]))
        return 0

    started = time.monotonic()
    deadline = started + args.budget_seconds
    evidence = find_gpu()
    if evidence is None and not args.allow_cpu:
        print(
            "gpu-check needs an NVIDIA GPU and this machine has none (no /dev/nvidia*, no "
            "/proc/driver/nvidia/gpus, no GPU from nvidia-smi -L); nothing was measured",
            file=sys.stderr,
        )
        return NO_GPU
    if args.device_profile:
        from stylize_server import profiles  # TensorFlow-free

        try:
            profiles.load_file(args.device_profile)
        except profiles.ProfileFileError as exc:
            print(f"gpu-check: --device-profile: {exc}", file=sys.stderr)
            return 1
    rc, answer, err = _run(["probe"], min(PROBE_SECONDS, args.budget_seconds))
    if rc != 0 or not answer:
        print(f"gpu-check: TensorFlow could not look at the device (exit {rc}): {err}", file=sys.stderr)
        return NO_GPU
    device = answer[-1]
    if device["kind"] != "GPU" and not args.allow_cpu:
        print(
            f"gpu-check: TensorFlow {device['tensorflow']} sees no GPU, though {evidence} shows one: its CUDA "
            "libraries are missing or do not match the driver (pip install 'tensorflow[and-cuda]'; "
            "CUDA_VISIBLE_DEVICES); nothing was measured",
            file=sys.stderr,
        )
        return NO_GPU

    args.out.mkdir(parents=True, exist_ok=True)
    tests, test_problem = run_tests(args.out, min(TESTS_SECONDS, deadline - time.monotonic()))
    spec = {
        "weights": args.weights,
        "iterations": max(3, args.iterations),
        "rounds": max(1, args.rounds),
        "device_profile": args.device_profile,
    }
    todo = configs([int(s) for s in args.sizes.split(",")], [x == "on" for x in args.xla.split(",")])
    rows = measure(todo, spec, deadline)
    fits = gpu_fit.fit_profiles(rows, PRECISIONS)
    lines = table(device, tests, rows)
    failed = problems(tests, test_problem, rows)
    profile_path = args.out / "device_profile.json"
    if fits:
        gpu_fit.write_profile(profile_path, device, fits)
        for precision, fit in fits.items():
            f = fit["figures"]
            after = ", ".join(f"{r['size']} px {r['seconds']:.2f}x / {r['memory']:.2f}x" for r in fit["residuals"])
            lines.append(
                f"fitted {device['kind']} {precision}: {f['gmacs_per_second']:,.0f} GMAC/s, "
                f"{f['gvalues_per_second']:,.1f} Gvalue/s, keep {f['keep']:.2f}, base {_mib(f['base_bytes'])} MiB "
                f"(measured/estimated after the fit, time / memory: {after})"
            )
        lines.append(f"wrote {profile_path}: stylize-server --device-profile {profile_path} (STYLIZE_DEVICE_PROFILE)")
    elif any(not c["xla"] for c in todo):
        failed.append("no profile written: no step measured with XLA off")
    seconds = time.monotonic() - started
    report = {"device": device, "tests": tests, "steps": rows, "fits": fits, "problems": failed, "seconds": seconds}
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    verdict = "PASSED" if not failed else "FAILED: " + "; ".join(failed)
    lines.append(f"gpu-check {verdict} ({seconds:.0f} s, {platform.node()})")
    print("\n".join(lines), flush=True)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
