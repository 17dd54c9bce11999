"""`stylize run DIR|GLOB ...`: a batch against a real server on 127.0.0.1.
Broken inputs fail alone (locally or on the server, each with its reason),
the summary says which, the random-weights warning comes once per
invocation, and Ctrl-C cancels every running and queued job.
"""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess

import pytest

from stylize.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID_ARGUMENT, EXIT_OK, EXIT_USAGE
from tests.support.cli import cli_env, error_lines, json_lines, run_cli, stylize_command, with_default_sigint
from tests.support.images import garbage_bytes, jpeg_bytes, png_bytes, truncated_png
from tests.support.metrics import scrape, value, wait_for_value
from tests.support.server import running_server

FAST = ["--size", "32", "--iterations", "4", "--multiscale-min-size", "32"]


@pytest.fixture(scope="module")
def server():
    with running_server(max_concurrent_jobs=2, queue_size=8) as srv:
        yield srv


@pytest.fixture(scope="module")
def style(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("style") / "style.png"
    path.write_bytes(png_bytes(32, 32, seed=2))
    return path


def test_batch_with_broken_inputs(server, style, tmp_path):
    indir = tmp_path / "in"
    indir.mkdir()
    (indir / "a.png").write_bytes(png_bytes(40, 32, seed=5))
    (indir / "b.jpg").write_bytes(jpeg_bytes(32, 40, seed=6))
    (indir / "cut.png").write_bytes(truncated_png(40, 32))  # its header parses: the server finds it broken
    (indir / "noise.png").write_bytes(garbage_bytes(300))  # no image at all: refused locally
    (indir / "notes.txt").write_text("not an image; not picked up")
    outdir = tmp_path / "out"
    proc = run_cli(
        "run", str(indir), str(style), "-o", str(outdir), "--server", server.address, *FAST, "--parallel", "2"
    )
    assert proc.returncode == EXIT_FAILED, proc.stderr
    assert sorted(p.name for p in outdir.iterdir()) == ["a.png", "b.png"]
    summary = proc.stdout[proc.stdout.index("summary:") :]
    assert "2 of 4 succeeded, 2 failed" in summary
    cut = next(line for line in summary.splitlines() if "cut.png" in line)
    assert "FAILED" in cut and "invalid argument: content:" in cut
    noise = next(line for line in summary.splitlines() if "noise.png" in line)
    assert "FAILED" in noise
    assert "is not an image this service reads (accepted: PNG, JPEG, WebP, BMP, GIF or TIFF)" in noise
    assert error_lines(proc.stderr) == [f"stylize: 2 of 4 images failed: {indir / 'cut.png'}, {indir / 'noise.png'}"]
    # One warning for the whole invocation, however many jobs saw random weights.
    assert sum("RANDOM weights" in line for line in proc.stderr.splitlines()) == 1

    # The same with --json and a glob: a summary object closes the stream.
    proc = run_cli(
        "run",
        str(indir / "*.png"),
        str(style),
        "-o",
        str(tmp_path / "out2"),
        "--server",
        server.address,
        *FAST,
        "--json",
    )
    assert proc.returncode == EXIT_FAILED
    events = json_lines(proc.stdout)
    summary_obj = events[-1]
    assert summary_obj["event"] == "summary" and summary_obj["total"] == 3 and summary_obj["failed"] == 2
    failed = {pathlib.Path(j["input"]).name: j for j in summary_obj["jobs"] if not j["ok"]}
    assert failed["cut.png"]["exit_code"] == EXIT_INVALID_ARGUMENT
    assert failed["noise.png"]["exit_code"] == EXIT_USAGE
    errors = {pathlib.Path(e["input"]).name: e["code"] for e in events if e["event"] == "error"}
    assert errors == {"cut.png": "DECODE_FAILED", "noise.png": "LOCAL"}


def test_batch_request_ids_and_frames_per_image(server, style, tmp_path):
    indir = tmp_path / "in"
    indir.mkdir()
    for i in range(2):
        (indir / f"img{i}.png").write_bytes(png_bytes(40, 32, seed=20 + i))
    frames = tmp_path / "frames"
    proc = run_cli(
        "run",
        str(indir),
        str(style),
        "-o",
        str(tmp_path / "out"),
        "--server",
        server.address,
        *FAST,
        "--request-id",
        "batch-7",
        "--save-every",
        "2",
        "--frames-dir",
        str(frames),
        "--json",
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    results = [e for e in json_lines(proc.stdout) if e["event"] == "result"]
    assert sorted(r["request_id"] for r in results) == ["batch-7-1", "batch-7-2"]
    for i in range(2):
        assert sorted(p.name for p in (frames / f"img{i}").iterdir()) == ["frame_0002.png", "frame_0004.png"]


def test_ctrl_c_in_a_batch_cancels_every_running_and_queued_job(server, style, tmp_path):
    indir = tmp_path / "in"
    indir.mkdir()
    for i in range(3):
        (indir / f"img{i}.png").write_bytes(png_bytes(40, 32, seed=10 + i))
    before = value(scrape(server.metrics_port), "stylize_jobs_stopped_total")
    proc = subprocess.Popen(
        with_default_sigint(
            stylize_command()
            + [
                "run",
                str(indir),
                str(style),
                "-o",
                str(tmp_path / "out"),
                "--server",
                server.address,
                "--size",
                "32",
                "--iterations",
                "4000",
                "--multiscale-min-size",
                "32",
                "--parallel",
                "2",
                "--json",
            ]
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        running: set[str] = set()
        for line in proc.stdout:  # both streams have a slot on the server
            event = json.loads(line)
            if event["event"] == "progress":
                running.add(event["input"])
                if len(running) == 2:
                    break
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert error_lines(stderr)[-1] == "stylize: cancelled by Ctrl-C; the server stops the running jobs"
    summary = json_lines(stdout)[-1]
    assert summary["event"] == "summary" and summary["failed"] == 3
    assert {j["exit_code"] for j in summary["jobs"]} == {EXIT_INTERRUPTED}
    wait_for_value(server.metrics_port, "stylize_jobs_stopped_total", lambda v: v >= before + 2)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
