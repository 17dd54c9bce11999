"""Style by feature distributions (`style_loss = mean_cov`): each style
layer's feature vectors are fitted with a Gaussian, and the image's is pulled
toward the style's by the 2-Wasserstein distance (crowsonkb/style-transfer-
pytorch; the math and its gradient are in engine/wasserstein.py):

    style_w2 = K · style_weight · Σ_l v_l · W2(N(μ_l, Σ_l), N(μ_s,l, Σ_s,l)) / C_l

* per channel: W2 grows with the channel count C_l, so each layer's is
  divided by it (a mean over channels, as the Gram term's is a mean);
* v_l = u_l · 4^(5 − block) / Σ_l 4^(5 − block): crowsonkb's 256:64:16:4:1
  over relu1_1..relu5_1, normalized to sum 1 over the layers listed, times
  each layer's own weight u_l from `style_layers` (1 by default);
* K = W2_SCALE brings the term to the Gram term's scale at the defaults so
  that `style_weight` keeps its meaning (benchmarks/w2_bench.py measured it).

Several styles blend through their means and raw second moments (both linear
in the pixels' distribution): Σ_s = Σ_i b_i R_i − μ_s μ_sᵀ with μ_s = Σ_i b_i μ_i.
With masks, each region has its own Gaussian, weighted by the guide T_r²
(as the guided Gram): μ_r = Σ T_r² f / Σ T_r². Σ_s^½ is computed once per scale,
on the host in float64 (targets); everything per iteration is float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import tensorflow as tf

from stylize_server.engine import losses, wasserstein
from stylize_server.engine.terms import register, styles
from stylize_server.engine.terms.base import TargetContext, TensorList, Term, View, layer_values_per_pixel
from stylize_server.engine.terms.gram import Gram
from stylize_server.job import layout
from stylize_server.job.errors import InvalidArgument
from stylize_server.job.options import JobOptions, Layers

STYLE_LOSS = "style_loss"
STYLE_LOSSES = ("gram", "mean_cov")
DEFAULTS: dict[str, object] = {STYLE_LOSS: "gram"}
W2_SCALE = 1.0  # K above
EPS_REL = 1e-3  # ε = EPS_REL · (the style's mean variance at the layer) + EPS_ABS
EPS_ABS = 1e-2
MATRIX_COPIES = 9.0  # per region and layer, [C, C]: Σ_s^½, s2, B, and reduce's cov, M, V, M^-½, G, products
# The reduce per layer and region, in the profile's multiply-adds: 6 products and a float64 eigh,
# which runs far below the convolutions' rate. Fitted to benchmarks/w2_bench.py at 256 px on an
# AMD EPYC CPU (mean_cov − gram: 0.20 s/it float32, 0.10 s/it bfloat16; this gives 0.12 s).
EIGH_MACS_PER_C3 = 64.0


def style_loss(options: JobOptions) -> str:
    return str(options.value(STYLE_LOSS, DEFAULTS))


def block_weights(layers: Layers) -> list[float]:
    """v_l: 4^(5 − block) normalized over the layers, times each layer's own weight."""
    base = [4.0 ** (5 - layout.block_of(n)) for n, _ in layers]
    total = sum(base) or 1.0
    return [b / total * w for b, (_, w) in zip(base, layers)]


@register
class MeanCov(Term):
    name = "style_w2"
    order: ClassVar[int] = 21
    weight_option = "style_weight"
    layers_option = "style_layers"
    option_defaults: ClassVar[dict[str, object]] = DEFAULTS

    @classmethod
    def active(cls, options: JobOptions) -> bool:
        # Active for any value but the Gram's, so that `check` refuses an unknown one.
        return style_loss(options) != "gram"

    @classmethod
    def check(cls, options: JobOptions) -> None:
        check_style_loss(options)

    def _c(self, j: int) -> int:
        return layout.channels(self.layers[j])

    def _mean_spec(self, j: int) -> tf.TensorSpec:
        return tf.TensorSpec([None, self._c(j)] if self.guided else [self._c(j)], tf.float32)

    def _matrix_spec(self, j: int) -> tf.TensorSpec:
        c = self._c(j)
        return tf.TensorSpec([None, c, c] if self.guided else [c, c], tf.float32)

    def target_specs(self) -> list[tf.TensorSpec]:
        n = len(self.layers)
        means = [self._mean_spec(j) for j in range(n)]
        roots = [self._matrix_spec(j) for j in range(n)]
        guides = [tf.TensorSpec([None, None, None], tf.float32) for _ in range(n)] if self.guided else []
        vector = tf.TensorSpec([n], tf.float32)
        return [*means, *roots, *guides, vector, vector]  # ..., ε per layer, v_l per layer

    def sum_specs(self, j: int) -> list[tf.TensorSpec]:  # float64: centred (wasserstein.moment_sums)
        return [tf.TensorSpec(s.shape, tf.float64) for s in (self._mean_spec(j), self._matrix_spec(j))]

    def mult_specs(self, j: int) -> list[tf.TensorSpec]:
        return [self._mean_spec(j), self._matrix_spec(j)]

    def _guide(self, targets: Sequence[tf.Tensor], j: int, view: View) -> tf.Tensor | None:
        return styles.guide_rows(targets[2 * len(self.layers) + j], view) if self.guided else None

    def tile_sums(self, j: int, features: tf.Tensor, view: View, targets: Sequence[tf.Tensor]) -> TensorList:
        s1, s2 = wasserstein.moment_sums(losses.flatten(features), targets[j], self._guide(targets, j, view))
        return [s1, s2]

    def reduce(
        self, sums: Sequence[Sequence[tf.Tensor]], targets: Sequence[tf.Tensor], image_hw: tf.Tensor, weight: tf.Tensor
    ) -> tuple[tf.Tensor, list[TensorList]]:
        n = len(self.layers)
        eps, layer_weights = targets[-2], targets[-1]
        total, mults = tf.constant(0.0, tf.float32), []
        for j, name in enumerate(self.layers):
            s1, s2, root = sums[j][0], sums[j][1], targets[n + j]
            if self.guided:
                counts = losses.guide_counts(targets[2 * n + j])
            else:
                k = layout.stride(name)
                counts = tf.cast((image_hw[0] // k) * (image_hw[1] // k), tf.float32)[None]
                s1, s2, root = s1[None], s2[None], root[None]
            centre = targets[j] if self.guided else targets[j][None]
            w = W2_SCALE * weight * layer_weights[j] / float(self._c(j))
            value, a, b = wasserstein.w2_of_sums(s1, s2, counts, root, centre, eps[j], w)
            total += value
            mults.append([a, b] if self.guided else [a[0], b[0]])
        return total, mults

    def cotangent(
        self, j: int, features: tf.Tensor, view: View, targets: Sequence[tf.Tensor], mults: Sequence[tf.Tensor]
    ) -> tf.Tensor:
        flat = losses.flatten(features)
        cot = wasserstein.cotangent(flat, mults[0], mults[1], self._guide(targets, j, view))
        return tf.reshape(cot, tf.shape(features))

    def image_sums(self, j: int, features: tf.Tensor) -> TensorList:
        flat = losses.flatten(features)
        return [tf.reduce_sum(flat, axis=0), tf.matmul(flat, flat, transpose_a=True)]

    # ------------------------------------------------------------- targets

    def targets(self, ctx: TargetContext) -> tuple[tf.Tensor, ...] | None:
        layers = self.layer_weights(ctx.options)
        weights = tf.constant(block_weights(layers), tf.float32)
        if not self.layers:
            return (tf.zeros([0]), weights)
        moments = self._blend(ctx)
        if moments is None:
            return None
        means, roots, eps = [], [], []
        for j in range(len(self.layers)):
            mean, root, e = gaussian(*moments[j])
            means.append(tf.constant(mean if self.guided else mean[0], tf.float32))
            roots.append(tf.constant(root if self.guided else root[0], tf.float32))
            eps.append(e)
        guides = styles.region_guides(ctx, self.layers) if self.guided else []
        return (*means, *roots, *guides, tf.constant(eps, tf.float32), weights)

    def _blend(self, ctx: TargetContext) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """Per layer: each region's blended mean [R, C] and raw second moment
        [R, C, C] (float64); each style image's statistics computed once."""
        n_regions = len(ctx.regions)
        out = [
            (np.zeros((n_regions, self._c(j))), np.zeros((n_regions, self._c(j), self._c(j))))
            for j in range(len(self.layers))
        ]
        for image in styles.style_images(ctx):
            if image is None:
                return None
            shaped, uses = image
            h, w = int(shaped.shape[0]), int(shaped.shape[1])
            for j, (name, sums) in enumerate(zip(self.layers, ctx.image_sums(self, shaped))):
                positions = float(styles.positions(name, h, w))
                mean = sums[0].numpy().astype(np.float64) / positions
                second = sums[1].numpy().astype(np.float64) / positions
                for r, b in uses:
                    out[j][0][r] += b * mean
                    out[j][1][r] += b * second
        return out

    def placeholder_targets(self, height: int, width: int) -> tuple[tf.Tensor, ...]:
        n = len(self.layers)
        batch = [1] if self.guided else []
        means = [tf.zeros([*batch, self._c(j)]) for j in range(n)]
        roots = [tf.eye(self._c(j), batch_shape=batch) for j in range(n)]
        guides = [tf.ones([1, height // layout.stride(m), width // layout.stride(m)]) for m in self.layers]
        return (*means, *roots, *(guides if self.guided else []), tf.ones([n]), tf.ones([n]))

    # ------------------------------------------------------------ cost model

    @classmethod
    def fixed_values(cls, options: JobOptions, regions: int) -> float:
        return max(1, regions) * MATRIX_COPIES * sum(layout.channels(n) ** 2 for n, _ in options.style_layers)

    @classmethod
    def fixed_macs(cls, options: JobOptions, regions: int) -> float:
        """The reduce's matrix work per iteration, whatever the image's size."""
        return max(1, regions) * EIGH_MACS_PER_C3 * sum(layout.channels(n) ** 3 for n, _ in options.style_layers)

    @classmethod
    def state_values_per_pixel(cls, options: JobOptions, regions: int) -> float:
        return Gram.state_values_per_pixel(options, regions)  # the same guides

    @classmethod
    def working_values_per_pixel(cls, options: JobOptions, regions: int, first_block: int, last_block: int) -> float:
        """The Gram term's (maps, the guided loop's working set) and the
        centred copy f − μ_s of the widest layer there."""
        mine = [n for n, _ in options.style_layers if first_block <= layout.block_of(n) <= last_block]
        centred = max((layer_values_per_pixel(n) for n in mine), default=0.0)
        return Gram.working_values_per_pixel(options, regions, first_block, last_block) + centred

    @classmethod
    def macs_per_pixel(cls, options: JobOptions, regions: int) -> float:
        return Gram.macs_per_pixel(options, regions)  # the same sums over positions


def gaussian(mean: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """From blended means [R, C] and raw second moments [R, C, C] (float64):
    (μ_s, Σ_s^½ with ε·I inside, ε). ε follows the largest mean variance of
    the regions, so a flat style (Σ_s = 0) still has a positive definite Σ_s."""
    cov = second - mean[:, :, None] * mean[:, None, :]
    cov = 0.5 * (cov + np.swapaxes(cov, 1, 2))
    c = mean.shape[1]
    variance = max(float(np.trace(cov[r]).real) / c for r in range(cov.shape[0]))
    eps = EPS_REL * max(variance, 0.0) + EPS_ABS
    lam, v = np.linalg.eigh(cov)
    root = np.sqrt(np.maximum(lam, 0.0) + eps)
    return mean, (v * root[:, None, :]) @ np.swapaxes(v, 1, 2), eps


def check_style_loss(options: JobOptions) -> None:
    value = style_loss(options)
    if value not in STYLE_LOSSES:
        raise InvalidArgument(STYLE_LOSS, f"unknown value {value!r}; use one of {', '.join(STYLE_LOSSES)}")
