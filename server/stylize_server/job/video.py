"""A video call's values, TF-free: its temporal options, the options of its
first and later frames, the errors of its bad input, and the state a call
keeps between frames (and, for a resume, between calls).

A video is a sequence of jobs, one per frame (serving/video.py). Frame 0
runs the request's options; each later frame runs `frame_iterations` (half
by default: Ruder et al. give the first frame about twice the others) from
the previous stylized frame warped into it (init = image), with the
temporal term weighted by `temporal_weight`. Every frame, the first too,
carries the term, so that the whole video compiles to one objective.
With temporal_weight 0 every frame is stylized alone, like the first: no
flow, no warped start (the baseline the temporal term is measured against).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from stylize_api.schema import ErrorReason
from stylize_server.job import flow
from stylize_server.job.checks import check_finite, check_range
from stylize_server.job.errors import InvalidArgument, TooLarge
from stylize_server.job.options import Init, Inputs, InputShapes, JobOptions, StyleSource

DEFAULT_TEMPORAL_WEIGHT = 1000.0  # Ruder et al.: 1e3 against style 1e2, our scale too (terms/temporal.py)


class VideoFrameSize(InvalidArgument):
    """A frame whose size differs from the first frame's."""

    reason = ErrorReason.VIDEO_FRAME_SIZE


class VideoFrameOrder(InvalidArgument):
    """A frame index out of order, repeated or skipped, or a misplaced header."""

    reason = ErrorReason.VIDEO_FRAME_ORDER


class VideoTooLong(TooLarge):
    """More frames than --max-video-frames."""

    reason = ErrorReason.VIDEO_TOO_LONG


class VideoResume(InvalidArgument):
    """A resume (first_frame) from a frame this request_id's video cannot continue at."""

    reason = ErrorReason.VIDEO_RESUME


@dataclass(frozen=True)
class VideoOptions:
    temporal_weight: float = DEFAULT_TEMPORAL_WEIGHT
    frame_iterations: int | None = None  # None: half of the first frame's iterations
    frame_count: int = 0  # 0: unknown
    first_frame: int = 0
    early_stop: float = 0.0  # relative loss change per iteration below which a later frame stops; 0: never

    def check(self, options: JobOptions, max_frames: int, max_iterations: int) -> None:
        check_finite("temporal_weight", self.temporal_weight, 0.0, 1e12)
        if self.frame_iterations is not None:
            check_range("frame_iterations", self.frame_iterations, 1, max_iterations)
        if self.frame_count < 0:
            raise InvalidArgument("frame_count", f"must be >= 0 (0 = unknown), got {self.frame_count}")
        if self.frame_count > max_frames:
            raise VideoTooLong(
                "frame_count",
                f"{self.frame_count} frames exceed this server's limit of {max_frames} frames per call "
                "(--max-video-frames); send the video in parts, resuming by request_id",
            )
        check_finite("early_stop", self.early_stop, 0.0, 1.0)
        if not 0 <= self.first_frame < 2**31 - 1:
            raise InvalidArgument("first_frame", f"must be >= 0, got {self.first_frame}")

    @property
    def alone(self) -> bool:
        """temporal_weight 0: every frame is stylized alone, as the first (no flow, no warped start)."""
        return self.temporal_weight == 0.0

    def later_iterations(self, options: JobOptions) -> int:
        if self.frame_iterations is not None:
            return self.frame_iterations
        return max(1, options.iterations // 2)

    def frame_options(self, options: JobOptions, later: bool) -> JobOptions:
        """The options of the first frame (later=False) or of any later one."""
        options = options.with_value("temporal_weight", self.temporal_weight)
        if not later or self.alone:
            return options
        return options.replace(iterations=self.later_iterations(options), init=Init.IMAGE)

    @staticmethod
    def frame_shapes(shapes: InputShapes, later: bool) -> InputShapes:
        """A later frame starts from an image the size of the content (the warped previous frame)."""
        return dataclasses.replace(shapes, init_image=shapes.content) if later else shapes

    def later_shapes(self, shapes: InputShapes) -> InputShapes:
        return self.frame_shapes(shapes, later=not self.alone)


@dataclass
class EarlyStop:
    """Whether a frame's optimization has settled: the loss changed by less
    than `tolerance` (relative, per iteration) at two reports in a row."""

    tolerance: float
    last: tuple[int, float] | None = None
    calm: int = 0

    def converged(self, iteration: int, total: float) -> bool:
        if self.tolerance <= 0:
            return False
        if self.last is not None and iteration > self.last[0]:
            before, value = self.last
            change = abs(value - total) / max(abs(value), 1e-12) / (iteration - before)
            self.calm = self.calm + 1 if change < self.tolerance else 0
        self.last = (iteration, total)
        return self.calm >= 2


@dataclass
class VideoState:
    """What a video carries from one frame to the next: the last content frame
    (at the output size, for the flow) and its stylized frame. Kept after a
    call that ended early, for a resume by request_id."""

    fingerprint: str
    next_frame: int = 0
    frame_shape: tuple[int, int] | None = None  # every frame's decoded (height, width)
    content: np.ndarray | None = None  # frame next_frame−1 at the output size, uint8
    output: np.ndarray | None = None  # its stylized pixels, float32 0..255
    busy: bool = False  # a call is running it

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.content, self.output) if a is not None)


def frame_inputs(
    content: np.ndarray,
    styles: tuple[StyleSource, ...],
    previous_output: np.ndarray | None,
    found: flow.Flow | None,
) -> Inputs:
    """A frame's inputs: alone (the first frame), or starting from the
    previous stylized frame warped into it (the content where the warp is
    unreliable) with that warp as the temporal term's target."""
    if previous_output is None or found is None:
        return Inputs(content, styles)
    temporal = flow.warp(previous_output, found)
    return Inputs(content, styles, flow.start_image(temporal, content), temporal)
