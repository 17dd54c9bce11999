"""What the CLI records of a job besides its result: frames named by
iteration, and a time-lapse whose memory stays bounded however many previews
a long run sends (no server needed: the events are built here)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from stylize.cli.artifacts import GIF_MAX_FRAMES, JobRecorder
from stylize.events import Losses, Progress, Result, Started
from tests.support.images import encode, image_array, png_bytes

LOSSES = Losses.of([("content", 1.0), ("style", 1.0), ("tv", 1.0)])


def _started(total: int, reattached: bool = False) -> Started:
    return Started("r", 16, 12, 0.0, total, (16,), (total,), {}, reattached=reattached)


def _progress(i: int, total: int, preview: bytes) -> Progress:
    return Progress(i, total, LOSSES, 0.1 * i, 1.0, 0, preview, 16, 12)


def test_a_long_run_keeps_a_bounded_evenly_thinned_time_lapse(tmp_path: Path) -> None:
    total = 5000
    previews = [encode(image_array(16, 12, seed=i % 7)) for i in range(7)]
    recorder = JobRecorder(timelapse=tmp_path / "t.gif", save_every=1)
    recorder.on_event(_started(total))
    for i in range(1, total + 1):
        recorder.on_event(_progress(i, total, previews[i % 7]))
        assert len(recorder._previews) < GIF_MAX_FRAMES
    kept = len(recorder._previews)
    assert GIF_MAX_FRAMES // 2 <= kept < GIF_MAX_FRAMES  # thinned, not truncated
    result = Result(
        png_bytes(16, 12),
        "image/png",
        16,
        12,
        LOSSES,
        total,
        0.0,
        1.0,
        "r",
    )
    recorder.finish(result)
    with Image.open(tmp_path / "t.gif") as gif:
        assert 2 <= gif.n_frames <= kept + 1


def test_frames_are_named_by_iteration_and_survive_a_reattach(tmp_path: Path) -> None:
    recorder = JobRecorder(frames_dir=tmp_path / "frames", save_every=10)
    recorder.on_event(_started(30))
    for i in (10, 20):
        recorder.on_event(_progress(i, 30, png_bytes(16, 12)))
    recorder.on_event(_started(30, reattached=True))  # the same job after a lost connection
    recorder.on_event(_progress(20, 30, png_bytes(16, 12)))  # sent again: the same file
    recorder.on_event(_progress(30, 30, png_bytes(16, 12)))
    names = [p.name for p in recorder.frames]
    assert names == ["frame_0010.png", "frame_0020.png", "frame_0030.png"]
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == names
    assert recorder.history.iterations == [10, 20, 20, 30]


def _plot_title(tmp_path: Path, scale_of_iteration: list[int]) -> str:
    total = len(scale_of_iteration)
    recorder = JobRecorder(loss_plot=tmp_path / "losses.png")
    recorder.on_event(_started(total))
    for i, scale in enumerate(scale_of_iteration, 1):
        recorder.on_event(
            Progress(i, total, Losses.of([("content", 1.0 / i), ("style", 2.0), ("tv", 3.0)]), 0.1 * i, 1.0, scale)
        )
    recorder.finish(Result(png_bytes(16, 12), "image/png", 16, 12, LOSSES, total, 0.0, 1.0, "r"))
    with Image.open(tmp_path / "losses.png") as plot:
        return str(plot.text["Title"])


def test_the_loss_plot_explains_scale_lines_only_when_there_are_scales(tmp_path: Path) -> None:
    assert _plot_title(tmp_path, [0] * 6) == "stylize: losses"  # one scale: no dotted lines to explain
    assert _plot_title(tmp_path, [0, 0, 0, 1, 1, 1]) == "stylize: losses (dotted lines: next scale)"
