"""What the objective matches at one scale: each term builds its own targets
(engine/terms) through a `ScaleContext`, which gives it the scale's images
and the evaluator's tiled forward passes (feature maps, image statistics).
Computed with the scale's tiling (forward only), one image at a time,
polling for a stop before each piece of work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from stylize_server.engine import regions as region_plan
from stylize_server.engine import terms
from stylize_server.engine.spec import LossSpec, Targets
from stylize_server.engine.terms.base import Term
from stylize_server.engine.tiling import Evaluator, Stopped
from stylize_server.job.layout import layer_index
from stylize_server.job.options import JobOptions, Layers
from stylize_server.job.precision import Precision
from stylize_server.job.temporal import Temporal

Phase = Callable[[str], None]


def canonical_layers(layers: Layers) -> Layers:
    """Layers in network order, weights carried along: the order a request
    names them in never changes the loss or what is compiled."""
    return tuple(sorted(layers, key=lambda lw: layer_index(lw[0])))


def canonical(options: JobOptions) -> JobOptions:
    """Every term's layer list in network order."""
    for cls in terms.catalogue():
        if cls.layers_option is not None:
            layers = cls.layer_weights(options)
            if layers:
                options = options.with_value(cls.layers_option, canonical_layers(layers))
    return options


def spec_for(options: JobOptions, precision: Precision, guided: bool) -> LossSpec:
    """The LossSpec of canonical, resolved options: their active terms."""
    assert options.pooling is not None
    keys = tuple((cls.name, tuple(n for n, _ in cls.layer_weights(options))) for cls in terms.active(options))
    return LossSpec(terms=keys, pooling=options.pooling, precision=precision, guided=guided)


def batch(image: np.ndarray) -> tf.Tensor:
    return tf.constant(np.asarray(image, np.float32)[None])


@dataclass
class ScaleContext:
    """terms.TargetContext at one scale."""

    evaluator: Evaluator
    options: JobOptions
    shape: tuple[int, int]
    content: np.ndarray
    styles: Sequence[np.ndarray]
    regions: Sequence[region_plan.Region]
    guided: bool
    should_stop: Callable[[], bool]
    on_phase: Phase | None = None
    temporal: Temporal | None = None  # a video frame's warped previous output (terms/temporal.py)

    def phase(self, name: str) -> bool:
        if self.on_phase is not None:
            self.on_phase(name)
        return self.should_stop()

    def features(self, layers: Sequence[str], image: np.ndarray) -> list[tf.Tensor]:
        return self.evaluator.features(layers, batch(image), self.should_stop)

    def image_sums(self, term: Term, image: np.ndarray) -> list[list[tf.Tensor]]:
        index = self.evaluator.objective.terms.index(term)
        return self.evaluator.image_sums(index, batch(image), self.should_stop)


def build(
    evaluator: Evaluator,
    options: JobOptions,
    content: np.ndarray,
    styles: Sequence[np.ndarray],
    job_regions: Sequence[region_plan.Region],
    should_stop: Callable[[], bool],
    on_phase: Phase | None = None,
    temporal: Temporal | None = None,
) -> Targets | None:
    """The scale's Targets (`content` is the content resized to the scale,
    `styles` the colour-controlled style images); None when a stop was asked
    for meanwhile. Stops are polled before each image and between tiles."""
    objective = evaluator.objective
    shape = (int(content.shape[0]), int(content.shape[1]))
    ctx = ScaleContext(
        evaluator, options, shape, content, styles, job_regions, objective.spec.guided, should_stop, on_phase, temporal
    )
    per_term = []
    try:
        for term in objective.terms:
            built = term.targets(ctx)
            if built is None:
                return None
            per_term.append(built)
    except Stopped:
        return None
    weights = tf.constant([type(term).weight(options) for term in objective.terms], tf.float32)
    return Targets(per_term=tuple(per_term), weights=weights)
