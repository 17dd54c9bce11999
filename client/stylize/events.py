"""Typed events of one Stylize stream, built from the protobuf frames.

A stream yields, in order: zero or more `Queued`, one `Started`, zero or more
`Progress` and exactly one `Result`. The dataclasses here are what the sync and
the asyncio clients yield, so callers never touch protobuf messages; each has
`to_dict()` for logging and the CLI's `--json` output (image bytes left out).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format

from stylize.v1 import stylize_pb2


@dataclass(frozen=True)
class Losses:
    """Loss terms, already multiplied by their weights; total = content + style + tv."""

    content: float
    style: float
    tv: float
    total: float

    @classmethod
    def from_proto(cls, msg: stylize_pb2.Losses) -> Losses:
        return cls(content=msg.content, style=msg.style, tv=msg.tv, total=msg.total)

    def to_dict(self) -> dict[str, float]:
        return {"content": self.content, "style": self.style, "tv": self.tv, "total": self.total}


@dataclass(frozen=True)
class Queued:
    """The job waits behind others; position 1 means next."""

    position: int
    queue_depth: int

    def to_dict(self) -> dict[str, Any]:
        return {"event": "queued", "position": self.position, "queue_depth": self.queue_depth}


@dataclass(frozen=True)
class Started:
    """The job has a slot on the device and runs with `options` (defaults filled in)."""

    request_id: str
    width: int
    height: int
    queue_wait_seconds: float
    total_iterations: int
    scale_sizes: tuple[int, ...]
    scale_iterations: tuple[int, ...]
    options: dict[str, Any] = field(repr=False)

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
        from PIL import Image

        img = Image.open(io.BytesIO(self.preview))
        img.load()
        return img

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
    """The finished image (`image`: encoded bytes of `mime_type`) and its timings."""

    image: bytes = field(repr=False)
    mime_type: str
    width: int
    height: int
    losses: Losses
    iterations: int
    queue_wait_seconds: float
    compute_seconds: float
    request_id: str

    @property
    def extension(self) -> str:
        """File extension that matches `mime_type`, with the dot."""
        return {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}.get(self.mime_type, ".img")

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the encoded image bytes as they came from the server."""
        with open(path, "wb") as f:
            f.write(self.image)

    def to_pil(self) -> Any:
        from PIL import Image

        img = Image.open(io.BytesIO(self.image))
        img.load()
        return img

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": "result",
            "request_id": self.request_id,
            "width": self.width,
            "height": self.height,
            "mime_type": self.mime_type,
            "bytes": len(self.image),
            "iterations": self.iterations,
            "losses": self.losses.to_dict(),
            "queue_wait_seconds": self.queue_wait_seconds,
            "compute_seconds": self.compute_seconds,
        }


Event = Queued | Started | Progress | Result


def event_from_frame(frame: stylize_pb2.StylizeResponse) -> Event:
    """The typed event for one stream frame; ValueError for an empty frame."""
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
    if kind == "result":
        r = frame.result
        return Result(
            image=bytes(r.image.data),
            mime_type=r.mime_type,
            width=r.width,
            height=r.height,
            losses=Losses.from_proto(r.losses),
            iterations=r.iterations,
            queue_wait_seconds=r.queue_wait_seconds,
            compute_seconds=r.compute_seconds,
            request_id=r.request_id,
        )
    raise ValueError("empty StylizeResponse frame (no oneof field set)")
