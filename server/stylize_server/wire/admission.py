"""From a StylizeRequest to a job the engine can run, paying for each step
only once the previous one passed: first the images' headers and the options
(nothing decoded), then the decoding, one image at a time, each shrunk at once
to what the job will use.

The serving layer calls `read_request` (cheap: checks every limit and gives
the shapes the cost model needs), plans the job once (plan.plan_job: the
budget and the time per job), decides on admission, and only then calls
`decode_inputs`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.job import images
from stylize_server.job.delivery import DeliveryOptions, validate_delivery
from stylize_server.job.errors import InvalidArgument
from stylize_server.job.geometry import output_shape, style_shape
from stylize_server.job.options import Inputs, InputShapes, JobOptions, Limits, StyleSource, validate
from stylize_server.wire import convert


@dataclass(frozen=True)
class RequestHead:
    """What a request asks for, known without decoding a pixel."""

    options: JobOptions  # as asked (unresolved)
    delivery: DeliveryOptions
    shapes: InputShapes
    content_alpha: bool  # the content has an alpha channel
    style_regions: tuple[int, ...] = ()  # each style's region of the loss (read_request)

    @property
    def regions(self) -> int:
        """The number of regions the cost model counts (one without any masks)."""
        return len(set(self.style_regions)) or 1


def read_request(request: pb.StylizeRequest, limits: Limits) -> RequestHead:
    """Check the options and every image's header against the limits.
    Raises InvalidArgument, DecodeFailed or TooLarge naming the field."""
    if not request.content.data:
        raise InvalidArgument("content", "is required: the encoded content image")
    if not request.styles:
        raise InvalidArgument("styles", "at least one style image is required")
    if len(request.styles) > limits.max_styles:
        raise InvalidArgument("styles", f"{len(request.styles)} style images exceed the limit of {limits.max_styles}")
    if len(request.request_id) > 128:
        raise InvalidArgument("request_id", f"is {len(request.request_id)} characters; the limit is 128")
    options, delivery = convert.request_options(request)
    # Each style's region of the loss: styles with the same mask bytes share
    # one, the styles without a mask share another.
    ids: dict[bytes, int] = {}
    regions = tuple(ids.setdefault(style.mask.data, len(ids)) for style in request.styles)
    validate_delivery(delivery, limits)
    cap = limits.max_input_pixels
    content = images.probe(request.content.data, "content", cap)
    styles, masks, weights = [], [], []
    for i, style in enumerate(request.styles):
        if not style.image.data:
            raise InvalidArgument(f"styles[{i}].image", "is required: the encoded style image")
        styles.append(images.probe(style.image.data, f"styles[{i}].image", cap).shape)
        masks.append(images.probe(style.mask.data, f"styles[{i}].mask", cap).shape if style.mask.data else None)
        weights.append(float(style.blend_weight) if style.HasField("blend_weight") else 1.0)
    init = images.probe(request.init_image.data, "init_image", cap).shape if request.init_image.data else None
    shapes = InputShapes(content.shape, tuple(styles), tuple(masks), tuple(weights), init)
    validate(options, shapes, limits)
    return RequestHead(options, delivery, shapes, content.alpha, regions)


def fingerprint(request: pb.StylizeRequest, head: RequestHead) -> str:
    """What makes two requests the same job (images, engine options, and the
    options that shape the result's bytes), whatever the stream's progress
    and preview settings. Reattaching needs the same fingerprint."""
    digest = hashlib.sha256()

    def add(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)

    # accept_partial decides admission only: a reattach finds the same job either way.
    delivery = head.delivery.replace(request_id="", progress_interval=1, preview_max_side=0, accept_partial=False)
    add(repr(head.options).encode())
    add(repr(delivery).encode())
    add(request.content.data)
    for style in request.styles:
        add(style.image.data)
        add(style.mask.data)
        add(repr(float(style.blend_weight) if style.HasField("blend_weight") else None).encode())
    add(request.init_image.data)
    return digest.hexdigest()


def decode_inputs(
    request: pb.StylizeRequest,
    head: RequestHead,
    limits: Limits,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[Inputs, np.ndarray | None] | None:
    """Decode every image, one at a time, each shrunk at once to the largest
    size the job uses (content, masks, alpha and init image to the output;
    styles to their size at the output's scale). Returns the inputs and the
    content's alpha at the output size (None without alpha), or None when
    `should_stop` said so between two images."""
    cap = limits.max_input_pixels
    out_hw = output_shape(head.options, head.shapes.content)
    decoded = images.decode(request.content.data, "content", cap, at_least=out_hw)
    content = _shrink(decoded.rgb, out_hw)
    alpha = None if decoded.alpha is None else _shrink(decoded.alpha, out_hw)
    del decoded
    styles = []
    for i, style in enumerate(request.styles):
        if should_stop():
            return None
        hw = style_shape(head.shapes.styles[i], out_hw, head.options.style_scale)
        image = _shrink(images.decode(style.image.data, f"styles[{i}].image", cap, at_least=hw).rgb, hw)
        mask = None
        if style.mask.data:
            plane = images.decode_mask(style.mask.data, f"styles[{i}].mask", cap, at_least=out_hw)
            mask = images.resize_float(plane, out_hw)
        styles.append(StyleSource(image, head.shapes.weights[i], mask))
    init = None
    if request.init_image.data:
        if should_stop():
            return None
        init = _shrink(images.decode(request.init_image.data, "init_image", cap, at_least=out_hw).rgb, out_hw)
    return Inputs(content=content, styles=tuple(styles), init_image=init), alpha


def _shrink(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize down to `hw` when larger (an upload is never enlarged here)."""
    if image.shape[0] * image.shape[1] <= hw[0] * hw[1]:
        return image
    return images.resize(image, hw)
