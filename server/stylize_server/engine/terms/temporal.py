"""Temporal consistency of a video frame (Ruder, Dosovitskiy & Brox 2016,
eq. 7): the reliability-weighted mean squared error between the image and the
previous stylized frame warped into this one by the optical flow
(job/flow.py):

    temporal = mean over the H·W·3 values of c · (x − ω)²

with c the per-pixel reliability (0 at disocclusions and motion boundaries)
and ω the warped previous output, both on the 0..255 pixel scale the image is
optimized on. Its gradient at a pixel is 2·c·(x − ω)/(H·W·3).

A term on the image's pixels, so it is exact under tiling (the image is never
tiled) and indifferent to masks. Active when `temporal_weight` > 0; a frame
without a previous one (the first, or a Stylize call) matches nothing: its
reliability is zero everywhere, so every frame of a video compiles to the
same objective. Ruder weighs it 1e3 against style 1e2 with the same MSE
normalizations as ours (jcjohnson/neural-style's), hence the video default
of 1e3 (serving/video.py); as a plain option its default is 0 (off).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar

import numpy as np
import tensorflow as tf

from stylize_server.engine.terms import register
from stylize_server.engine.terms.base import TargetContext, Term
from stylize_server.job.checks import check_finite
from stylize_server.job.options import JobOptions

WARPED = tf.TensorSpec([1, None, None, 3], tf.float32)
RELIABILITY = tf.TensorSpec([1, None, None, 1], tf.float32)


def loss_and_grad(image: tf.Tensor, warped: tf.Tensor, reliability: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The unweighted term and its gradient w.r.t. the [1, H, W, 3] image."""
    count = tf.cast(tf.size(image), tf.float32)
    diff = image - warped
    value = tf.reduce_sum(reliability * tf.square(diff)) / count
    return value, (2.0 / count) * reliability * diff


@register
class Temporal(Term):
    name = "temporal"
    order: ClassVar[int] = 40
    weight_option = "temporal_weight"
    option_defaults: ClassVar[Mapping[str, object]] = MappingProxyType({"temporal_weight": 0.0})

    @classmethod
    def active(cls, options: JobOptions) -> bool:
        return cls.weight(options) != 0.0  # a negative one is active so that `check` refuses it

    @classmethod
    def check(cls, options: JobOptions) -> None:
        check_finite("temporal_weight", cls.weight(options), 0.0, 1e12)

    def target_specs(self) -> list[tf.TensorSpec]:
        return [WARPED, RELIABILITY]

    def pixel(self, image: tf.Tensor, targets: Sequence[tf.Tensor], weight: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        value, grad = loss_and_grad(image, targets[0], targets[1])
        return weight * value, weight * grad

    def targets(self, ctx: TargetContext) -> tuple[tf.Tensor, ...] | None:
        h, w = ctx.shape
        found = ctx.temporal
        if found is None:
            return tf.zeros([1, h, w, 3]), tf.zeros([1, h, w, 1])
        warped = tf.constant(np.asarray(found.warped, np.float32)[None])
        trust = tf.constant(np.asarray(found.reliability, np.float32)[None, ..., None])
        if tuple(found.warped.shape[:2]) != (h, w):  # a coarser scale of a multi-scale frame
            warped = tf.image.resize(warped, (h, w), method="area")
            trust = tf.image.resize(trust, (h, w), method="area")
        return warped, trust

    @classmethod
    def state_values_per_pixel(cls, options: JobOptions, regions: int) -> float:
        return 4.0  # the warped frame (3) and its reliability (1)

    @classmethod
    def macs_per_pixel(cls, options: JobOptions, regions: int) -> float:
        return 12.0  # difference, square, weight, sum and the gradient, per channel
