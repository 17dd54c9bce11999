"""Video files and frame folders for `stylize video`: reading the input's
frames lazily (one decoded frame at a time) and writing the output as a
video (mp4, webm, gif by extension, at the input's frame rate, the mp4's
audio copied) or as a folder of PNG frames. PyAV (the `video` extra, which
ships FFmpeg) is imported only here, and only for video files.

Every input is opened and its first frame decoded before the command
connects, so an unreadable input exits 2 without a call.
"""

from __future__ import annotations

import fractions
import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..images import ImageError, check_image_file
from .artifacts import MissingExtra
from .exits import UsageError

VIDEO_INPUTS = (".mp4", ".webm", ".mov", ".gif", ".mkv", ".avi", ".m4v")
VIDEO_OUTPUTS = {".mp4": "libx264", ".webm": "libvpx-vp9", ".gif": "gif"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
DEFAULT_FPS = 12.0  # a folder of frames says no rate: --fps, else this


def require_av() -> Any:
    try:
        import av
    except ImportError:
        raise MissingExtra(
            "video files need PyAV: pip install 'stylize-grpc[video]' (or give a folder of frames)"
        ) from None
    return av


@dataclass(frozen=True)
class VideoInput:
    """Where the frames come from, what is known of them up front."""

    path: Path | None  # a video file, or None for frame files
    files: tuple[Path, ...]  # frame files (empty for a video file)
    fps: float
    count: int  # 0 = unknown
    has_audio: bool

    def frames(self, skip: int = 0) -> Iterator[np.ndarray | Path]:
        """Frames from index `skip` on: file paths as they are, or decoded RGB arrays of a video."""
        if self.path is None:
            yield from self.files[skip:]
            return
        av = require_av()
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            for index, frame in enumerate(container.decode(stream)):
                if index >= skip:
                    yield frame.to_ndarray(format="rgb24")


def open_input(text: str, fps: float | None) -> VideoInput:
    """Check the input: a video file, a folder of frames or a quoted glob of them (sorted by name)."""
    path = Path(text)
    if any(ch in text for ch in "*?[") and not path.exists():
        files = tuple(sorted(Path(p) for p in glob.glob(text) if Path(p).suffix.lower() in IMAGE_SUFFIXES))
        return _frames(files, text, fps)
    if path.is_dir():
        files = tuple(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        return _frames(files, text, fps)
    if not path.is_file():
        raise UsageError(f"INPUT: no such file or folder: {text}")
    if path.suffix.lower() not in VIDEO_INPUTS:
        raise UsageError(f"INPUT: {text} is not a video ({', '.join(VIDEO_INPUTS)}) nor a folder or glob of frames")
    av = require_av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UsageError(f"INPUT: {text} has no video stream")
            stream = container.streams.video[0]
            next(iter(container.decode(stream)))  # the first frame decodes
            rate = stream.average_rate or stream.guessed_rate
            count = int(stream.frames or 0)
            has_audio = bool(container.streams.audio)
    except (av.error.FFmpegError, StopIteration, OSError) as exc:
        raise UsageError(f"INPUT: cannot read {text} as a video: {exc}") from None
    return VideoInput(path, (), fps or float(rate or DEFAULT_FPS), count, has_audio)


def _frames(files: tuple[Path, ...], text: str, fps: float | None) -> VideoInput:
    if not files:
        raise UsageError(f"INPUT: no frames ({', '.join(IMAGE_SUFFIXES)}) in {text}")
    try:
        check_image_file(files[0], "INPUT")
    except ImageError as exc:
        raise UsageError(str(exc)) from None
    return VideoInput(None, files, fps or DEFAULT_FPS, len(files), False)


def output_kind(text: str) -> str:
    """ "dir" (PNG frames) or the video suffix of OUTPUT."""
    suffix = Path(text).suffix.lower()
    if suffix in VIDEO_OUTPUTS:
        return suffix
    if suffix:
        raise UsageError(f"--output: {text}: a video ({', '.join(VIDEO_OUTPUTS)}) or a folder (no extension)")
    return "dir"


def frame_path(folder: Path, index: int) -> Path:
    return folder / f"frame_{index:05d}.png"


def done_frames(folder: Path) -> int:
    """How many frames from 0 on a --resume folder holds already (consecutive)."""
    count = 0
    while frame_path(folder, count).is_file():
        count += 1
    return count


class VideoWriter:
    """Writes stylized frames (encoded image bytes) to a video file as they come."""

    def __init__(self, path: Path, fps: float, source: VideoInput) -> None:
        self.av = require_av()
        self.path, self.fps, self.source = path, fps, source
        self._container: Any = None
        self._stream: Any = None
        self._audio: Any = None  # (input container, its audio stream, the output stream)

    def add(self, data: bytes) -> None:
        from io import BytesIO

        from PIL import Image

        rgb = np.asarray(Image.open(BytesIO(data)).convert("RGB"))
        suffix = self.path.suffix.lower()
        if self._container is None:
            self._open(rgb.shape[1], rgb.shape[0], suffix)
        if suffix != ".gif":  # yuv420p wants even sides
            rgb = rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]
        frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def _open(self, width: int, height: int, suffix: str) -> None:
        self._container = self.av.open(str(self.path), "w")
        rate = fractions.Fraction(self.fps).limit_denominator(1001)
        self._stream = self._container.add_stream(VIDEO_OUTPUTS[suffix], rate=rate)
        if suffix == ".gif":
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "rgb8"
        else:
            self._stream.width, self._stream.height = width // 2 * 2, height // 2 * 2
            self._stream.pix_fmt = "yuv420p"
        if suffix == ".mp4" and self.source.has_audio and self.source.path is not None:
            # Every stream is declared before the first packet is written.
            source = self.av.open(str(self.source.path))
            audio = source.streams.audio[0]
            self._audio = (source, audio, self._container.add_stream_from_template(audio))

    def close(self) -> None:
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        if self._audio is not None:
            self._copy_audio(*self._audio)
        self._container.close()
        self._container = None

    def _copy_audio(self, source: Any, audio: Any, out: Any) -> None:
        """The input's first audio stream, its packets copied as they are (no re-encoding)."""
        with source:
            for packet in source.demux(audio):
                if packet.dts is None:
                    continue
                packet.stream = out
                self._container.mux(packet)


def write_frame(folder: Path, index: int, data: bytes) -> Path:
    path = frame_path(folder, index)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # a frame file is whole or absent: --resume counts on it
    return path
