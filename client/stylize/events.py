"""Typed events of one Stylize stream, built from the protobuf frames.

A stream yields, in order: zero or more `Queued`, one `Started`, zero or more
`Progress` and exactly one `Result` (reassembled from its chunk frames). After
a lost connection the client attaches again: another `Started` with
`reattached=True` follows, then the job's later events. The dataclasses here
are what the sync and the asyncio clients yield, so callers never touch
protobuf messages; each has `to_dict()` for logging and the CLI's `--json`
output (image bytes left out).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from google.protobuf import json_format

from stylize_api.losses import Losses as Losses  # re-exported: the one Losses type
from stylize_api.schema import StopReason
from stylize_api.v1 import stylize_pb2

from .images import decode


@dataclass(frozen=True)
class Queued:
    """The job waits behind others; position 1 means next."""

    position: int
    queue_depth: int

    def to_dict(self) -> dict[str, Any]:
        return {"event": "queued", "position": self.position, "queue_depth": self.queue_depth}


@dataclass(frozen=True)
class ScaleEstimate:
    """The cost model's figures for one scale of a job."""

    width: int
    height: int
    iterations: int
    style_pixels: int
    device_memory_bytes: int
    seconds_per_iteration: float
    tile_size: int  # 0: the whole image at once
    tiles: int
    lbfgs_history: int


@dataclass(frozen=True)
class Estimate:
    """What the server expects a job to cost, from headers and options alone."""

    device_memory_bytes: int = 0
    seconds: float = 0.0
    flops: float = 0.0
    input_pixels: int = 0
    scales: tuple[ScaleEstimate, ...] = ()

    @classmethod
    def from_proto(cls, msg: stylize_pb2.Estimate) -> Estimate:
        scales = tuple(
            ScaleEstimate(
                width=s.width,
                height=s.height,
                iterations=s.iterations,
                style_pixels=s.style_pixels,
                device_memory_bytes=s.device_memory_bytes,
                seconds_per_iteration=s.seconds_per_iteration,
                tile_size=s.tile_size,
                tiles=s.tiles,
                lbfgs_history=s.lbfgs_history,
            )
            for s in msg.scales
        )
        return cls(msg.device_memory_bytes, msg.seconds, msg.flops, msg.input_pixels, scales)


@dataclass(frozen=True)
class Started:
    """The job has a slot on the device and runs with `options` (defaults filled in).

    `random_weights`: the server's network has random filters, so the result
    will not look like a painting. `reattached`: this call attached to a job an
    earlier call (same request_id) started, after a lost connection."""

    request_id: str
    width: int
    height: int
    queue_wait_seconds: float
    total_iterations: int
    scale_sizes: tuple[int, ...]
    scale_iterations: tuple[int, ...]
    options: dict[str, Any] = field(repr=False)
    estimate: Estimate = field(default_factory=Estimate, repr=False)
    random_weights: bool = False
    reattached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": "started",
            "request_id": self.request_id,
            "width": self.width,
            "height": self.height,
            "queue_wait_seconds": self.queue_wait_seconds,
            "total_iterations": self.total_iterations,
            "scale_sizes": list(self.scale_sizes),
            "scale_iterations": list(self.scale_iterations),
            "random_weights": self.random_weights,
            "reattached": self.reattached,
            "estimate": asdict(self.estimate),
            "options": self.options,
        }


@dataclass(frozen=True)
class Progress:
    """Where the optimization is. `preview` is PNG bytes, or None when previews are off."""

    iteration: int
    total_iterations: int
    losses: Losses
    elapsed_seconds: float
    eta_seconds: float
    scale_index: int
    preview: bytes | None = field(default=None, repr=False)
    preview_width: int = 0
    preview_height: int = 0

    def preview_image(self) -> Any:
        """The preview as a PIL image, or None."""
        if self.preview is None:
            return None
        return decode(self.preview, f"preview of iteration {self.iteration}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": "progress",
            "iteration": self.iteration,
            "total_iterations": self.total_iterations,
            "losses": self.losses.to_dict(),
            "elapsed_seconds": self.elapsed_seconds,
            "eta_seconds": self.eta_seconds,
            "scale_index": self.scale_index,
            "preview": self.preview is not None,
            "preview_width": self.preview_width,
            "preview_height": self.preview_height,
        }


@dataclass(frozen=True)
class Result:
    """The output image (`image`: encoded bytes of `mime_type`, reassembled
    from its chunks) and how the job went.

    `complete` is False when the server stopped the job early (`stop_reason`:
    its time limit, or the end of a drain): the image is then the best one so
    far, after `iterations` of `iterations_requested`. `alpha`: the image
    carries the content's alpha channel; `flattened_on`: the colour the alpha
    was flattened onto for a format without one (JPEG). `chunks`: how many
    frames the image came in."""

    image: bytes = field(repr=False)
    mime_type: str
    width: int
    height: int
    losses: Losses
    iterations: int
    queue_wait_seconds: float
    compute_seconds: float
    request_id: str
    complete: bool = True
    stop_reason: StopReason = StopReason.NONE
    iterations_requested: int = 0
    alpha: bool = False
    flattened_on: str = ""
    bit_depth: int = 8
    chunks: int = 1

    @property
    def extension(self) -> str:
        """File extension that matches `mime_type`, with the dot."""
        return {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}.get(self.mime_type, ".img")

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the encoded image bytes as they came from the server."""
        with open(path, "wb") as f:
            f.write(self.image)

    def to_pil(self) -> Any:
        return decode(self.image, "result")

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": "result",
            "request_id": self.request_id,
            "complete": self.complete,
            "stop_reason": self.stop_reason.value,
            "width": self.width,
            "height": self.height,
            "mime_type": self.mime_type,
            "bit_depth": self.bit_depth,
            "alpha": self.alpha,
            "flattened_on": self.flattened_on or None,
            "bytes": len(self.image),
            "chunks": self.chunks,
            "iterations": self.iterations,
            "iterations_requested": self.iterations_requested,
            "losses": self.losses.to_dict(),
            "queue_wait_seconds": self.queue_wait_seconds,
            "compute_seconds": self.compute_seconds,
        }

    @classmethod
    def from_proto(cls, msg: stylize_pb2.Result, image: bytes, chunks: int) -> Result:
        """The result whose metadata is `msg` (any of its chunk frames) and whose bytes are `image`."""
        try:
            stop = StopReason.from_number(msg.stop_reason)
        except (KeyError, ValueError):  # a stop reason newer than this client
            stop = StopReason.NONE
        return cls(
            image=image,
            mime_type=msg.mime_type,
            width=msg.width,
            height=msg.height,
            losses=Losses.from_proto(msg.losses),
            iterations=msg.iterations,
            queue_wait_seconds=msg.queue_wait_seconds,
            compute_seconds=msg.compute_seconds,
            request_id=msg.request_id,
            complete=msg.complete,
            stop_reason=stop,
            iterations_requested=msg.iterations_requested or msg.iterations,
            alpha=msg.alpha,
            flattened_on=msg.flattened_on,
            bit_depth=msg.bit_depth or 8,
            chunks=chunks,
        )


Event = Queued | Started | Progress | Result


def event_from_frame(frame: stylize_pb2.StylizeResponse) -> Queued | Started | Progress:
    """The typed event of a `queued`, `started` or `progress` frame (results
    come in chunks: see `stylize.calls.ResultAssembler`); ValueError otherwise."""
    kind = frame.WhichOneof("frame")
    if kind == "queued":
        q = frame.queued
        return Queued(position=q.position, queue_depth=q.queue_depth)
    if kind == "started":
        s = frame.started
        opts = s.options
        return Started(
            request_id=s.request_id,
            width=s.width,
            height=s.height,
            queue_wait_seconds=s.queue_wait_seconds,
            total_iterations=opts.iterations,
            scale_sizes=tuple(opts.scale_sizes),
            scale_iterations=tuple(opts.scale_iterations),
            options=json_format.MessageToDict(
                opts, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            ),
            estimate=Estimate.from_proto(s.estimate),
            random_weights=s.random_weights,
            reattached=s.reattached,
        )
    if kind == "progress":
        p = frame.progress
        has_preview = p.HasField("preview") and len(p.preview.data) > 0
        return Progress(
            iteration=p.iteration,
            total_iterations=p.total_iterations,
            losses=Losses.from_proto(p.losses),
            elapsed_seconds=p.elapsed_seconds,
            eta_seconds=p.eta_seconds,
            scale_index=p.scale_index,
            preview=bytes(p.preview.data) if has_preview else None,
            preview_width=p.preview_width,
            preview_height=p.preview_height,
        )
    raise ValueError(f"not an event frame: {kind or 'empty StylizeResponse (no oneof field set)'}")
