"""`stylize video` and the clients' `stylize_video`, end to end on a real
server (random weights, 32 px, 1-2 iterations), with real video files that
PyAV/FFmpeg writes here: an mp4 with audio in, an mp4 out at the input's
frame rate with the audio copied; a glob of frames into a folder, resumed
after a frame was lost; an unreadable input refused before connecting."""

from __future__ import annotations

import asyncio
import fractions
import math
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from stylize import AsyncStyleTransferClient, StyleTransferClient, VideoFrame, VideoSummary
from stylize.cli import EXIT_OK, EXIT_USAGE
from tests.support.cli import json_lines, run_cli
from tests.support.metrics import scrape, value
from tests.support.scenes import pan
from tests.support.server import free_port, running_server

COMMON = ("--size", "32", "--iterations", "2", "--frame-iterations", "1")


@pytest.fixture(scope="module")
def srv(engine):  # type: ignore[no-untyped-def]
    with running_server(engine=engine) as handle:
        yield handle


@pytest.fixture(scope="module")
def style(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("style") / "style.png"
    Image.fromarray(pan(32, 32, count=1, seed=9)[0][0]).save(path)
    return path


def write_mp4(path: Path, frames: list[np.ndarray], fps: int, audio: bool) -> None:
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        sound = out.add_stream("aac", rate=16000) if audio else None
        for image in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if sound is not None:
            seconds = len(frames) / fps
            tone = np.sin(np.arange(int(16000 * seconds)) * 2 * math.pi * 440 / 16000).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in [*sound.encode(frame), *sound.encode()]:
                out.mux(packet)


def test_an_mp4_with_audio_becomes_an_mp4_at_its_frame_rate_with_the_audio(srv, style, tmp_path) -> None:  # type: ignore[no-untyped-def]
    frames, _ = pan(48, 32, count=4, step=2)
    source = tmp_path / "in.mp4"
    write_mp4(source, frames, fps=8, audio=True)
    out = tmp_path / "out.mp4"
    proc = run_cli("video", str(source), str(style), "-o", str(out), "--server", srv.address, *COMMON, "--json")
    assert proc.returncode == EXIT_OK, proc.stderr
    events = json_lines(proc.stdout)
    assert [e["index"] for e in events if e["event"] == "frame"] == [0, 1, 2, 3]
    assert events[-1]["event"] == "summary" and events[-1]["frames"] == 4
    with av.open(str(out)) as result:
        stream = result.streams.video[0]
        assert stream.average_rate == fractions.Fraction(8) and len(list(result.decode(stream))) == 4
        assert len(result.streams.audio) == 1  # copied from the input


def test_a_glob_of_frames_into_a_folder_resumes_after_a_lost_frame(srv, style, tmp_path) -> None:  # type: ignore[no-untyped-def]
    frames, _ = pan(40, 32, count=3, step=2)
    for i, image in enumerate(frames):
        Image.fromarray(image).save(tmp_path / f"in_{i}.png")
    out = tmp_path / "out"
    args = ("video", str(tmp_path / "in_*.png"), str(style), "-o", str(out), "--server", srv.address, *COMMON)
    proc = run_cli(*args, "--request-id", "clip")
    assert proc.returncode == EXIT_OK, proc.stderr
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    before = value(scrape(srv.metrics_port), "stylize_video_frames_total")
    (out / "frame_00002.png").unlink()
    proc = run_cli(*args, "--resume")
    assert proc.returncode == EXIT_OK, proc.stderr
    assert (out / "frame_00002.png").is_file()
    assert value(scrape(srv.metrics_port), "stylize_video_frames_total") - before == 1  # only the missing one


def test_an_unreadable_input_exits_2_before_connecting(style, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is no video")
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens: connecting would exit 3
    proc = run_cli("video", str(bad), str(style), "-o", str(tmp_path / "o.mp4"), "--server", nowhere)
    assert proc.returncode == EXIT_USAGE and "cannot read" in proc.stderr and "broken.mp4" in proc.stderr
    proc = run_cli("video", str(tmp_path / "none"), str(style), "-o", str(tmp_path / "o"), "--server", nowhere)
    assert proc.returncode == EXIT_USAGE and "no such file" in proc.stderr


def test_the_clients_yield_each_frame_as_it_arrives(srv, style) -> None:  # type: ignore[no-untyped-def]
    frames, _ = pan(40, 32, count=2, step=2)
    with StyleTransferClient(srv.address) as client:
        events = list(client.stylize_video(frames, style, size=32, iterations=2, frame_iterations=1))
    done = [e for e in events if isinstance(e, VideoFrame)]
    assert [e.index for e in done] == [0, 1] and isinstance(events[-1], VideoSummary) and events[-1].complete
    assert done[1].result.losses.terms["temporal"] > 0 and done[1].flow_seconds > 0

    async def run() -> list[int]:
        async with AsyncStyleTransferClient(srv.address) as client:
            return [
                e.index
                async for e in client.stylize_video(frames, style, size=32, iterations=2, temporal_weight=0)
                if isinstance(e, VideoFrame)
            ]

    assert asyncio.run(run()) == [0, 1]
