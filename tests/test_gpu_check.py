"""`make gpu-check` (benchmarks/gpu_check.py) without a GPU, and the
measured profile file it writes for the cost model (profiles.load_file,
`--device-profile`).

The whole script runs here on the CPU at 32-48 px behind its hidden
--allow-cpu switch: the same stages, workers, table, fit and profile file as
on a GPU, where the GPU tests skip and so fail the check.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import pathlib
import subprocess
import sys
import time

import pytest

from benchmarks import gpu_check, gpu_fit
from stylize_server.config import ServerConfig, parse_config
from stylize_server.job import cost, profiles, tilings
from stylize_server.job.options import InputShapes, JobOptions, resolve
from tests.support.terms import TERMS

ROOT = pathlib.Path(__file__).resolve().parent.parent
MIB = 1 << 20


def write_profile(path: pathlib.Path, kind: str = "GPU", **figures: float) -> pathlib.Path:
    built_in = profiles.profile_for(kind, "float32")
    measured = dataclasses.replace(built_in, **figures)  # type: ignore[arg-type]
    doc = profiles.profile_document({"kind": kind, "name": "Test GPU"}, [measured], written_by="a test")
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.skipif(gpu_check.find_gpu() is not None, reason="this machine has a GPU")
def test_without_a_gpu_the_check_fails_at_once_before_loading_tensorflow() -> None:
    wrapper = (
        "import runpy, sys\n"
        "try:\n"
        "    runpy.run_module('benchmarks.gpu_check', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code, 'tensorflow loaded' if 'tensorflow' in sys.modules else 'nothing heavy')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", wrapper], capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )
    assert proc.stdout.strip() == f"exit {gpu_check.NO_GPU} nothing heavy", (proc.stdout, proc.stderr)
    assert "gpu-check needs an NVIDIA GPU and this machine has none" in proc.stderr


def test_a_gpu_is_found_by_its_device_node_or_its_driver_entry(tmp_path: pathlib.Path) -> None:
    dev, proc = tmp_path / "dev", tmp_path / "gpus"
    dev.mkdir()
    proc.mkdir()
    (dev / "nvidiactl").touch()  # the control node alone is not a GPU
    missing = "no-such-nvidia-smi"
    assert gpu_check.find_gpu(dev, proc, missing) is None
    (proc / "0000:3b:00.0").mkdir()
    assert gpu_check.find_gpu(dev, proc, missing) == str(proc)
    (dev / "nvidia0").touch()
    assert gpu_check.find_gpu(dev, proc, missing) == f"{dev}/nvidia0"


def test_the_whole_check_runs_on_the_cpu_and_writes_a_profile_the_server_reads(tmp_path: pathlib.Path) -> None:
    command = [sys.executable, "-m", "benchmarks.gpu_check", "--allow-cpu", "--out", str(tmp_path)]
    # XLA off only: compiling for XLA on the CPU would double the time (the flag is all that differs).
    command += ["--sizes", "32,48", "--xla", "off", "--iterations", "3", "--rounds", "1"]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1, (proc.stdout, proc.stderr)  # the GPU tests skipped: that fails the check
    assert lines[0].startswith("gpu-check on CPU ") and lines[1].split()[:3] == ["what", "result", "s/it"]

    tests = [line for line in lines if line.startswith("test ")]
    assert len(tests) == 4 and all(line.split()[2] == "skipped" for line in tests), tests
    assert lines[-1].startswith("gpu-check FAILED: test test_") and "skipped: " in lines[-1]

    steps = [line.split() for line in lines if line.startswith("step ")]
    assert [(s[1], s[3], s[5], s[6]) for s in steps] == [
        (size, precision, "off", "ok") for precision in ("float32", "bfloat16") for size in ("32", "48")
    ]
    for s in steps:  # s/it, its estimate and their ratio; MiB/MP, peak, its estimate and their ratio
        seconds, estimate, ratio = float(s[7]), float(s[8]), float(s[9].rstrip("x"))
        assert seconds > 0 and estimate > 0 and math.isclose(ratio, seconds / estimate, rel_tol=0.02, abs_tol=0.01)
        assert s[13].endswith("x") and float(s[12].replace(",", "")) > 0

    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["device"]["kind"] == "CPU" and len(report["steps"]) == 4 and len(report["tests"]) == 4
    path = tmp_path / "device_profile.json"
    assert f"wrote {path}: stylize-server --device-profile {path} (STYLIZE_DEVICE_PROFILE)" in lines
    measured = profiles.load_file(path)
    assert set(measured) == {("CPU", "float32"), ("CPU", "bfloat16")}
    for (_, precision), profile in measured.items():
        fit = report["fits"][precision]
        assert profile.gmacs_per_second == pytest.approx(fit["figures"]["gmacs_per_second"])
        assert profile.source.startswith("measured on ") and "(make gpu-check, " in profile.source
    config = parse_config(["--device-profile", str(path)], environ={})
    in_force = profiles.in_force(config.device_profile, profiles.profile_for("CPU", "bfloat16"))
    assert in_force == measured[("CPU", "bfloat16")]


def test_the_configurations_run_most_needed_first_and_a_spent_budget_runs_none() -> None:
    todo = gpu_check.configs([512, 1024], [False, True])
    assert [c["key"] for c in todo] == [
        f"{p} xla {x} {s}" for x in ("off", "on") for p in ("float32", "bfloat16") for s in (512, 1024)
    ]
    rows = gpu_check.measure(todo, {}, deadline=0.0)  # long past: nothing starts
    assert [(r["key"], r["status"]) for r in rows] == [(c["key"], "not run") for c in todo]
    assert "out of time" in gpu_check.problems([], None, rows)[0]


def test_a_configuration_that_fails_is_a_row_of_its_own_and_the_rest_still_run(tmp_path) -> None:
    todo = [
        {"key": "float16 xla off 32", "precision": "float16", "xla": False, "size": 32},
        {"key": "float32 xla off 32", "precision": "float32", "xla": False, "size": 32},
    ]
    measured = write_profile(tmp_path / "p.json", kind="CPU", gmacs_per_second=1.0, gvalues_per_second=1.0)
    spec = {"weights": "random:0", "iterations": 3, "rounds": 1, "device_profile": str(measured)}
    bad, good = gpu_check.measure(todo, spec, deadline=time.monotonic() + 300)
    assert bad["status"] == "error" and bad["error"].startswith("ValueError: "), bad
    assert good["status"] == "ok" and good["seconds_per_iteration"] > 0 and good["megapixels"] > 0, good
    # Estimated with the profile it was given (--device-profile): to compare a fit with a new measurement.
    assert good["profile"]["gmacs_per_second"] == 1.0 and good["profile"]["source"].startswith("measured on Test")
    assert good["estimated_seconds_per_iteration"] > 10 * _estimate(profiles.profile_for("CPU", "float32"), 32)[0]


def _estimate(profile: profiles.Profile, side: int = 1024) -> tuple[float, int]:
    shapes = InputShapes((side, side), ((side, side),), (None,), (1.0,))
    e = cost.estimate(resolve(JobOptions(size=side, multiscale=False)), shapes, profile, 1 << 50, 1 << 50, terms=TERMS)
    return e.scales[0].seconds_per_iteration, e.device_memory_bytes


def test_the_cost_model_prices_with_the_measured_profile_where_it_has_one(tmp_path, caplog) -> None:
    built_in = profiles.profile_for("GPU", "float32")
    path = write_profile(
        tmp_path / "p.json",
        gmacs_per_second=built_in.gmacs_per_second * 2,
        gvalues_per_second=built_in.gvalues_per_second * 2,
        keep=built_in.keep * 2,
    )
    with caplog.at_level(logging.INFO, logger="stylize_server.job.profiles"):
        measured = profiles.in_force(str(path), built_in)
    assert f"cost model profile for GPU float32: measured on Test GPU (a test, ?): {path}" in caplog.messages
    (seconds, memory), (seconds_before, memory_before) = _estimate(measured), _estimate(built_in)
    assert seconds == pytest.approx(seconds_before / 2)  # both rates doubled
    assert memory > memory_before * 1.5  # twice the activations kept
    # A precision the file does not hold keeps the built-in figures, and says so.
    bf16 = profiles.in_force(str(path), profiles.profile_for("GPU", "bfloat16"))
    assert bf16.gmacs_per_second == profiles.PROFILES[("GPU", "bfloat16")].gmacs_per_second
    assert bf16.source.endswith(f"{path} holds no GPU bfloat16 figures")
    assert profiles.in_force(None, built_in) == built_in
    doc = json.loads(path.read_text())
    doc["device"]["name"] = "GPU\nlevel=ERROR forged"
    path.write_text(json.dumps(doc))
    assert profiles.load_file(path)[("GPU", "float32")].source.startswith("measured on GPU?level=ERROR forged (a test")


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"format": "v0"}, "format must be 'stylize-device-profile/1'"),
        ({"device": {"kind": "TPU"}}, "device.kind must be one of CPU, GPU, got 'TPU'"),
        ({"profiles": {"float16": {}}}, "profiles.float16: precision must be float32 or bfloat16"),
        ({"keep": -1}, "profiles.float32.keep: must be in [0.1, 64], got -1"),
        ({"gmacs_per_second": 0}, "profiles.float32.gmacs_per_second: must be in [0.001, 1e+07], got 0"),
        ({"gvalues_per_second": float("nan")}, "profiles.float32.gvalues_per_second: must be a number, got nan"),
        ({"base_bytes": "96MiB"}, "profiles.float32.base_bytes: must be a number, got '96MiB'"),
        ({"tile_seconds": None}, "profiles.float32.tile_seconds: must be a number, got None"),
        ({"padding": "x" * profiles.MAX_FILE_BYTES}, f"larger than {profiles.MAX_FILE_BYTES} bytes"),
    ],
)
def test_a_bad_profile_file_is_refused_at_start_naming_the_field(tmp_path, capsys, change, says) -> None:
    doc = json.loads(write_profile(tmp_path / "p.json").read_text())
    figures = doc["profiles"]["float32"]
    for key, value in change.items():
        (figures if key in profiles.FIGURES else doc)[key] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(profiles.ProfileFileError) as raised:
        profiles.load_file(path)
    assert str(raised.value).startswith(f"{path}: ") and says in str(raised.value)
    with pytest.raises(SystemExit):
        parse_config(["--device-profile", str(path)], environ={})
    assert f"--device-profile: {path}: " in capsys.readouterr().err


def test_the_flag_and_its_env_var_name_the_file_and_a_missing_one_is_refused(tmp_path, capsys) -> None:
    path = write_profile(tmp_path / "p.json")
    assert parse_config([], environ={"STYLIZE_DEVICE_PROFILE": str(path)}).device_profile == str(path)
    assert parse_config([], environ={"STYLIZE_DEVICE_PROFILE": ""}).device_profile is None
    assert ServerConfig().device_profile is None
    with pytest.raises(SystemExit):
        parse_config(["--device-profile", str(tmp_path / "none.json")], environ={})
    err = capsys.readouterr().err
    assert f"--device-profile: {tmp_path / 'none.json'}: cannot read it" in err, err


def test_the_server_loads_its_engine_with_the_measured_profile(tmp_path, caplog) -> None:
    from stylize_server.serving.lifecycle import load_engine

    path = write_profile(tmp_path / "p.json", kind="CPU", gmacs_per_second=123.0)
    config = ServerConfig(weights="random:0", precision="float32", device_profile=str(path))
    with caplog.at_level(logging.INFO, logger="stylize_server.job.profiles"):
        engine = load_engine(config.validate())
    assert engine.profile.gmacs_per_second == 123.0 and engine.profile.source.startswith("measured on Test GPU")
    assert any(m.startswith("cost model profile for CPU float32: measured on Test GPU") for m in caplog.messages)


def test_the_fit_makes_the_cost_model_match_and_never_undershoot_memory() -> None:
    figures = {name: getattr(profiles.profile_for("GPU", "float32"), name) for name in profiles.FIGURES}
    rows = []
    for side, off_line in ((512, 0), (768, 64 * MIB), (1024, 0)):
        options = resolve(JobOptions(size=side, multiscale=False))
        profile = profiles.Profile("GPU", "float32", **figures)
        seconds, _ = _estimate(profile, side)
        deepest = cost.deepest_layer(options)
        whole = tilings.parts(deepest, tilings.Tiling(), side, side)
        activations = cost.activation_bytes(whole, dataclasses.replace(profile, keep=1.0))
        shares = cost.Shares.of(TERMS, options, 1)
        vectors = cost.vector_bytes(side, side, options, options.lbfgs_history, shares)
        rows.append(
            {
                "size": side,
                "seconds_per_iteration": seconds / 2.5,  # the device is 2.5x faster than the estimate
                "estimated_seconds_per_iteration": seconds,
                "peak_bytes": int(1.3 * activations + vectors + 200 * MIB + off_line),
                "activation_bytes_at_keep_1": activations,
                "vector_bytes": vectors,
                "style_bytes": cost.style_pass_bytes(side * side, deepest, profile),
            }
        )
    fit = gpu_fit.fit(rows, figures, profiles.FIGURES)
    got = fit["figures"]
    assert got["gmacs_per_second"] == pytest.approx(figures["gmacs_per_second"] * 2.5)
    assert got["gvalues_per_second"] == pytest.approx(figures["gvalues_per_second"] * 2.5)
    assert all(r["seconds"] == pytest.approx(1.0) for r in fit["residuals"])
    assert 1.3 * gpu_fit.MARGIN <= got["keep"] <= 1.3 * gpu_fit.MARGIN + 2 * gpu_fit.KEEP_STEP
    assert got["base_bytes"] % gpu_fit.BASE_STEP == 0 and 150 * MIB <= got["base_bytes"] <= 300 * MIB
    assert all(0.8 < r["memory"] <= 1.0 for r in fit["residuals"]), fit["residuals"]  # never under a measurement
