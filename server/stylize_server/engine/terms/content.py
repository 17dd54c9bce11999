"""Content: the mean squared error between the image's feature maps and the
content image's at the content layers (Gatys et al. 2015, eq. 1; the
normalization of jcjohnson/neural-style: mean over every value):

    content = Σ_l w_l · mean((F_l − P_l)²)

Per tile it sums the squared error over the interior; the gradient at a
position is c·(F − P) with c = 2·w_l / (values in the whole map)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import tensorflow as tf

from stylize_server.engine import losses, prepare
from stylize_server.engine.terms import register
from stylize_server.engine.terms.base import (
    TargetContext,
    TensorList,
    Term,
    View,
    layer_values_per_pixel,
    weights_tensor,
)
from stylize_server.job import layout
from stylize_server.job.options import JobOptions

SCALAR = tf.TensorSpec([], tf.float32)


@register
class Content(Term):
    name = "content"
    order: ClassVar[int] = 10
    weight_option = "content_weight"
    layers_option = "content_layers"

    def target_specs(self) -> list[tf.TensorSpec]:
        maps = [tf.TensorSpec([1, None, None, layout.channels(n)], tf.float32) for n in self.layers]
        return [*maps, tf.TensorSpec([len(self.layers)], tf.float32)]

    def sum_specs(self, j: int) -> list[tf.TensorSpec]:
        return [SCALAR]

    def mult_specs(self, j: int) -> list[tf.TensorSpec]:
        return [SCALAR]

    def tile_sums(self, j: int, features: tf.Tensor, view: View, targets: Sequence[tf.Tensor]) -> TensorList:
        return [losses.squared_error_sum(features, view.crop(targets[j]))]

    def reduce(
        self, sums: Sequence[Sequence[tf.Tensor]], targets: Sequence[tf.Tensor], image_hw: tf.Tensor, weight: tf.Tensor
    ) -> tuple[tf.Tensor, list[TensorList]]:
        layer_weights = targets[-1]
        total, mults = tf.constant(0.0, tf.float32), []
        for j in range(len(self.layers)):
            count = tf.cast(tf.size(targets[j]), tf.float32)
            loss, coefficient = losses.content_of_sums(sums[j][0], count, weight * layer_weights[j])
            total += loss
            mults.append([coefficient])
        return total, mults

    def cotangent(
        self, j: int, features: tf.Tensor, view: View, targets: Sequence[tf.Tensor], mults: Sequence[tf.Tensor]
    ) -> tf.Tensor:
        return mults[0] * (features - view.crop(targets[j]))

    def targets(self, ctx: TargetContext) -> tuple[tf.Tensor, ...] | None:
        weights = weights_tensor(self.layer_weights(ctx.options))
        if not self.layers:
            return (weights,)
        if ctx.phase("content targets"):
            return None
        maps = ctx.features(self.layers, prepare.content_view(ctx.options, ctx.content))
        return (*maps, weights)

    def placeholder_targets(self, height: int, width: int) -> tuple[tf.Tensor, ...]:
        maps = [
            tf.zeros([1, height // layout.stride(n), width // layout.stride(n), layout.channels(n)])
            for n in self.layers
        ]
        return (*maps, tf.ones([len(self.layers)]))

    @classmethod
    def state_values_per_pixel(cls, options: JobOptions, regions: int) -> float:
        # the content's feature maps, kept as targets at every scale
        return sum(layer_values_per_pixel(n) for n, _ in options.content_layers)
