"""What the objective matches at one scale, for a JobSpec (spec.py): each term builds its own targets
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
from stylize_server.engine.spec import JobSpec, Targets
from stylize_server.engine.terms.base import Term
from stylize_server.engine.tiling import Evaluator, Stopped
from stylize_server.job.options import JobOptions
from stylize_server.job.temporal import Temporal

Phase = Callable[[str], None]


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
    job: JobSpec,
    content: np.ndarray,
    styles: Sequence[np.ndarray],
    job_regions: Sequence[region_plan.Region],
    should_stop: Callable[[], bool],
    on_phase: Phase | None = None,
    temporal: Temporal | None = None,
) -> Targets | None:
    """The scale's Targets (`content` is the content resized to the scale,
    `styles` the colour-controlled style images, the weights the job's);
    None when a stop was asked for meanwhile. Stops are polled before each
    image and between tiles."""
    objective = evaluator.objective
    shape = (int(content.shape[0]), int(content.shape[1]))
    guided = objective.spec.guided
    ctx = ScaleContext(
        evaluator, job.options, shape, content, styles, job_regions, guided, should_stop, on_phase, temporal
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
    return Targets(per_term=per_term, weights=tf.constant(job.weights, tf.float32))
