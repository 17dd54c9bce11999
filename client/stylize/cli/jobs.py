"""Running one job of a `run` (alone or in a batch): the stream, its events
to the display and the recorder, the output file, and what the whole
invocation says only once (random weights).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..client import StyleTransferClient, StylizeStream
from ..events import Result, Started
from ..request import Style
from .artifacts import JobRecorder
from .common import say_warning
from .display import Display

RANDOM_WEIGHTS_WARNING = (
    "the server runs RANDOM weights: results will not look like paintings"
    " (its operator can start it with --weights imagenet or a VGG-19 weights file)"
)


@dataclass
class JobSpec:
    """One image to stylize and where its outputs go."""

    name: str
    content: Path
    output: Path
    recorder: JobRecorder
    request_id: str | None


class Notices:
    """What one invocation says at most once, whichever job (or thread) sees it first."""

    def __init__(self, quiet: bool) -> None:
        self._lock = threading.Lock()
        self._said: set[str] = set()
        self._quiet = quiet

    def once(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._said or self._quiet:
                return
            self._said.add(key)
        say_warning(message)

    def on_started(self, event: Started) -> None:
        if event.random_weights:
            self.once("random_weights", RANDOM_WEIGHTS_WARNING)


class StreamRegistry:
    """The running streams, so that Ctrl-C can cancel every one of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: set[StylizeStream] = set()
        self.stopping = threading.Event()

    def add(self, stream: StylizeStream) -> None:
        with self._lock:
            self._streams.add(stream)
        if self.stopping.is_set():
            stream.cancel()

    def remove(self, stream: StylizeStream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def cancel_all(self) -> None:
        self.stopping.set()
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.cancel()


@dataclass
class RunContext:
    """What every job of one invocation shares."""

    client: StyleTransferClient
    styles: Sequence[Style]
    options: dict[str, Any]
    display: Display
    registry: StreamRegistry
    notices: Notices


def run_job(ctx: RunContext, spec: JobSpec) -> Result:
    """Stylize one image to the end and write its outputs (a partial result
    too); raises on failure."""
    if ctx.registry.stopping.is_set():
        raise KeyboardInterrupt
    started = time.monotonic()
    stream = ctx.client.stylize(spec.content, list(ctx.styles), request_id=spec.request_id, **ctx.options)
    ctx.registry.add(stream)
    result: Result | None = None
    try:
        for event in stream:
            frame = spec.recorder.on_event(event)
            if isinstance(event, Result):
                result = event
                continue
            if isinstance(event, Started):
                ctx.notices.on_started(event)
            ctx.display.event(spec.name, event, {"frame": frame} if frame else None)
    finally:
        ctx.registry.remove(stream)
        stream.close()
    assert result is not None  # the stream raises unless it ends with a result
    spec.output.parent.mkdir(parents=True, exist_ok=True)
    result.save(spec.output)
    spec.recorder.finish(result)
    info: dict[str, Any] = {
        "output": str(spec.output),
        "wall_seconds": round(time.monotonic() - started, 3),
        "attempts": stream.attempts,
    }
    if spec.recorder.frames_dir is not None:
        info["frames_dir"] = str(spec.recorder.frames_dir)
        info["frames"] = [str(p) for p in spec.recorder.frames]
    if spec.recorder.timelapse is not None:
        info["timelapse"] = str(spec.recorder.timelapse)
        info["timelapse_frames"] = spec.recorder.timelapse_frames
    if spec.recorder.loss_plot is not None:
        info["loss_plot"] = str(spec.recorder.loss_plot)
    ctx.display.done(spec.name, result, info)
    return result
