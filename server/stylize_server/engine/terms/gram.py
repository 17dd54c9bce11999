"""Style by Gram matrices (Gatys et al. 2015, eq. 3-5), with spatial control
by guided Gram matrices (Gatys et al. 2017, sec. 4):

    G_l   = F_lᵀF_l / (C·N)                      style = Σ_l w_l · mean((G_l − A_l)²)
    G_l,r = (T_r∘F_l)ᵀ(T_r∘F_l) / (C·ΣT_r²)      guided: Σ_l w_l Σ_r mean((G_l,r − A_l,r)²)

A_l (A_l,r) is the blend of the styles' Grams (of each region's styles),
weighted by their blend weights. Per tile it sums FᵀF (Fᵀ(T_r²∘F)) over the
interior; `reduce` turns the totals into the loss and M_l (see losses.py); the
gradient at a position is M_l f (Σ_r T_r² M_l,r f). An all-ones guide gives
exactly the unguided Gram."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import tensorflow as tf

from stylize_server.engine import losses
from stylize_server.engine.terms import register, styles
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


@register
class Gram(Term):
    name = "style"
    order: ClassVar[int] = 20
    weight_option = "style_weight"
    layers_option = "style_layers"

    @classmethod
    def active(cls, options: JobOptions) -> bool:
        # `style_loss` (owned by terms/meancov.py) picks this term or the W2 one.
        return options.value("style_loss", {"style_loss": "gram"}) == "gram"

    def _gram_spec(self, j: int) -> tf.TensorSpec:
        c = layout.channels(self.layers[j])
        return tf.TensorSpec([None, c, c] if self.guided else [c, c], tf.float32)

    def target_specs(self) -> list[tf.TensorSpec]:
        grams = [self._gram_spec(j) for j in range(len(self.layers))]
        guides = [tf.TensorSpec([None, None, None], tf.float32) for _ in self.layers] if self.guided else []
        return [*grams, *guides, tf.TensorSpec([len(self.layers)], tf.float32)]

    def sum_specs(self, j: int) -> list[tf.TensorSpec]:
        return [self._gram_spec(j)]

    def mult_specs(self, j: int) -> list[tf.TensorSpec]:
        return [self._gram_spec(j)]

    def _guide(self, targets: Sequence[tf.Tensor], j: int, view: View) -> tf.Tensor | None:
        return styles.guide_rows(targets[len(self.layers) + j], view) if self.guided else None

    def tile_sums(self, j: int, features: tf.Tensor, view: View, targets: Sequence[tf.Tensor]) -> TensorList:
        return [losses.gram_sums(losses.flatten(features), self._guide(targets, j, view))]

    def reduce(
        self, sums: Sequence[Sequence[tf.Tensor]], targets: Sequence[tf.Tensor], image_hw: tf.Tensor, weight: tf.Tensor
    ) -> tuple[tf.Tensor, list[TensorList]]:
        n = len(self.layers)
        layer_weights = targets[-1]
        total, mults = tf.constant(0.0, tf.float32), []
        for j, name in enumerate(self.layers):
            k = layout.stride(name)
            if self.guided:
                counts = losses.guide_counts(targets[n + j])
            else:
                counts = tf.cast((image_hw[0] // k) * (image_hw[1] // k), tf.float32)
            loss, m = losses.style_of_sums(sums[j][0], counts, targets[j], weight * layer_weights[j])
            total += loss
            mults.append([m])
        return total, mults

    def cotangent(
        self, j: int, features: tf.Tensor, view: View, targets: Sequence[tf.Tensor], mults: Sequence[tf.Tensor]
    ) -> tf.Tensor:
        flat = losses.flatten(features)
        return tf.reshape(losses.style_cotangent(flat, mults[0], self._guide(targets, j, view)), tf.shape(features))

    def image_sums(self, j: int, features: tf.Tensor) -> TensorList:
        return [losses.gram_sums(losses.flatten(features))]

    # ------------------------------------------------------------- targets

    def targets(self, ctx: TargetContext) -> tuple[tf.Tensor, ...] | None:
        weights = weights_tensor(self.layer_weights(ctx.options))
        if not self.layers:
            return (weights,)
        blended = self._blend(ctx)
        if blended is None:
            return None
        guides = styles.region_guides(ctx, self.layers) if self.guided else []
        return (*blended, *guides, weights)

    def _grams(self, ctx: TargetContext, image: np.ndarray) -> TensorList:
        height, width = int(image.shape[0]), int(image.shape[1])
        grams = []
        for name, sums in zip(self.layers, ctx.image_sums(self, image)):
            grams.append(sums[0] / float(styles.positions(name, height, width) * int(sums[0].shape[-1])))
        return grams

    def _blend(self, ctx: TargetContext) -> TensorList | None:
        """Per layer: the blended Gram [C, C] (one region, unguided) or the
        regions' blended Grams stacked [R, C, C] (guided). Each style image's
        Grams are computed once, whatever region it belongs to."""
        per_region: list[TensorList | None] = [None] * len(ctx.regions)
        for image in styles.style_images(ctx):
            if image is None:
                return None
            shaped, uses = image
            grams = self._grams(ctx, shaped)
            for r, weight in uses:
                scaled = [weight * g for g in grams]
                current = per_region[r]
                per_region[r] = scaled if current is None else [a + b for a, b in zip(current, scaled)]
        if not self.guided:
            only = per_region[0]
            assert only is not None  # validate() guarantees a positive weight
            return only
        out = []
        for j, name in enumerate(self.layers):
            c = layout.channels(name)
            stacked = [g[j] for g in per_region if g is not None]
            out.append(tf.stack(stacked) if stacked else tf.zeros([0, c, c]))
        return out

    def placeholder_targets(self, height: int, width: int) -> tuple[tf.Tensor, ...]:
        grams = [tf.zeros(self._gram_spec(j).shape.as_list()) for j in range(len(self.layers))]
        return (*grams, tf.ones([len(self.layers)]))

    # ------------------------------------------------------------ cost model
    # Measured (tests/support/maskmem.py, CPU, a job's peak RSS rise): before
    # the guided Grams looped over the regions, 8 regions at 256 px used 2.45x
    # their estimate (early layers 2.98x); with the loop and the figures below,
    # every case of tests/test_engine_mask_memory.py is at most 0.87x.

    @classmethod
    def state_values_per_pixel(cls, options: JobOptions, regions: int) -> float:
        """Per region of a guided job: its guide at the output size three times
        (the decoded mask resized, the scale's plane and its float32 copy)
        and at each style layer's resolution."""
        if not regions:
            return 0.0
        per_region = REGION_PLANES + sum(1.0 / layout.stride(n) ** 2 for n, _ in options.style_layers)
        return regions * per_region

    @classmethod
    def fixed_values(cls, options: JobOptions, regions: int) -> float:
        """Per region and style layer: the target, the sums and the multiplier [C, C]."""
        return max(1, regions) * GRAM_COPIES * sum(layout.channels(n) ** 2 for n, _ in options.style_layers)

    @classmethod
    def working_values_per_pixel(cls, options: JobOptions, regions: int, first_block: int, last_block: int) -> float:
        """Its layers' maps, and for a guided job the loop's working set: the
        accumulator, one region's F·M_r, its T_r²-weighted copy and the next
        accumulator, three maps of the widest style layer whatever the number
        of regions (losses.guided_style_cotangent)."""
        maps = super().working_values_per_pixel(options, regions, first_block, last_block)
        if regions:
            mine = [n for n, _ in options.style_layers if first_block <= layout.block_of(n) <= last_block]
            maps += GUIDED_MAPS * max((layer_values_per_pixel(n) for n in mine), default=0.0)
        return maps

    @classmethod
    def macs_per_pixel(cls, options: JobOptions, regions: int) -> float:
        # The Gram sums of the extra regions, forward and backward.
        extra = max(0, regions - 1)
        return 3.0 * extra * sum(layout.channels(n) ** 2 / layout.stride(n) ** 2 for n, _ in options.style_layers)


REGION_PLANES = 3.0  # output-size guides per region: the mask resized, the scale's plane, its float32 copy
GUIDED_MAPS = 3.0  # the guided loop's working set, in maps of the widest style layer
GRAM_COPIES = 3.0  # per region and style layer: target, sums, multiplier
