"""Protocol buffers <-> the server's own types.

`request_to_options` turns a StylizeRequest into validated JobOptions (images
decoded under the server's limits, enums and optional fields mapped, defaults
left to `options`), and the `*_to_proto` functions turn resolved options,
losses, progress and results into the frames of the stream. Nothing here knows
about gRPC calls or the engine's internals.
"""
from __future__ import annotations

import math
import uuid
from typing import Sequence

import numpy as np

from stylize.v1 import stylize_pb2 as pb

from . import images
from .errors import InvalidArgument
from .options import (
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_STYLE_LAYERS,
    Init,
    JobOptions,
    Limits,
    OutputFormat,
    Optimizer,
    Pooling,
    StyleSource,
    blend_weights,
    plan_scales,
    resolve,
    style_side,
    validate,
)

_OPTIMIZERS = {pb.OPTIMIZER_LBFGS: Optimizer.LBFGS, pb.OPTIMIZER_ADAM: Optimizer.ADAM}
_POOLINGS = {pb.POOLING_AVG: Pooling.AVG, pb.POOLING_MAX: Pooling.MAX}
_INITS = {
    pb.INIT_CONTENT: Init.CONTENT,
    pb.INIT_NOISE: Init.NOISE,
    pb.INIT_STYLE: Init.STYLE,
    pb.INIT_IMAGE: Init.IMAGE,
}
_FORMATS = {
    pb.OUTPUT_FORMAT_PNG: OutputFormat.PNG,
    pb.OUTPUT_FORMAT_JPEG: OutputFormat.JPEG,
    pb.OUTPUT_FORMAT_WEBP: OutputFormat.WEBP,
}
_OPTIMIZERS_BACK = {v: k for k, v in _OPTIMIZERS.items()}
_POOLINGS_BACK = {v: k for k, v in _POOLINGS.items()}
_INITS_BACK = {v: k for k, v in _INITS.items()}
_FORMATS_BACK = {v: k for k, v in _FORMATS.items()}


def _enum(field: str, value: int, table: dict, enum_type) -> object | None:
    """None for UNSPECIFIED (the server default); InvalidArgument for a number
    the server does not know (proto3 enums are open)."""
    if value == 0:
        return None
    if value not in table:
        names = ", ".join(enum_type.Name(k) for k in table)
        raise InvalidArgument(field, f"unknown value {value}; use one of {names}")
    return table[value]


def _layers(field: str, layers: Sequence[pb.LayerWeight], default: tuple[tuple[str, float], ...]):
    if not layers:
        return default
    return tuple((lw.layer, float(lw.weight) if lw.HasField("weight") else 1.0) for lw in layers)


def request_to_options(request: pb.StylizeRequest, limits: Limits) -> JobOptions:
    """Decode and validate a request; raises InvalidArgument / TooLarge naming
    the field and the limit. Cheap checks come before any image is decoded."""
    if not request.HasField("content") or not request.content.data:
        raise InvalidArgument("content", "is required: the encoded content image (PNG, JPEG or WebP)")
    if not request.styles:
        raise InvalidArgument("styles", "at least one style image is required")
    if len(request.styles) > limits.max_styles:
        raise InvalidArgument(
            "styles", f"{len(request.styles)} style images exceed the limit of {limits.max_styles}"
        )
    if len(request.request_id) > 128:
        raise InvalidArgument("request_id", f"is {len(request.request_id)} characters; the limit is 128")

    kwargs: dict[str, object] = {}
    optimizer = _enum("optimizer", request.optimizer, _OPTIMIZERS, pb.Optimizer)
    if optimizer is not None:
        kwargs["optimizer"] = optimizer
    kwargs["pooling"] = _enum("pooling", request.pooling, _POOLINGS, pb.Pooling)
    init = _enum("init", request.init, _INITS, pb.Init)
    if init is not None:
        kwargs["init"] = init
    output_format = _enum("output_format", request.output_format, _FORMATS, pb.OutputFormat)
    if output_format is not None:
        kwargs["output_format"] = output_format
    has_init_image = request.HasField("init_image") and bool(request.init_image.data)
    if init is Init.IMAGE and not has_init_image:
        raise InvalidArgument("init_image", "is required when init = INIT_IMAGE")
    if has_init_image and init is not Init.IMAGE:
        raise InvalidArgument("init_image", "is set but init is not INIT_IMAGE; set init = INIT_IMAGE to use it")

    for name in (
        "size",
        "iterations",
        "multiscale_min_size",
        "progress_interval",
        "preview_max_side",
        "quality",
        "seed",
        "preserve_colors",
        "multiscale",
    ):
        if request.HasField(name):
            kwargs[name] = getattr(request, name)
    for name in ("learning_rate", "content_weight", "style_weight", "tv_weight", "style_scale"):
        if request.HasField(name):
            value = float(getattr(request, name))
            if not math.isfinite(value):
                raise InvalidArgument(name, f"must be a finite number, got {value!r}")
            kwargs[name] = value
    kwargs["content_layers"] = _layers("content_layers", request.content_layers, DEFAULT_CONTENT_LAYERS)
    kwargs["style_layers"] = _layers("style_layers", request.style_layers, DEFAULT_STYLE_LAYERS)
    kwargs["request_id"] = request.request_id or uuid.uuid4().hex[:16]

    content = images.decode(request.content.data, "content", limits.max_input_pixels)
    styles = []
    for i, style in enumerate(request.styles):
        if not style.HasField("image") or not style.image.data:
            raise InvalidArgument(f"styles[{i}].image", "is required: the encoded style image")
        array = images.decode(style.image.data, f"styles[{i}].image", limits.max_input_pixels)
        weight = float(style.blend_weight) if style.HasField("blend_weight") else 1.0
        styles.append(StyleSource(array, weight))
    init_image = (
        images.decode(request.init_image.data, "init_image", limits.max_input_pixels) if has_init_image else None
    )
    options = JobOptions(content=content, styles=tuple(styles), init_image=init_image, **kwargs)  # type: ignore[arg-type]
    validate(options, limits)

    # Validated: now drop the pixels the job will never use (content and init
    # image to the output shape, styles to their largest scale), so a queued
    # job holds no more than it will use, whatever the size of the upload.
    out_h, out_w = options.output_shape
    style_longest = style_side(options.size, options.style_scale)
    shrunk_content = options.content
    if out_h * out_w < content.shape[0] * content.shape[1]:
        shrunk_content = images.resize(content, (out_h, out_w))
    return options.replace(
        content=shrunk_content,
        styles=tuple(StyleSource(images.shrink(s.image, style_longest), s.weight) for s in options.styles),
        init_image=None if init_image is None else images.shrink(init_image, max(out_h, out_w)),
    )


def resolved_to_proto(options: JobOptions, default_pooling: Pooling = Pooling.AVG) -> pb.ResolvedOptions:
    """The options a job runs with (or the server's defaults), as the API shows them."""
    resolved = resolve(options, default_pooling)
    scales = plan_scales(resolved)
    return pb.ResolvedOptions(
        size=resolved.size,
        iterations=resolved.iterations,
        optimizer=_OPTIMIZERS_BACK[resolved.optimizer],
        learning_rate=float(resolved.learning_rate or 0.0),
        content_weight=resolved.content_weight,
        style_weight=resolved.style_weight,
        tv_weight=resolved.tv_weight,
        content_layers=[pb.LayerWeight(layer=n, weight=w) for n, w in resolved.content_layers],
        style_layers=[pb.LayerWeight(layer=n, weight=w) for n, w in resolved.style_layers],
        pooling=pooling_to_proto(resolved.pooling),
        init=_INITS_BACK[resolved.init],
        seed=resolved.seed,
        style_scale=resolved.style_scale,
        preserve_colors=resolved.preserve_colors,
        multiscale=bool(resolved.multiscale),
        scale_sizes=[s.size for s in scales],
        scale_iterations=[s.iterations for s in scales],
        style_blend_weights=blend_weights(resolved.styles) if resolved.styles else [],
        output_format=_FORMATS_BACK[resolved.output_format],
        quality=resolved.quality,
        progress_interval=resolved.progress_interval,
        preview_max_side=resolved.preview_max_side,
    )


def pooling_to_proto(pooling: Pooling | str) -> int:
    return _POOLINGS_BACK[Pooling(pooling)]


def default_options() -> JobOptions:
    """JobOptions with every default and placeholder images (for ServerInfo.defaults)."""
    pixel = np.zeros((1, 1, 3), np.uint8)
    return JobOptions(content=pixel, styles=())


def losses_to_proto(losses) -> pb.Losses:
    return pb.Losses(
        content=float(losses.content), style=float(losses.style), tv=float(losses.tv), total=float(losses.total)
    )


def progress_to_proto(progress, preview_max_side: int) -> pb.Progress:
    """A progress frame; the preview (if asked for) is computed here, on the
    caller's thread, never on the engine's."""
    elapsed = float(progress.elapsed_seconds)
    done = max(1, int(progress.iteration))
    eta = elapsed / done * max(0, int(progress.total_iterations) - done)
    frame = pb.Progress(
        iteration=int(progress.iteration),
        total_iterations=int(progress.total_iterations),
        losses=losses_to_proto(progress.losses),
        elapsed_seconds=elapsed,
        eta_seconds=eta,
        scale_index=int(progress.scale_index),
    )
    if preview_max_side > 0:
        small = images.shrink(progress.image, preview_max_side)
        frame.preview.data = images.encode(small, "png")
        frame.preview_height, frame.preview_width = int(small.shape[0]), int(small.shape[1])
    return frame


def result_to_proto(result, options: JobOptions, queue_wait: float) -> pb.Result:
    """The final frame: the image encoded in the requested format."""
    fmt = OutputFormat(options.output_format).value
    data = images.encode(result.image, fmt, options.quality)
    height, width = int(result.image.shape[0]), int(result.image.shape[1])
    return pb.Result(
        image=pb.Image(data=data),
        mime_type=images.MIME_TYPES[fmt],
        width=width,
        height=height,
        losses=losses_to_proto(result.losses),
        iterations=int(result.iterations),
        queue_wait_seconds=queue_wait,
        compute_seconds=float(result.compute_seconds),
        request_id=options.request_id,
    )
