"""Every way `stylize` fails, against a real server on 127.0.0.1: the exit
code, one line on stderr that says what happened (and what to do), and how
often the request was sent. Retries, Ctrl-C, TLS, `info` and `health`.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import signal
import subprocess

import pytest
from PIL import Image

from stylize.cli import (
    EXIT_CONNECT,
    EXIT_DEADLINE,
    EXIT_INTERRUPTED,
    EXIT_INVALID_ARGUMENT,
    EXIT_NOT_SERVING,
    EXIT_OK,
    EXIT_OVERLOADED,
    EXIT_TOO_LARGE,
    EXIT_UNAUTHENTICATED,
)
from tests.support.cli import cli_env, error_lines, json_lines, run_cli, stylize_command, with_default_sigint
from tests.support.client import hold_slot
from tests.support.images import bomb_png, png_bytes
from tests.support.metrics import scrape, value, wait_for_value
from tests.support.server import free_port, running_server

FAST = ["--size", "32", "--iterations", "4", "--multiscale-min-size", "32"]


@pytest.fixture(scope="module")
def server():
    with running_server(max_concurrent_jobs=2, queue_size=8) as srv:
        yield srv


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, pathlib.Path]:
    d = tmp_path_factory.mktemp("images")
    (d / "content.png").write_bytes(png_bytes(40, 32, seed=1))
    (d / "style.png").write_bytes(png_bytes(32, 32, seed=2))
    return {"content": d / "content.png", "style": d / "style.png"}


def only_error(stderr: str) -> str:
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    return lines[0]


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
    line = only_error(proc.stderr)
    assert line.startswith(f"stylize: cannot reach the server at 127.0.0.1:{port}")
    assert "; is a server running there? Start one with `make run`" in line
    assert line.endswith("(after 3 attempts)")
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
        "--json",
    )
    assert proc.returncode == EXIT_INVALID_ARGUMENT
    assert only_error(proc.stderr).startswith("stylize: invalid argument: size: must be in [16, ")
    error = json_lines(proc.stdout)[-1]
    assert error["event"] == "error" and error["code"] == "INVALID_OPTION"


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
    assert only_error(proc.stderr).startswith("stylize: deadline exceeded")


def test_exit_code_unauthenticated_tells_about_the_token_file(images, tmp_path):
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
        line = only_error(proc.stderr)
        assert line.startswith(f"stylize: not authenticated by {srv.address}")
        assert line.endswith(f"check the token in --token-file {wrong}")
        proc = run_cli(*base)
        assert proc.returncode == EXIT_UNAUTHENTICATED
        assert only_error(proc.stderr).endswith("give the token with --token-file PATH (or $STYLIZE_TOKEN_FILE)")
        proc = run_cli("info", "--server", srv.address)
        assert proc.returncode == EXIT_UNAUTHENTICATED and "--token-file" in only_error(proc.stderr)
        proc = run_cli(*base, "--token-file", str(token))
        assert proc.returncode == EXIT_OK, proc.stderr
        assert (tmp_path / "x.png").exists()


def test_a_decompression_bomb_is_sent_once_and_exits_too_large(server, images, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(100_000, 100_000))  # 10^10 pixels declared in a few hundred bytes
    before = value(scrape(server.metrics_port), "stylize_requests_total", code="RESOURCE_EXHAUSTED")
    proc = run_cli(
        "run",
        str(bomb),
        str(images["style"]),
        "-o",
        str(tmp_path / "x.png"),
        "--server",
        server.address,
        *FAST,
        "--retries",
        "4",
        "--retry-backoff",
        "0.01",
        "--json",
    )
    assert proc.returncode == EXIT_TOO_LARGE, proc.stderr
    line = only_error(proc.stderr)
    assert line.startswith("stylize: too large: content:") and "attempts" not in line
    assert json_lines(proc.stdout)[-1]["code"] == "TOO_LARGE"
    after = value(scrape(server.metrics_port), "stylize_requests_total", code="RESOURCE_EXHAUSTED")
    assert after == before + 1  # sent exactly once: waiting never makes it smaller
    assert not (tmp_path / "x.png").exists()


def test_a_request_over_the_message_limit_is_too_large_not_overloaded(server, images, tmp_path):
    # 1000x1000 noise: a ~3 MB PNG against the test server's 2 MiB message limit.
    import numpy as np

    noise = np.random.default_rng(0).integers(0, 256, size=(1000, 1000, 3), dtype=np.uint8)
    big = tmp_path / "big.png"
    Image.fromarray(noise).save(big)
    assert big.stat().st_size > 2 * 2**20
    proc = run_cli(
        "run",
        str(big),
        str(images["style"]),
        "-o",
        str(tmp_path / "x.png"),
        "--server",
        server.address,
        *FAST,
        "--retries",
        "4",
        "--retry-backoff",
        "0.01",
    )
    assert proc.returncode == EXIT_TOO_LARGE, proc.stderr
    line = only_error(proc.stderr)
    assert line.startswith("stylize: the request is larger than the server accepts (gRPC message size limit)")
    assert "attempts" not in line and "max_message_bytes" in line


def test_overloaded_after_retries_then_a_retry_succeeds_once_the_server_frees_up(images, tmp_path):
    with running_server(max_concurrent_jobs=1, queue_size=0) as srv:
        blocker, thread, _ = hold_slot(
            srv.address,
            png_bytes(40, 32, seed=1),
            png_bytes(32, 32, seed=2),
            size=32,
            iterations=4000,
            multiscale_min_size=32,
        )
        base = ["run", str(images["content"]), str(images["style"]), "--server", srv.address, *FAST]
        proc = run_cli(*base, "-o", str(tmp_path / "x.png"), "--retries", "2", "--retry-backoff", "0.01", "--json")
        assert proc.returncode == EXIT_OVERLOADED
        line = only_error(proc.stderr)
        assert line.startswith("stylize: server overloaded: the queue is full") and "(after 3 attempts)" in line
        assert json_lines(proc.stdout)[-1]["code"] == "QUEUE_FULL"

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
    assert error_lines(stderr)[-1] == "stylize: cancelled by Ctrl-C; the server stops the job"
    assert json_lines(stdout)[-1]["event"] == "error"
    wait_for_value(server.metrics_port, "stylize_jobs_stopped_total", lambda v: v >= before + 1, reason="client")
    assert not (tmp_path / "x.png").exists()


def test_info_warns_loudly_about_random_weights_and_health(server):
    proc = run_cli("info", "--server", server.address)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "vgg19, weights random:0" in proc.stdout
    assert "limits" in proc.stdout and "queue" in proc.stdout and "colour control none" in proc.stdout
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
    assert proc.returncode == EXIT_CONNECT and only_error(proc.stderr).startswith("stylize: cannot reach the server")


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
        assert proc.returncode == EXIT_CONNECT and only_error(proc.stderr).startswith(
            "stylize: cannot reach the server"
        )
