"""The `stylize` CLI as a user runs it: a subprocess against a real in-process
server on 127.0.0.1 (random weights, 32-48 px). Output files, --json events,
frames and time-lapse, loss plot, batch, the exit code and message of every
error case, retries, Ctrl-C, `info` and `health`.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios

import pytest
from PIL import Image

from stylize.cli import (
    EXIT_CONNECT,
    EXIT_DEADLINE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID_ARGUMENT,
    EXIT_NOT_SERVING,
    EXIT_OK,
    EXIT_OVERLOADED,
    EXIT_UNAUTHENTICATED,
    EXIT_USAGE,
    main,
)
from tests.support.client import hold_slot
from tests.support.images import garbage_bytes, jpeg_bytes, png_bytes
from tests.support.metrics import scrape, value, wait_for_value
from tests.support.server import free_port, running_server

FAST = ["--size", "32", "--iterations", "4", "--multiscale-min-size", "32"]


def stylize_command() -> list[str]:
    exe = shutil.which("stylize", path=str(pathlib.Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "stylize.cli"]


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STYLIZE_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def with_default_sigint(command: list[str]) -> list[str]:
    """`command` run with SIGINT at its default: a shell that runs the tests in
    the background makes children ignore SIGINT, and the CLI must see Ctrl-C as
    a terminal would send it. (An exec wrapper rather than preexec_fn: forking
    a process that runs gRPC threads is not safe.)"""
    reset = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", reset, *command]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        stylize_command() + list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
    )


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def server():
    with running_server(max_concurrent_jobs=2, queue_size=8) as srv:
        yield srv


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, pathlib.Path]:
    d = tmp_path_factory.mktemp("images")
    files = {
        "content": ("content.png", png_bytes(40, 32, seed=1)),
        "style": ("style.png", png_bytes(32, 32, seed=2)),
        "style2": ("style2.jpg", jpeg_bytes(32, 24, seed=3)),
    }
    out = {}
    for key, (name, data) in files.items():
        (d / name).write_bytes(data)
        out[key] = d / name
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
    progress = [e for e in events if e["event"] == "progress"]
    iterations = [p["iteration"] for p in progress]
    assert iterations == sorted(set(iterations)) and iterations[-1] == 6
    assert all(i % 2 == 0 for i in iterations)  # --save-every 2 sets the progress interval
    assert events[first_started]["options"]["style_blend_weights"] == pytest.approx([0.7, 0.3], abs=1e-6)

    result = events[-1]
    expected_size = (48, round(32 * 48 / 40))
    assert (result["width"], result["height"]) == expected_size
    assert result["output"] == str(out) and result["mime_type"] == "image/jpeg"
    assert result["wall_seconds"] > 0 and result["compute_seconds"] > 0 and "queue_wait_seconds" in result
    with Image.open(out) as img:
        assert img.format == "JPEG" and img.size == expected_size

    # One numbered PNG per preview received, the last one at the final iteration.
    saved = [p["frame"] for p in progress if p.get("frame")]
    on_disk = sorted(str(p) for p in frames_dir.iterdir())
    assert saved == on_disk == result["frames"]
    assert [pathlib.Path(p).name for p in saved] == [f"frame_{i:04d}.png" for i in range(1, len(saved) + 1)]
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


def test_run_prints_plain_lines_when_not_on_a_terminal(server, images, tmp_path):
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
    assert proc.stdout == "" and proc.stderr == ""
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


def test_batch_with_one_broken_input(server, images, tmp_path):
    indir = tmp_path / "in"
    indir.mkdir()
    (indir / "a.png").write_bytes(png_bytes(40, 32, seed=5))
    (indir / "b.jpg").write_bytes(jpeg_bytes(32, 40, seed=6))
    (indir / "broken.png").write_bytes(garbage_bytes(300))
    (indir / "notes.txt").write_text("not an image; not picked up")
    outdir = tmp_path / "out"
    proc = run_cli(
        "run", str(indir), str(images["style"]), "-o", str(outdir), "--server", server.address, *FAST, "--parallel", "2"
    )
    assert proc.returncode == EXIT_FAILED, proc.stderr
    assert sorted(p.name for p in outdir.iterdir()) == ["a.png", "b.png"]
    summary = proc.stdout[proc.stdout.index("summary:") :]
    assert "2 of 3 succeeded, 1 failed" in summary
    broken_line = next(line for line in summary.splitlines() if "broken.png" in line)
    assert "FAILED" in broken_line and "invalid argument" in broken_line
    assert "1 of 3 images failed" in proc.stderr and "broken.png" in proc.stderr

    # The same with --json and a glob: a summary object closes the stream.
    proc = run_cli(
        "run",
        str(indir / "*.png"),
        str(images["style"]),
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
    assert summary_obj["event"] == "summary" and summary_obj["total"] == 2 and summary_obj["failed"] == 1
    failed = [j for j in summary_obj["jobs"] if not j["ok"]]
    assert [pathlib.Path(j["input"]).name for j in failed] == ["broken.png"]
    assert failed[0]["exit_code"] == EXIT_INVALID_ARGUMENT
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == 1 and errors[0]["code"] == "INVALID_ARGUMENT"


def test_exit_code_cannot_connect(images, tmp_path):
    port = free_port()
    proc = run_cli(
        "run",
        str(images["content"]),
        str(images["style"]),
        "-o",
        str(tmp_path / "x.png"),
        "--server",
        f"127.0.0.1:{port}",
        *FAST,
        "--retries",
        "2",
        "--retry-backoff",
        "0.01",
    )
    assert proc.returncode == EXIT_CONNECT
    assert proc.stderr.startswith(f"stylize: cannot reach the server at 127.0.0.1:{port}")
    assert proc.stderr.strip().endswith("(after 3 attempts)") and proc.stderr.count("\n") == 1
    assert not (tmp_path / "x.png").exists()


def test_exit_code_invalid_argument_shows_the_server_message(server, images, tmp_path):
    proc = run_cli(
        "run",
        str(images["content"]),
        str(images["style"]),
        "-o",
        str(tmp_path / "x.png"),
        "--server",
        server.address,
        "--size",
        "4096",
        "--iterations",
        "2",
    )
    assert proc.returncode == EXIT_INVALID_ARGUMENT
    assert proc.stderr.startswith("stylize: invalid argument: size: must be in [16, ")
    assert proc.stderr.count("\n") == 1


def test_exit_code_deadline_exceeded(server, images, tmp_path):
    proc = run_cli(
        "run",
        str(images["content"]),
        str(images["style"]),
        "-o",
        str(tmp_path / "x.png"),
        "--server",
        server.address,
        "--size",
        "32",
        "--iterations",
        "4000",
        "--multiscale-min-size",
        "32",
        "--timeout",
        "1",
    )
    assert proc.returncode == EXIT_DEADLINE
    assert proc.stderr.startswith("stylize: deadline exceeded")


def test_exit_code_unauthenticated_and_token_file(images, tmp_path):
    token = tmp_path / "token"
    token.write_text("let-me-in\n")
    wrong = tmp_path / "wrong"
    wrong.write_text("guess\n")
    with running_server(auth_token_file=str(token)) as srv:
        base = [
            "run",
            str(images["content"]),
            str(images["style"]),
            "-o",
            str(tmp_path / "x.png"),
            "--server",
            srv.address,
            *FAST,
            "--quiet",
        ]
        proc = run_cli(*base, "--token-file", str(wrong))
        assert proc.returncode == EXIT_UNAUTHENTICATED
        assert proc.stderr.startswith(f"stylize: not authenticated by {srv.address}")
        proc = run_cli(*base)
        assert proc.returncode == EXIT_UNAUTHENTICATED
        proc = run_cli(*base, "--token-file", str(token))
        assert proc.returncode == EXIT_OK, proc.stderr
        assert (tmp_path / "x.png").exists()


def _hold_the_only_slot(address: str):
    """Start a long job; returns (stream, thread) once it runs."""
    stream, thread, _ = hold_slot(
        address, png_bytes(40, 32, seed=1), png_bytes(32, 32, seed=2), size=32, iterations=4000, multiscale_min_size=32
    )
    return stream, thread


def test_overloaded_after_retries_then_a_retry_succeeds_once_the_server_frees_up(images, tmp_path):
    with running_server(max_concurrent_jobs=1, queue_size=0) as srv:
        blocker, thread = _hold_the_only_slot(srv.address)
        base = ["run", str(images["content"]), str(images["style"]), "--server", srv.address, *FAST]
        proc = run_cli(*base, "-o", str(tmp_path / "x.png"), "--retries", "2", "--retry-backoff", "0.01")
        assert proc.returncode == EXIT_OVERLOADED
        assert proc.stderr.startswith("stylize: server overloaded: the queue is full")
        assert "(after 3 attempts)" in proc.stderr

        rejected = value(scrape(srv.metrics_port), "stylize_requests_total", code="RESOURCE_EXHAUSTED")
        patient = subprocess.Popen(
            stylize_command()
            + base
            + ["-o", str(tmp_path / "y.png"), "--retries", "300", "--retry-backoff", "0.1", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
            stdin=subprocess.DEVNULL,
        )
        try:
            # Free the slot once the patient CLI has been turned away at least once.
            wait_for_value(
                srv.metrics_port, "stylize_requests_total", lambda v: v >= rejected + 1, code="RESOURCE_EXHAUSTED"
            )
            blocker.cancel()
            stdout, stderr = patient.communicate(timeout=120)
        finally:
            if patient.poll() is None:
                patient.kill()
        thread.join(30)
        assert patient.returncode == EXIT_OK, stderr
        result = json_lines(stdout)[-1]
        assert result["event"] == "result" and result["attempts"] >= 2
        assert (tmp_path / "y.png").exists()


def test_ctrl_c_cancels_the_job_on_the_server(server, images, tmp_path):
    before = value(scrape(server.metrics_port), "stylize_jobs_stopped_total", reason="client")
    proc = subprocess.Popen(
        with_default_sigint(
            stylize_command()
            + [
                "run",
                str(images["content"]),
                str(images["style"]),
                "-o",
                str(tmp_path / "x.png"),
                "--server",
                server.address,
                "--size",
                "32",
                "--iterations",
                "4000",
                "--multiscale-min-size",
                "32",
                "--progress-interval",
                "1",
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
        for line in proc.stdout:  # wait until the job runs on the server
            if json.loads(line)["event"] == "progress":
                break
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert stderr.strip().splitlines()[-1] == "stylize: cancelled by Ctrl-C; the server stops the job"
    assert json_lines(stdout)[-1]["event"] == "error"
    wait_for_value(server.metrics_port, "stylize_jobs_stopped_total", lambda v: v >= before + 1, reason="client")
    assert not (tmp_path / "x.png").exists()


def test_info_warns_loudly_about_random_weights_and_health(server):
    proc = run_cli("info", "--server", server.address)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "vgg19, weights random:0" in proc.stdout
    assert "limits" in proc.stdout and "queue" in proc.stdout
    assert "WARNING" in proc.stderr and "RANDOM weights" in proc.stderr

    proc = run_cli("info", "--server", server.address, "--json")
    info = json.loads(proc.stdout)
    assert info["model"]["random_weights"] is True and "RANDOM" in info["warning"]

    proc = run_cli("health", "--server", server.address)
    assert (proc.returncode, proc.stdout.strip()) == (EXIT_OK, "SERVING")
    proc = run_cli("health", "--server", server.address, "--service", "no.such.Service", "--json")
    assert proc.returncode == EXIT_NOT_SERVING
    assert json.loads(proc.stdout)["status"] == "SERVICE_UNKNOWN"

    proc = run_cli("health", "--server", f"127.0.0.1:{free_port()}", "--retries", "0")
    assert proc.returncode == EXIT_CONNECT and proc.stderr.startswith("stylize: cannot reach the server")


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "{missing}", "{style}", "-o", "{out}"], "CONTENT: no such file"),
        (["run", "{content}", "{missing}", "-o", "{out}"], "STYLE: no such file"),
        (["run", "{content}", "{style}", "-o", "{out}", "--style-weights", "0.5,0.5"], "--style-weights: 2 weights"),
        (["run", "{content}", "{style}", "-o", "{out}", "--init", "{missing}"], "--init: expected content, noise"),
        (["run", "{content}", "{style}", "-o", "{out}", "--save-every", "2"], "--save-every needs --frames-dir"),
        (["run", "{tmp}/*.nothing", "{style}", "-o", "{out}"], "CONTENT: no files match"),
        (["run", "{content}", "{style}", "-o", "{out}", "--token-file", "{missing}"], "--token-file: cannot read"),
        (["run", "{content}", "{style}", "-o", "{out}", "--tls-cert", "{content}"], "--tls-cert and --tls-key"),
    ],
)
def test_usage_errors_exit_2_with_one_line(images, tmp_path, capsys, args, message):
    fill = {
        "missing": str(tmp_path / "missing.png"),
        "style": str(images["style"]),
        "content": str(images["content"]),
        "out": str(tmp_path / "o.png"),
        "tmp": str(tmp_path),
    }
    # No server is contacted: these fail before any call (an unused port proves it).
    code = main([a.format(**fill) for a in args] + ["--server", f"127.0.0.1:{free_port()}"])
    captured = capsys.readouterr()
    assert code == EXIT_USAGE
    assert captured.err.startswith("stylize: ") and message in captured.err and captured.err.count("\n") == 1


def _make_certs(d: pathlib.Path) -> dict[str, pathlib.Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    assert shutil.which("openssl"), "the openssl command line is needed to make test certificates"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=cli-test-ca")
    for name, ext in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (d / f"{name}.ext").write_text(ext)
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
        )
    return {n: d / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def test_mutual_tls_and_token(images, tmp_path):
    certs = _make_certs(tmp_path)
    token = tmp_path / "token"
    token.write_text("tls-and-token")
    with running_server(
        tls_cert=str(certs["server.pem"]),
        tls_key=str(certs["server.key"]),
        tls_client_ca=str(certs["ca.pem"]),
        auth_token_file=str(token),
    ) as srv:
        base = [
            "run",
            str(images["content"]),
            str(images["style"]),
            "-o",
            str(tmp_path / "x.png"),
            "--server",
            srv.address,
            *FAST,
            "--quiet",
            "--token-file",
            str(token),
            "--tls-ca",
            str(certs["ca.pem"]),
        ]
        proc = run_cli(*base, "--tls-cert", str(certs["client.pem"]), "--tls-key", str(certs["client.key"]))
        assert proc.returncode == EXIT_OK, proc.stderr
        with Image.open(tmp_path / "x.png") as img:
            assert img.size == (32, 26)
        # Without a client certificate the handshake fails: no connection.
        proc = run_cli(*base, "--retries", "0")
        assert proc.returncode == EXIT_CONNECT and proc.stderr.startswith("stylize: cannot reach the server")


def test_ctrl_c_in_a_batch_cancels_every_running_and_queued_job(server, images, tmp_path):
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
                str(images["style"]),
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
    assert stderr.strip().splitlines()[-1] == "stylize: cancelled by Ctrl-C; the server stops the running jobs"
    summary = json_lines(stdout)[-1]
    assert summary["event"] == "summary" and summary["failed"] == 3
    assert {j["exit_code"] for j in summary["jobs"]} == {EXIT_INTERRUPTED}
    wait_for_value(server.metrics_port, "stylize_jobs_stopped_total", lambda v: v >= before + 2)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
