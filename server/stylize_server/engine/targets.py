"""What the objective matches at one scale: the content's feature maps, each
region's blended style Gram matrices, and the regions' guides at every style
layer. Computed with the scale's tiling (forward only), one style image at a
time, polling for a stop before each piece of work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from stylize_server.engine import prepare, regions
from stylize_server.engine.objective import LossSpec, Targets
from stylize_server.engine.tiling import Evaluator, Stopped
from stylize_server.job.layout import layer_index
from stylize_server.job.options import JobOptions, Layers, style_shape
from stylize_server.job.precision import Precision

Phase = Callable[[str], None]


def canonical_layers(layers: Layers) -> Layers:
    """Layers in network order, weights carried along: the order a request
    names them in never changes the loss or what is compiled."""
    return tuple(sorted(layers, key=lambda lw: layer_index(lw[0])))


def canonical(options: JobOptions) -> JobOptions:
    return options.replace(
        content_layers=canonical_layers(options.content_layers),
        style_layers=canonical_layers(options.style_layers),
    )


def spec_for(options: JobOptions, precision: Precision, guided: bool) -> LossSpec:
    """The LossSpec of canonical, resolved options."""
    assert options.pooling is not None
    return LossSpec(
        content_layers=tuple(n for n, _ in options.content_layers),
        style_layers=tuple(n for n, _ in options.style_layers),
        pooling=options.pooling,
        precision=precision,
        guided=guided,
    )


def batch(image: np.ndarray) -> tf.Tensor:
    return tf.constant(np.asarray(image, np.float32)[None])


def build(
    evaluator: Evaluator,
    options: JobOptions,
    content: np.ndarray,
    styles: Sequence[np.ndarray],
    job_regions: Sequence[regions.Region],
    should_stop: Callable[[], bool],
    on_phase: Phase | None = None,
) -> Targets | None:
    """The scale's Targets (`content` is the content resized to the scale,
    `styles` the colour-controlled style images); None when a stop was asked
    for meanwhile. Stops are polled before each image and between tiles."""
    spec = evaluator.objective.spec
    shape = (int(content.shape[0]), int(content.shape[1]))

    def phase(name: str) -> bool:
        if on_phase is not None:
            on_phase(name)
        return should_stop()

    try:
        content_targets: list[tf.Tensor] = []
        if spec.content_layers:
            if phase("content targets"):
                return None
            view = prepare.content_view(options, content)
            content_targets = evaluator.content_features(batch(view), should_stop)
        style_targets: list[tf.Tensor] = []
        guides: list[tf.Tensor] = []
        if spec.style_layers:
            blended = _blend(evaluator, options, shape, styles, job_regions, phase, should_stop)
            if blended is None:
                return None
            style_targets = blended
            if spec.guided:
                planes = regions.guides_at_scale(job_regions, shape)
                guides = [tf.constant(g) for g in regions.guides_per_layer(planes, spec.style_layers)]
    except Stopped:
        return None
    return Targets(
        content=tuple(content_targets),
        style=tuple(style_targets),
        guides=tuple(guides),
        content_layer_weights=tf.constant([w for _, w in options.content_layers], tf.float32),
        style_layer_weights=tf.constant([w for _, w in options.style_layers], tf.float32),
        loss_weights=tf.constant([options.content_weight, options.style_weight, options.tv_weight], tf.float32),
    )


def _blend(
    evaluator: Evaluator,
    options: JobOptions,
    shape: tuple[int, int],
    styles: Sequence[np.ndarray],
    job_regions: Sequence[regions.Region],
    phase: Callable[[str], bool],
    should_stop: Callable[[], bool],
) -> list[tf.Tensor] | None:
    """Per style layer: the blended Gram [C, C] (one region, unguided) or
    the regions' blended Grams stacked [R, C, C] (guided). Each style image's
    Grams are computed once, whatever region it belongs to."""
    spec = evaluator.objective.spec
    per_region: list[list[tf.Tensor] | None] = [None] * len(job_regions)
    wanted = sorted({i for r in job_regions for i, _ in r.styles})
    for n, index in enumerate(wanted):
        if phase(f"style {n + 1} of {len(wanted)}"):
            return None
        style = styles[index]
        shaped = prepare.resize(style, style_shape(style.shape[:2], shape, options.style_scale))
        grams = evaluator.style_grams(batch(shaped), should_stop)
        for r, region in enumerate(job_regions):
            for member, weight in region.styles:
                if member == index:
                    scaled = [weight * g for g in grams]
                    current = per_region[r]
                    per_region[r] = scaled if current is None else [a + b for a, b in zip(current, scaled)]
    if not spec.guided:
        only = per_region[0]
        assert only is not None  # validate() guarantees a positive weight
        return only
    out = []
    for layer, name in enumerate(spec.style_layers):
        channels = int(evaluator.objective.target_specs[1][layer].shape[-1])
        stacked = [g[layer] for g in per_region if g is not None]
        out.append(tf.stack(stacked) if stacked else tf.zeros([0, channels, channels]))
        del name
    return out
