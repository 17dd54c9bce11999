"""A finished job's image as the client asked for it, and the frames that carry it.

* Alpha: a content image with an alpha channel keeps it. PNG and WebP carry
  it exactly (the decoded alpha, bit for bit, when the output has the input's
  size; resized with the image otherwise); JPEG has none, so the image is
  flattened onto the request's `background` and the result says so.
* 16 bits per channel (PNG only) come from the optimizer's float pixels
  through `png16`, which Pillow cannot write.
* An encoding larger than the message limit goes out as several `result`
  frames (chunk_index / chunk_count / total_bytes), each repeating the
  metadata, which clients concatenate in order.

Encoding runs on a worker thread, never on the event loop.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from stylize_api.schema import StopReason
from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.job import images
from stylize_server.job.delivery import DeliveryOptions, OutputFormat, color_hex, parse_color
from stylize_server.job.types import Losses, Result
from stylize_server.wire import convert
from stylize_server.wire.png16 import encode_png16, to_uint16

# Room for the image bytes' own tag and length prefix in a chunk frame, over
# the metadata the frame repeats (measured per result: its request_id and
# colour strings vary).
FIELD_OVERHEAD = 16


@dataclass(frozen=True)
class Output:
    """The encoded result and what its frames say about it."""

    data: bytes
    mime_type: str
    width: int
    height: int
    bit_depth: int
    alpha: bool
    flattened_on: str
    losses: Losses
    iterations: int
    iterations_requested: int
    compute_seconds: float
    complete: bool
    stop_reason: StopReason

    @property
    def nbytes(self) -> int:
        return len(self.data)


def _alpha_at(alpha: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if alpha.shape[:2] == shape:
        return alpha
    return np.asarray(Image.fromarray(alpha).resize((shape[1], shape[0]), Image.Resampling.LANCZOS), np.uint8)


def _encode_rgba(rgba: np.ndarray, fmt: OutputFormat, quality: int) -> bytes:
    buf = io.BytesIO()
    image = Image.fromarray(rgba, mode="RGBA")
    if fmt is OutputFormat.WEBP:
        # Lossy colour, lossless alpha (alpha_quality 100), colour under transparent pixels kept.
        image.save(buf, format="WEBP", quality=quality, method=4, alpha_quality=100, exact=True)
    else:
        image.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def encode_output(result: Result, alpha: np.ndarray | None, delivery: DeliveryOptions) -> Output:
    fmt = delivery.output_format
    height, width = result.shape
    mask = None if alpha is None else _alpha_at(alpha, (height, width))
    flattened_on = ""
    if delivery.output_bit_depth == 16:
        pixels = to_uint16(result.pixels)
        if mask is not None:
            pixels = np.concatenate([pixels, (mask.astype(np.uint16) * 257)[..., None]], axis=-1)
        data = encode_png16(pixels)
    elif mask is None:
        data = images.encode(result.image, fmt.value, delivery.quality)
    elif fmt is OutputFormat.JPEG:
        background = np.asarray(parse_color(delivery.background), np.float32)
        weight = mask.astype(np.float32)[..., None] / 255.0
        flat = result.pixels * weight + background * (1.0 - weight)
        data = images.encode(images.to_uint8(flat), fmt.value, delivery.quality)
        flattened_on = color_hex(parse_color(delivery.background))
    else:
        data = _encode_rgba(np.concatenate([result.image, mask[..., None]], axis=-1), fmt, delivery.quality)
    return Output(
        data=data,
        mime_type=images.MIME_TYPES[fmt.value],
        width=width,
        height=height,
        bit_depth=delivery.output_bit_depth,
        alpha=mask is not None and fmt is not OutputFormat.JPEG,
        flattened_on=flattened_on,
        losses=result.losses,
        iterations=result.iterations,
        iterations_requested=result.iterations_requested,
        compute_seconds=result.compute_seconds,
        complete=result.complete,
        stop_reason=result.stop_reason,
    )


def result_frames(
    output: Output, request_id: str, queue_wait: float, max_message_bytes: int
) -> Iterator[pb.StylizeResponse]:
    """The result as one frame, or as chunks when it is larger than a message
    may be: each chunk frame, metadata included, fits `max_message_bytes`."""
    view = memoryview(output.data)

    def frame(data: bytes, index: int, count: int) -> pb.StylizeResponse:
        return pb.StylizeResponse(
            result=pb.Result(
                image=pb.Image(data=data),
                mime_type=output.mime_type,
                width=output.width,
                height=output.height,
                losses=convert.losses_to_proto(output.losses),
                iterations=output.iterations,
                queue_wait_seconds=queue_wait,
                compute_seconds=output.compute_seconds,
                request_id=request_id,
                complete=output.complete,
                stop_reason="STOP_REASON_" + output.stop_reason.name,
                iterations_requested=output.iterations_requested,
                chunk_index=index,
                chunk_count=count,
                total_bytes=len(view),
                alpha=output.alpha,
                flattened_on=output.flattened_on,
                bit_depth=output.bit_depth,
            )
        )

    # The largest indices and counts a chunk could carry, so the room measured is never too much.
    metadata = frame(b"", 2**31 - 1, 2**31 - 1).ByteSize()
    size = max(1, max_message_bytes - metadata - FIELD_OVERHEAD)
    count = max(1, -(-len(view) // size))
    for index in range(count):
        yield frame(bytes(view[index * size : (index + 1) * size]), index, count)
