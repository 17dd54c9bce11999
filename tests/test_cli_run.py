"""`stylize run` as a user runs it: a subprocess against a real in-process
server on 127.0.0.1 (random weights, 32-48 px). Output files, --json events,
frames named by iteration, time-lapse, loss plot, the terminal display,
masks (STYLE@MASK) and the options of issues 11 and 12, the random-weights
warning, and partial results (time limit, drain).
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import pty
import select
import struct
import subprocess
import termios
import threading

import pytest
from PIL import Image

from stylize.cli import EXIT_OK, EXIT_PARTIAL, EXIT_TOO_LARGE
from tests.support.cli import cli_env, error_lines, json_lines, run_cli, stylize_command
from tests.support.images import jpeg_bytes, png_bytes
from tests.support.server import running_server

FAST = ["--size", "32", "--iterations", "4", "--multiscale-min-size", "32"]


@pytest.fixture(scope="module")
def server():
    with running_server(max_concurrent_jobs=2, queue_size=8) as srv:
        yield srv


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, pathlib.Path]:
    d = tmp_path_factory.mktemp("images")
    left = Image.new("L", (40, 32), 0)
    left.paste(255, (0, 0, 20, 32))
    files = {
        "content": ("content.png", png_bytes(40, 32, seed=1)),
        "style": ("style.png", png_bytes(32, 32, seed=2)),
        "style2": ("style2.jpg", jpeg_bytes(32, 24, seed=3)),
    }
    out = {}
    for key, (name, data) in files.items():
        (d / name).write_bytes(data)
        out[key] = d / name
    left.save(d / "left.png")
    Image.eval(left, lambda v: 255 - v).save(d / "right.png")
    out["left"], out["right"] = d / "left.png", d / "right.png"
    return out


def test_run_end_to_end_json_frames_timelapse_and_loss_plot(server, images, tmp_path):
    out = tmp_path / "out.jpg"
    frames_dir = tmp_path / "frames"
    gif = tmp_path / "lapse.gif"
    plot = tmp_path / "losses.png"
    proc = run_cli(
        "run",
        str(images["content"]),
        str(images["style"]),
        str(images["style2"]),
        "-o",
        str(out),
        "--server",
        server.address,
        "--size",
        "48",
        "--iterations",
        "6",
        "--multiscale-min-size",
        "32",
        "--style-weights",
        "0.7,0.3",
        "--save-every",
        "2",
        "--frames-dir",
        str(frames_dir),
        "--timelapse",
        str(gif),
        "--loss-plot",
        str(plot),
        "--json",
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    events = json_lines(proc.stdout)
    kinds = [e["event"] for e in events]
    # queued* started progress+ result, the result last.
    first_started = kinds.index("started")
    assert set(kinds[:first_started]) <= {"queued"}
    assert kinds[-1] == "result"
    assert set(kinds[first_started + 1 : -1]) == {"progress"} and kinds.count("started") == 1
    started = events[first_started]
    assert started["options"]["style_blend_weights"] == pytest.approx([0.7, 0.3], abs=1e-6)
    assert started["random_weights"] is True and started["reattached"] is False
    assert started["estimate"]["device_memory_bytes"] > 0
    # The client named the job; the result carries the same id.
    assert len(started["request_id"]) == 32 and events[-1]["request_id"] == started["request_id"]

    progress = [e for e in events if e["event"] == "progress"]
    iterations = [p["iteration"] for p in progress]
    assert iterations == sorted(set(iterations)) and iterations[-1] == 6
    assert all(i % 2 == 0 for i in iterations)  # --save-every 2 sets the progress interval

    result = events[-1]
    expected_size = (48, round(32 * 48 / 40))
    assert (result["width"], result["height"]) == expected_size
    assert result["output"] == str(out) and result["mime_type"] == "image/jpeg"
    assert result["complete"] is True and result["stop_reason"] == "none"
    assert result["iterations"] == result["iterations_requested"] == 6 and result["chunks"] == 1
    assert result["wall_seconds"] > 0 and result["compute_seconds"] > 0 and "queue_wait_seconds" in result
    with Image.open(out) as img:
        assert img.format == "JPEG" and img.size == expected_size

    # One PNG per preview received, named by its iteration: frame_0004.png is iteration 4.
    saved = [p["frame"] for p in progress if p.get("frame")]
    on_disk = sorted(str(p) for p in frames_dir.iterdir())
    assert saved == on_disk == result["frames"]
    assert [pathlib.Path(p).name for p in saved] == [f"frame_{p['iteration']:04d}.png" for p in progress]
    assert progress[-1].get("frame") == saved[-1]
    for path in saved:
        with Image.open(path) as img:
            assert img.format == "PNG" and img.size == expected_size

    # The GIF: every preview before the last iteration, then the result.
    expected_frames = sum(1 for p in progress if p.get("frame") and p["iteration"] < 6) + 1
    with Image.open(gif) as anim:
        assert anim.format == "GIF"
        assert anim.n_frames == expected_frames == result["timelapse_frames"]
        assert anim.size == expected_size
    with Image.open(plot) as img:
        assert img.format == "PNG" and img.size[0] >= 400


def test_run_prints_plain_lines_and_warns_once_about_random_weights(server, images, tmp_path):
    out = tmp_path / "out.png"
    proc = run_cli(
        "run",
        str(images["content"]),
        str(images["style"]),
        "-o",
        str(out),
        "--server",
        server.address,
        *FAST,
        "--progress-interval",
        "1",
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("started: 32x26, 4 iterations")
    assert any(line.startswith("iteration 4/4  loss ") for line in lines)
    assert lines[-1].startswith(f"done: wrote {out} (32x26 image/png)")
    assert "\x1b[" not in proc.stdout  # no terminal control codes in a log
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (32, 26)
    warnings = [line for line in proc.stderr.splitlines() if "RANDOM weights" in line]
    assert len(warnings) == 1 and warnings[0].startswith("stylize: warning:")
    assert error_lines(proc.stderr) == []


def test_run_quiet_prints_nothing_and_format_flag_wins(server, images, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cli(
        "run",
        str(images["content"]),
        str(images["style"]),
        "-o",
        str(out),
        "--server",
        server.address,
        *FAST,
        "--format",
        "webp",
        "--quiet",
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""  # not even the random-weights warning
    with Image.open(out / "content.webp") as img:  # -o DIR: named after the content image
        assert img.format == "WEBP"


def test_run_on_a_terminal_shows_a_live_progress_bar(server, images, tmp_path):
    out = tmp_path / "tty.png"
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # rows, columns
    proc = subprocess.Popen(
        stylize_command()
        + ["run", str(images["content"]), str(images["style"]), "-o", str(out), "--server", server.address, *FAST],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(60) == EXIT_OK, proc.stderr.read() if proc.stderr else ""
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "4/4" in screen and "wrote" in screen
    assert out.exists()


def test_masks_and_the_control_options_reach_the_server(server, images, tmp_path):
    """Two styles with complementary masks (STYLE@MASK), colour control, what
    no mask covers, and a JPEG background: the server accepts them all and
    resolves them (the started frame echoes the resolved options)."""
    out = tmp_path / "masked.png"
    proc = run_cli(
        "run",
        str(images["content"]),
        f"{images['style']}@{images['left']}",
        f"{images['style2']}@{images['right']}",
        "-o",
        str(out),
        "--server",
        server.address,
        *FAST,
        "--color-control",
        "HISTOGRAM",
        "--unmasked-region",
        "content",
        "--background",
        "#102030",
        "--json",
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    events = json_lines(proc.stdout)
    options = next(e for e in events if e["event"] == "started")["options"]
    assert options["color_control"] == "COLOR_CONTROL_HISTOGRAM"
    assert options["unmasked_region"] == "UNMASKED_REGION_CONTENT"
    assert options["background"] == "#102030"
    with Image.open(out) as img:
        assert img.size == (32, 26)


def test_a_time_limited_job_is_saved_as_a_partial_result(images, tmp_path):
    out = tmp_path / "partial.png"
    with running_server(max_job_seconds=1.0) as srv:
        proc = run_cli(
            "run",
            str(images["content"]),
            str(images["style"]),
            "-o",
            str(out),
            "--server",
            srv.address,
            "--size",
            "32",
            "--iterations",
            "5000",
            "--multiscale-min-size",
            "32",
            "--accept-partial",
            "--json",
        )
    assert proc.returncode == EXIT_PARTIAL, proc.stderr
    result = json_lines(proc.stdout)[-1]
    assert result["event"] == "result" and result["complete"] is False and result["stop_reason"] == "time_limit"
    assert 0 < result["iterations"] < result["iterations_requested"] == 5000
    assert result["output"] == str(out)
    with Image.open(out) as img:  # the best image so far is kept
        assert img.format == "PNG" and img.size == (32, 26)
    (line,) = error_lines(proc.stderr)
    assert line.startswith("stylize: partial result: stopped by the server's time limit")
    assert "of 5000 iterations" in line and line.endswith(f"saved it to {out}")


def test_a_job_over_the_time_limit_is_refused_saying_what_would_fit(images, tmp_path):
    out = tmp_path / "never.png"
    with running_server(max_job_seconds=1.0) as srv:
        proc = run_cli(
            "run",
            str(images["content"]),
            str(images["style"]),
            "-o",
            str(out),
            "--server",
            srv.address,
            "--size",
            "32",
            "--iterations",
            "5000",
            "--multiscale-min-size",
            "32",
        )
    assert proc.returncode == EXIT_TOO_LARGE, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert line.startswith("stylize: over the server's time limit: iterations: the job is estimated at")
    assert "over this server's limit of 1 s per job" in line and "or fewer" in line
    assert line.endswith("; here: --iterations N, --size PX, or --accept-partial")
    assert not out.exists()


def test_a_job_stopped_by_a_drain_is_saved_as_a_partial_result(images, tmp_path):
    out = tmp_path / "drained.png"
    with running_server() as srv:
        cli = subprocess.Popen(
            stylize_command()
            + [
                "run",
                str(images["content"]),
                str(images["style"]),
                "-o",
                str(out),
                "--server",
                srv.address,
                "--size",
                "32",
                "--iterations",
                "5000",
                "--multiscale-min-size",
                "32",
                "--progress-interval",
                "1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
            stdin=subprocess.DEVNULL,
        )
        try:
            assert cli.stdout is not None
            for line in cli.stdout:  # the job runs on the server
                if line.startswith("iteration "):
                    break
            # The server drains with a short grace: the running job is stopped and keeps its image.
            stopper = threading.Thread(target=srv.server.stop, kwargs={"grace": 0.5})
            stopper.start()
            stdout, stderr = cli.communicate(timeout=120)
            stopper.join(60)
        finally:
            if cli.poll() is None:
                cli.kill()
    assert cli.returncode == EXIT_PARTIAL, stderr
    assert "partial result: stopped by the server's shutdown" in stdout
    assert error_lines(stderr)[-1].startswith("stylize: partial result: stopped by the server's shutdown")
    with Image.open(out) as img:
        assert img.size == (32, 26)
