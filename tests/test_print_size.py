"""Print size end to end (issue 12): a real `stylize-server` process on
loopback, its limits raised by flags, makes a 2048x1536 output through the
`stylize` CLI on the CPU. The job runs the exact tiled objective (forced
tiles of 512 px) and its PNG is larger than the message limit, so it comes
back in chunks that the CLI reassembles.

Kept cheap for a 2-core CPU: two Adam iterations, a small style (style
scale 0.1), and the network cut at relu1_1 (the tiling and delivery paths
are the same for every depth; the deep layers' exactness, through pooling,
is tested at small sizes in test_engine_tiling.py). Cut at relu2_1, where
conv1_2 runs at 3 megapixels, it took 39 s alone on 2 cores, against 27 s.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from PIL import Image

from stylize.cli import EXIT_OK
from tests.support.cli import json_lines, run_cli
from tests.support.process import server_process

WIDTH, HEIGHT = 2048, 1536
MESSAGE_MB = 4


def _content(path: pathlib.Path) -> None:
    # Smaller than the output: the server scales it up to --size.
    y, x = np.mgrid[0 : HEIGHT // 4, 0 : WIDTH // 4]
    rgb = np.stack([x % 256, (y * 2) % 256, ((x + y) // 2) % 256], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(path)


# About 30-60 s on a 2-core CPU; a slower runner may need more than the suite's 300 s default.
@pytest.mark.timeout(900)
def test_a_2048x1536_output_through_the_cli_in_tiles_and_chunks(tmp_path: pathlib.Path) -> None:
    content, style, out = tmp_path / "content.png", tmp_path / "style.png", tmp_path / "print.png"
    _content(content)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(style)
    flags = ["--max-side", str(WIDTH), "--max-pixels", str(WIDTH * HEIGHT), "--max-message-mb", str(MESSAGE_MB)]
    flags += ["--tile-size", "512", "--max-job-seconds", "1200", "--warmup-sizes", ""]
    with server_process(*flags) as server:
        proc = run_cli(
            "run",
            str(content),
            str(style),
            "-o",
            str(out),
            "--server",
            server.address,
            "--size",
            str(WIDTH),
            "--iterations",
            "2",
            "--optimizer",
            "adam",
            "--init",
            "noise",  # a noisy image compresses badly: the PNG exceeds the message limit
            "--style-scale",
            "0.1",
            "--no-multiscale",
            "--style-layers",
            "relu1_1",
            "--content-layers",
            "relu1_1",
            "--json",
            "--timeout",
            "1200",
            timeout=1500,
        )
    assert proc.returncode == EXIT_OK, proc.stderr[-3000:]
    events = json_lines(proc.stdout)
    started = next(e for e in events if e["event"] == "started")
    (scale,) = started["estimate"]["scales"]
    assert (scale["width"], scale["height"]) == (WIDTH, HEIGHT)
    assert scale["tile_size"] == 512 and scale["tiles"] == 12  # 4 x 3 tiles of 512 px
    result = events[-1]
    assert result["event"] == "result" and result["complete"] is True and result["iterations"] == 2
    assert result["bytes"] > MESSAGE_MB * 1024 * 1024 and result["chunks"] >= 2
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)
        image.load()  # decodes whole: every chunk arrived, in order
    assert out.stat().st_size == result["bytes"]
