"""`stylize video`: a video (or a folder / glob of frames) stylized frame by
frame with temporal consistency, on the server's StylizeVideo.

    stylize video INPUT STYLE[@MASK]... -o OUTPUT [options of run] [--temporal-weight W] [--frame-iterations N]

OUTPUT is a video by its extension (mp4, webm, gif; at the input's frame
rate; an mp4's audio is copied) or a folder of PNG frames. Each frame is
written as it arrives. `--resume` continues into an existing folder: the
frames there are skipped and the server continues the video (same
request_id and job secret, kept in OUTPUT/.stylize-video.json) from the
first missing one. The input is opened, and its first frame decoded, before
the command connects: an unreadable input exits 2.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument
from ..video import FrameEvent, VideoFrame, VideoSummary
from .artifacts import MissingExtra
from .common import make_client, say_error, say_warning
from .exits import EXIT_OK, EXIT_PARTIAL, UsageError
from .paths import check_output_dir, check_output_file
from .run import _options, _positive_int, _styles, add_job_parser

if TYPE_CHECKING:
    from types import ModuleType

    from .videoio import VideoWriter

STATE_FILE = ".stylize-video.json"


def register(sub: Any) -> None:
    p = add_job_parser(
        sub,
        "video",
        summary="stylize a video (or a folder / glob of frames) with temporal consistency",
        description=(
            "Stylize every frame of INPUT (mp4, webm, mov, gif, or a folder / quoted glob of frames) in the style"
            " of STYLE(s), each frame starting from the previous stylized frame warped by the optical flow, with a"
            " temporal loss that keeps it there (Ruder et al. 2016). OUTPUT: a video by its extension (mp4, webm,"
            " gif) at the input's frame rate, or a folder of PNG frames. Video files need the `video` extra."
        ),
        source="INPUT",
        source_help="video file, or a folder / quoted glob of frames",
        output="OUTPUT",
        output_help="video file (.mp4 .webm .gif) or folder",
    )
    p.set_defaults(func=cmd_video)
    g = p.add_argument_group("video")
    g.add_argument(
        "--temporal-weight",
        type=float,
        metavar="W",
        help="weight of the temporal term (server default 1000; 0 = alone)",
    )
    g.add_argument(
        "--frame-iterations",
        type=_positive_int,
        metavar="N",
        help="iterations per frame after the first [iterations/2]",
    )
    g.add_argument(
        "--early-stop", type=float, metavar="F", help="end a later frame once the loss changes < F per iteration"
    )
    g.add_argument("--fps", type=float, metavar="FPS", help="frame rate of the output (default: the input's, or 12)")
    g.add_argument("--resume", action="store_true", help="continue into the existing OUTPUT folder")
    # For `run`'s helpers, which read them.
    p.set_defaults(save_every=None, frames_dir=None, timelapse=None, loss_plot=None)


class Progress:
    """Frames done of all, with the ETA from the frames after the first."""

    def __init__(self, args: argparse.Namespace, total: int, start: int) -> None:
        self.quiet, self.json = args.quiet, args.json
        self.total, self.done, self.start = total, start, start
        self.times: list[float] = []
        self.last = time.monotonic()

    def frame(self, event: VideoFrame, path: str) -> None:
        now = time.monotonic()
        self.times.append(now - self.last)
        self.last = now
        self.done = event.index + 1
        later = self.times[1:] or self.times
        eta = sum(later) / len(later) * max(0, self.total - self.done) if self.total else 0.0
        if self.json:
            result = event.result
            record = {"event": "frame", "index": event.index, "path": path, "iterations": result.iterations}
            print(json.dumps({**record, "seconds": self.times[-1], "eta_seconds": eta}), flush=True)
        elif not self.quiet:
            total = f"/{self.total}" if self.total else ""
            print(f"frame {self.done}{total}  {self.times[-1]:.1f} s  ETA {eta:.0f} s  -> {path}", flush=True)

    def summary(self, summary: VideoSummary) -> None:
        if self.json:
            print(json.dumps({"event": "summary", **vars(summary)}), flush=True)
        elif not self.quiet:
            hidden = summary.flow_hidden_seconds / summary.flow_seconds if summary.flow_seconds else 0.0
            print(
                f"{summary.frames} frames in {summary.seconds:.1f} s; optical flow {summary.flow_seconds:.2f} s,"
                f" {hidden:.0%} of it hidden behind the optimization",
                flush=True,
            )


def _state(folder: Path, args: argparse.Namespace, resume: bool) -> dict[str, str]:
    path = folder / STATE_FILE
    if resume and path.is_file():
        state: dict[str, str] = json.loads(path.read_text())
        return state
    state = {"request_id": args.request_id or f"video-{secrets.token_hex(8)}", "job_secret": secrets.token_hex(16)}
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state))
    return state


def _videoio() -> ModuleType:
    """The frame I/O, imported when `stylize video` runs: it needs numpy (the
    `video` extra), which the client's default install does not have."""
    try:
        from . import videoio
    except ImportError as exc:
        raise MissingExtra(f"stylize video needs the video extra ({exc}): pip install 'stylize-grpc[video]'") from None
    return videoio


def cmd_video(args: argparse.Namespace) -> int:
    videoio = _videoio()
    kind = videoio.output_kind(args.output)
    source = videoio.open_input(args.input, args.fps)  # before connecting: an unreadable input exits 2
    styles = _styles(args)
    options = _options(args)
    options["output_format"] = "png"
    out = Path(args.output)
    folder = out if kind == "dir" else None
    if args.resume and folder is None:
        raise UsageError("--resume continues into a folder of frames; OUTPUT is a video file")
    if folder is not None:
        check_output_dir(folder, "--output")
    else:
        check_output_file(out, "--output")
    start = videoio.done_frames(folder) if folder is not None and args.resume else 0
    state = _state(folder, args, args.resume) if folder is not None else {"request_id": args.request_id or ""}
    if state["request_id"]:
        options["request_id"] = state["request_id"]
    if start and source.count and start >= source.count:
        print(f"stylize: all {source.count} frames are in {folder} already", file=sys.stderr)
        return EXIT_OK
    writer = videoio.VideoWriter(out, source.fps, source) if folder is None else None
    progress = Progress(args, source.count, start)
    client = make_client(args, job_secret=state.get("job_secret"))
    summary: VideoSummary | None = None
    try:
        summary = _run(client, source, styles, options, args, folder, writer, progress, start)
    finally:
        if writer is not None:
            writer.close()  # what arrived is a playable video, even after an error
        client.close()
    if summary is not None and not summary.complete:
        hint = " (run again with --resume to go on)" if folder is not None else ""
        say_error(f"the server stopped the video after frame {summary.next_frame - 1}: {summary.message}{hint}")
        return EXIT_PARTIAL
    return EXIT_OK


def _run(
    client: Any,
    source: Any,
    styles: Any,
    options: dict[str, Any],
    args: argparse.Namespace,
    folder: Path | None,
    writer: VideoWriter | None,
    progress: Progress,
    start: int,
) -> VideoSummary | None:
    videoio = _videoio()
    offset = 0  # output index - server index, when a resume had to begin a new video
    first = start
    for attempt in range(2):
        try:
            events = client.stylize_video(
                source.frames(skip=start),
                styles,
                temporal_weight=args.temporal_weight,
                frame_iterations=args.frame_iterations,
                early_stop=args.early_stop,
                frame_count=max(0, source.count - start),
                first_frame=first,
                **options,
            )
            summary = None
            for event in events:
                if isinstance(event, VideoFrame):
                    index = event.index + offset
                    if folder is not None:
                        path = str(videoio.write_frame(folder, index, event.result.image))
                    else:
                        assert writer is not None
                        writer.add(event.result.image)
                        path = str(writer.path)
                    progress.frame(VideoFrame(index, event.result, event.flow_seconds), path)
                elif isinstance(event, VideoSummary):
                    summary = event
                    progress.summary(event)
                elif isinstance(event, FrameEvent):
                    pass
            return summary
        except InvalidArgument as exc:
            if attempt or not start or exc.reason is None or exc.reason.value != "VIDEO_RESUME":
                raise
            say_warning(f"{exc}; stylizing from frame {start} as a new video (the seam starts afresh)")
            offset, first = start, 0
    return None
