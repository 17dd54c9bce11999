"""The client's side of the serving features, against a real in-process
server on 127.0.0.1 (random weights, 32-48 px), through the Python clients
and the CLI: alpha kept and flattened, results in chunks, a connection lost
mid-job attached again with the same request_id (a TCP proxy cuts it; the
server's job runs once), Cancel by request_id, and 16-bit PNG output.

test_client_protocol.py checks the same client logic against a scripted
server, where each failure can be placed exactly; these tests check that the
real server and the clients agree.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterable

import numpy as np
import pytest
from PIL import Image

from stylize import AsyncStyleTransferClient, NotFound, Progress, Result, RetryPolicy, StyleTransferClient
from stylize.cli import EXIT_OK
from tests.support.cli import json_lines, run_cli
from tests.support.fake_stylize import TcpProxy
from tests.support.images import encode, png_bytes
from tests.support.metrics import scrape, value
from tests.support.server import running_server

# The server's message limit is its floor, 64 KiB: requests of flat images
# and a 16 px style fit in it, and results of 240x200 that start from noise
# (about 100-140 KiB as PNG) do not, so they come in chunks.
MESSAGE_BYTES = 64 * 1024
FAST = {"size": 48, "iterations": 4, "progress_interval": 1, "multiscale_min_size": 32}
BIG = dict(FAST, size=240, init="noise")
BIG_SHAPE = (240, 200)
STYLE = png_bytes(16, 16, seed=2)


def flat_png(mode: str = "RGB") -> bytes:
    # At the output's size, so that the alpha comes back unresized (bit-exact).
    pixels = np.full((BIG_SHAPE[1], BIG_SHAPE[0], len(mode)), 120, np.uint8)
    if mode == "RGBA":
        pixels[:, :, 3] = (np.arange(BIG_SHAPE[0]) % 256).astype(np.uint8)[None, :]  # a ramp, 0 at the left edge
        pixels[:40, :, 3] = 0
    return encode(pixels)


CONTENT = flat_png()
RETRY = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05)


def alpha_of(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == "RGBA", img.mode
        return np.asarray(img)[..., 3]


def last_result(events: Iterable[object]) -> Result:
    """Read the whole stream; its last event is the result."""
    *_, last = events
    assert isinstance(last, Result), last
    return last


@pytest.fixture(scope="module")
def server():
    with running_server(
        max_concurrent_jobs=2, queue_size=8, max_message_mb=MESSAGE_BYTES / 2**20, max_pixels=256 * 256
    ) as srv:
        yield srv


def test_alpha_is_kept_in_png_and_flattened_for_jpeg_through_the_client(server):
    content = flat_png("RGBA")
    with StyleTransferClient(server.address, timeout=120) as client:
        png = last_result(client.stylize(content, STYLE, **BIG))
        jpeg = last_result(client.stylize(content, STYLE, output_format="jpeg", **BIG))
    assert png.alpha and png.flattened_on == "" and png.chunks > 1
    assert np.array_equal(alpha_of(png.image), alpha_of(content))  # bit-exact
    assert not jpeg.alpha and jpeg.flattened_on == "#ffffff"
    with Image.open(io.BytesIO(jpeg.image)) as img:
        assert img.mode == "RGB" and img.size == BIG_SHAPE


def test_chunked_results_are_reassembled_by_both_clients(server):
    with StyleTransferClient(server.address, timeout=120) as client:
        sync = last_result(client.stylize(CONTENT, STYLE, **BIG))

    async def run() -> Result:
        async with AsyncStyleTransferClient(server.address, timeout=120) as client:
            events = [e async for e in client.stylize(CONTENT, STYLE, **BIG)]
            return last_result(events)

    aio = asyncio.run(run())
    for result in (sync, aio):
        assert result.chunks > 1 and len(result.image) > MESSAGE_BYTES
        with Image.open(io.BytesIO(result.image)) as img:
            img.load()
            assert img.size == BIG_SHAPE
    assert sync.image == aio.image  # same seed, options and precision: the same bytes


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_a_connection_lost_mid_job_is_attached_again_and_the_job_runs_once(server, kind):
    request_id = f"lost-{kind}"
    options = dict(FAST, iterations=60, request_id=request_id)
    before = value(scrape(server.metrics_port), "stylize_iterations_total")
    seen: list[object] = []
    with TcpProxy(server.address) as proxy:

        def on_event(event: object) -> None:
            seen.append(event)
            if isinstance(event, Progress) and event.iteration == 3 and proxy.cuts == 0:
                proxy.cut()  # the network fails while the job runs

        if kind == "sync":
            with StyleTransferClient(proxy.address, retry=RETRY, timeout=120) as client:
                for event in client.stylize(CONTENT, STYLE, **options):
                    on_event(event)
        else:

            async def run() -> None:
                async with AsyncStyleTransferClient(proxy.address, retry=RETRY, timeout=120) as client:
                    async for event in client.stylize(CONTENT, STYLE, **options):
                        on_event(event)

            asyncio.run(run())
    started = [e for e in seen if type(e).__name__ == "Started"]
    assert [s.reattached for s in started] == [False, True]
    result = seen[-1]
    assert isinstance(result, Result) and result.complete and result.iterations == 60
    assert result.request_id == request_id
    # One optimization: the reattached call did not start the job again.
    assert value(scrape(server.metrics_port), "stylize_iterations_total") - before == 60


def test_cancel_by_request_id_stops_the_job_on_the_server(server):
    errors: list[BaseException] = []
    running = threading.Event()
    # Without auth, another client object cancels the job only with its job secret.
    secret = "cancel-test-secret-0123456789"

    def run() -> None:
        with StyleTransferClient(server.address, timeout=120, job_secret=secret) as client:
            try:
                for event in client.stylize(CONTENT, STYLE, **dict(FAST, iterations=5000), request_id="c1"):
                    if isinstance(event, Progress):
                        running.set()
            except BaseException as exc:  # the stream ends CANCELLED
                errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert running.wait(60)
    with StyleTransferClient(server.address, timeout=30) as stranger, pytest.raises(NotFound):
        stranger.cancel("c1")  # a random secret of its own: not its job
    with StyleTransferClient(server.address, timeout=30, job_secret=secret) as client:
        assert client.cancel("c1") is True
        thread.join(30)
        assert not thread.is_alive()
        assert type(errors[0]).__name__ == "Cancelled"
        # A stopped job keeps nothing under its id: a second Cancel finds no job.
        with pytest.raises(NotFound):
            client.cancel("c1")


def test_the_cli_keeps_alpha_and_writes_16_bit_png(server, tmp_path):
    content = tmp_path / "logo.png"
    content.write_bytes(flat_png("RGBA"))
    style = tmp_path / "style.png"
    style.write_bytes(STYLE)
    for name, extra in (("alpha.png", []), ("print.png", ["--output-bit-depth", "16"])):
        out = tmp_path / name
        proc = run_cli(
            "run",
            str(content),
            str(style),
            "-o",
            str(out),
            "--server",
            server.address,
            "--size",
            "240",
            "--iterations",
            "4",
            "--multiscale-min-size",
            "32",
            "--init",
            "noise",
            "--json",
            *extra,
        )
        assert proc.returncode == EXIT_OK, proc.stderr
        result = json_lines(proc.stdout)[-1]
        assert result["event"] == "result" and result["chunks"] > 1 and result["alpha"] is True
        assert result["bit_depth"] == (16 if extra else 8)
    assert np.array_equal(alpha_of((tmp_path / "alpha.png").read_bytes()), alpha_of(content.read_bytes()))
    ihdr = (tmp_path / "print.png").read_bytes()[16:26]  # width, height, bit depth, colour type
    assert int.from_bytes(ihdr[0:4], "big") == 240 and int.from_bytes(ihdr[4:8], "big") == 200
    assert ihdr[8] == 16 and ihdr[9] == 6  # 16 bits per channel, RGBA
