"""The demo path a newcomer takes: the sample images and `scripts/demo.py`
(what `make demo` runs, and `make demo CONTROLS=1`), end to end against a
real `stylize-server` subprocess and the real `stylize` CLI, with random
weights at a tiny size; and the offline failure, which says once what to do.
The plain demo's end-to-end run is the README's quick start
(test_readme.py::test_the_quick_start_demo_runs_as_written), which runs it
through `make demo` as a newcomer does."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_samples_are_deterministic(tmp_path: Path) -> None:
    make_samples = load_script("make_samples")
    first = make_samples.write_samples(tmp_path / "a", size=96)
    second = make_samples.write_samples(tmp_path / "b", size=96)
    assert digest(first.content) == digest(second.content)
    assert digest(first.style) == digest(second.style)
    assert digest(first.content) != digest(first.style)


def test_samples_look_like_a_landscape_and_a_painting(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "make_samples.py"), str(tmp_path), "--size", "128"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    content = np.asarray(Image.open(tmp_path / "content.png").convert("RGB"), np.float32)
    style = np.asarray(Image.open(tmp_path / "style.png").convert("RGB"), np.float32)
    assert content.shape == (96, 128, 3) and style.shape == (128, 128, 3)
    sky, ground = content[:8].reshape(-1, 3).mean(0), content[-8:].reshape(-1, 3).mean(0)
    assert sky[2] > sky[0] and sky[2] > sky[1], "blue sky at the top"
    assert ground[1] > ground[0] and ground[1] > ground[2], "green meadow at the bottom"
    # Strokes: strong local contrast and many distinct colours, unlike a flat
    # gradient (which would give style transfer nothing to transfer).
    assert np.abs(np.diff(style, axis=1)).mean() > 10
    assert len(np.unique(style.reshape(-1, 3), axis=0)) > 2000


def test_make_samples_refuses_a_silly_size(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "make_samples.py"), str(tmp_path), "--size", "4"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "--size" in proc.stderr


def test_demo_fails_fast_and_shows_the_log_when_the_server_cannot_start(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-weights.h5"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "demo.py"),
            "--weights",
            str(missing),
            "--size",
            "32",
            "--iterations",
            "1",
            "--out",
            str(tmp_path / "out"),
            "--sample-size",
            "64",
            "--ready-timeout",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode != 0
    assert "exited with code" in proc.stderr and "before it was ready" in proc.stderr
    last_log_line = (tmp_path / "out" / "server.log").read_text().strip().splitlines()[-1]
    assert last_log_line in proc.stderr, "the server's own words are shown"
    assert (proc.stdout + proc.stderr).count("make demo WEIGHTS=random:0") == 1
    assert not (tmp_path / "out" / "result.png").exists()


def test_offline_demo_with_imagenet_weights_suggests_random_weights_once(tmp_path: Path) -> None:
    # No cached weights, and every download goes to a proxy that refuses: offline, on any machine.
    env = dict(os.environ, KERAS_HOME=str(tmp_path / "keras"), no_proxy="", NO_PROXY="")
    env.update(dict.fromkeys(("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"), "http://127.0.0.1:9"))
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "demo.py"),
            "--weights",
            "imagenet",
            "--size",
            "32",
            "--iterations",
            "1",
            "--out",
            str(tmp_path / "out"),
            "--sample-size",
            "64",
            "--ready-timeout",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    assert "before it was ready" in proc.stderr
    assert output.count("make demo WEIGHTS=random:0") == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("[demo] no weights? Offline, run `make demo WEIGHTS=")


def test_control_samples_masks_split_sky_from_land(tmp_path: Path) -> None:
    make_samples = load_script("make_samples")
    samples = make_samples.write_control_samples(tmp_path, size=128)
    sky = np.asarray(Image.open(samples.sky).convert("L"), np.float32) / 255
    ground = np.asarray(Image.open(samples.ground).convert("L"), np.float32) / 255
    assert sky.shape == ground.shape == (96, 128)
    assert np.allclose(sky + ground, 1.0, atol=1 / 255)  # complementary
    assert sky[:5].mean() > 0.99 and sky[-5:].mean() < 0.01  # sky on top, land below
    content = np.asarray(Image.open(samples.content).convert("RGB"), np.float32)
    assert content[sky > 0.5].mean(0)[2] > content[ground > 0.5].mean(0)[2], "the sky mask covers the blue part"
    warm = np.asarray(Image.open(samples.style2).convert("RGB"), np.float32).reshape(-1, 3).mean(0)
    night = np.asarray(Image.open(samples.style).convert("RGB"), np.float32).reshape(-1, 3).mean(0)
    assert warm[0] > warm[2] and night[2] > night[0], "two paintings of different palettes"


PICTURE_DEMOS = {
    # flag: (picture, result files, labels the picture must carry)
    "--controls": (
        "controls.png",
        ("masked", "color-none", "color-luminance", "color-histogram"),
        ("mask: sky", "A@sky + B@land", "colour control: none", "luminance", "histogram"),
    ),
    "--statistics": (
        "statistics.png",
        ("statistics-gram", "statistics-mean-cov", "statistics-gram-ema", "statistics-mean-cov-ema"),
        ("gram", "mean_cov (W2)", "gram + EMA", "mean_cov + EMA"),
    ),
}


@pytest.mark.parametrize("flag", list(PICTURE_DEMOS))
def test_picture_demos_end_to_end_with_random_weights(tmp_path: Path, flag: str) -> None:
    """`make demo CONTROLS=1` and `STATISTICS=1`: four CLI jobs through a real server, one labelled picture."""
    name, results, labels = PICTURE_DEMOS[flag]
    out, picture = tmp_path / "out", tmp_path / "docs" / name
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "demo.py"),
            "--weights",
            "random:0",
            flag,
            "--size",
            "48",
            "--iterations",
            "4",
            "--out",
            str(out),
            "--picture",
            str(picture),
            "--sample-size",
            "96",
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert str(picture) in proc.stdout and "exited with code" not in output
    for result_name in results:
        with Image.open(out / f"{result_name}.png") as result:
            assert max(result.size) == 48, result_name
    with Image.open(picture) as img:
        assert img.format == "PNG" and img.width > 4 * 48 and img.height > 2 * 48
        assert "RANDOM weights (random:0)" in img.text["Warning"]
        for label in labels:
            assert label in img.text["Description"]


def test_ctrl_c_cancels_the_job_and_stops_the_server(tmp_path: Path) -> None:
    out = tmp_path / "out"
    log = tmp_path / "demo.log"
    # A terminal's Ctrl-C is SIGINT to the whole foreground process group; the
    # demo runs in its own group here so that the test can do the same. The
    # exec'ing wrapper undoes a SIGINT=ignored inherited from a non-interactive
    # parent, as an interactive shell would.
    launcher = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "os.execv(sys.executable, [sys.executable] + sys.argv[1:])"
    )
    with log.open("w") as log_file:
        demo = subprocess.Popen(
            [
                sys.executable,
                "-c",
                launcher,
                str(SCRIPTS / "demo.py"),
                "--weights",
                "random:0",
                "--size",
                "64",
                "--iterations",
                "2000",
                "--save-every",
                "1",
                "--out",
                str(out),
                "--sample-size",
                "64",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while not list((out / "frames").glob("*.png")):  # the job is running on the server
            assert demo.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=90) == 130
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    output = log.read_text()
    assert "interrupted" in output and not (out / "result.png").exists()
    port = int(re.search(r"server SERVING on 127\.0\.0\.1:(\d+)", output).group(1))
    with pytest.raises(ConnectionRefusedError):  # nothing is left listening
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


@pytest.mark.parametrize("flag", ["--size", "--iterations"])
def test_demo_rejects_nonsense_arguments(tmp_path: Path, flag: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "demo.py"), flag, "0", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and flag in proc.stderr
