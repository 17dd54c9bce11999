"""Total variation: the mean squared difference of neighbouring pixels, in y
plus in x (anishathalye/neural-style's definition), on the whole image:

    tv = mean((x[i+1, j] − x[i, j])²) + mean((x[i, j+1] − x[i, j])²)

It reads no feature map, so tiling never touches it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import tensorflow as tf

from stylize_server.engine import losses
from stylize_server.engine.terms import register
from stylize_server.engine.terms.base import TargetContext, Term


@register
class TotalVariation(Term):
    name = "tv"
    order: ClassVar[int] = 30
    weight_option = "tv_weight"

    def target_specs(self) -> list[tf.TensorSpec]:
        return []

    def pixel(self, image: tf.Tensor, targets: Sequence[tf.Tensor], weight: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        value, grad = losses.tv_loss_and_grad(image)
        return weight * value, weight * grad

    def targets(self, ctx: TargetContext) -> tuple[tf.Tensor, ...] | None:
        return ()
