"""The loss terms of Gatys et al., as pure TensorFlow functions of tensors,
each with its gradient written out.

Normalization follows jcjohnson/neural-style and anishathalye/neural-style so
their published weights carry over (see options.py):
  gram(F)        = FᵀF / (C·N)                   F reshaped to (N = H·W, C)
  content(F, P)  = mean((F - P)²)
  style(F, A)    = mean((gram(F) - A)²)
  tv(x)          = mean((x[i+1,j] - x[i,j])²) + mean((x[i,j+1] - x[i,j])²)
Spatial control (Gatys et al. 2017, "Controlling Perceptual Factors in Neural
Style Transfer", sec. 4): region r's guide T_r (at the layer's resolution)
weights the feature map, and
  gram_r(F)      = (T_r∘F)ᵀ(T_r∘F) / (C·ΣT_r²)
  style(F, A)    = Σ_r mean((gram_r(F) - A_r)²)
so that an all-ones guide gives exactly the unguided Gram (ΣT² = N).

Both terms are sums over feature positions before they are normalized, which
is what makes the tiled objective exact: the engine accumulates the *sums*
(`gram_sums`, `squared_error_sum`) over tile interiors, takes the loss of the
totals (`style_of_sums`, `content_of_sums`), and pushes each tile's share of
the gradient back through the network with the feature cotangents
(`style_cotangent`, `content_cotangent`). The whole image is the one-tile case.

The gradients are written out rather than left to autodiff through a
`tf.custom_gradient`: FᵀF has the same tensor on both sides, and
d(FᵀF)/dF · dG = F(dG + dGᵀ) is one matmul where autodiff does two; and
`tf.custom_gradient` registers a new global gradient function for every
trace, which keeps each traced graph alive after its function is dropped
(about 2-5 MB per trace measured here), so a bounded step cache would not
bound memory.
"""

from __future__ import annotations

import tensorflow as tf


def flatten(features: tf.Tensor) -> tf.Tensor:
    """[1, H, W, C] -> [H·W, C]."""
    return tf.reshape(features, [-1, tf.shape(features)[-1]])


def gram(features: tf.Tensor) -> tf.Tensor:
    """Gram matrix of a [1, H, W, C] feature map, normalized by its element
    count (forward only: the style images' targets)."""
    flat = flatten(features)
    n = tf.cast(tf.size(features), features.dtype)
    return tf.matmul(flat, flat, transpose_a=True) / n


def gram_sums(flat: tf.Tensor, guides: tf.Tensor | None = None) -> tf.Tensor:
    """Σ_p f_p f_pᵀ over the positions of `flat` [N, C]: [C, C]; with `guides`
    [R, N], Σ_p T_rp² f_p f_pᵀ = Fᵀ(T_r²∘F) per region: [R, C, C].

    The regions go side by side into one matmul, Fᵀ[T_1²∘F | ... | T_R²∘F]:
    one pass over F for any number of regions, and for one all-ones guide the
    very same product as the unguided FᵀF, to the bit."""
    if guides is None:
        return tf.matmul(flat, flat, transpose_a=True)
    n, c = tf.shape(flat)[0], tf.shape(flat)[1]
    weighted = tf.reshape(tf.transpose(tf.square(guides)[:, :, None] * flat[None], [1, 0, 2]), [n, -1])
    sums = tf.reshape(tf.matmul(flat, weighted, transpose_a=True), [c, -1, c])
    return tf.transpose(sums, [1, 0, 2])


def guide_counts(guides: tf.Tensor) -> tf.Tensor:
    """ΣT² per region of [R, h, w] (or [R, N]) guides: the guided Gram's
    normalizer (with the channel count)."""
    return tf.reduce_sum(tf.reshape(tf.square(guides), [tf.shape(guides)[0], -1]), axis=1)


def style_of_sums(
    sums: tf.Tensor, counts: tf.Tensor, target: tf.Tensor, weight: tf.Tensor | float
) -> tuple[tf.Tensor, tf.Tensor]:
    """The weighted style term of one layer from its Gram sums and its
    cotangent multiplier.

    sums:   [C, C] or [R, C, C]   Σ over every position (see gram_sums)
    counts: []     or [R]         N, or ΣT² per region
    target: like sums             the style Grams A (A_r)
    -> (weight · Σ_r mean((G_r - A_r)²), M) with G_r = sums_r / (C·counts_r);
       the loss's gradient at position p is M f_p (Σ_r T_rp² M_r f_p guided):
       see style_cotangent. A region with no area has no term.
    """
    channels = tf.cast(tf.shape(sums)[-1], tf.float32)
    n = channels * counts
    present = tf.cast(n > 0, tf.float32)
    scale = present / tf.maximum(n, 1e-30)
    if sums.shape.rank == 3:
        scale = scale[:, None, None]
    diff = sums * scale - target
    loss = weight * tf.reduce_sum(tf.square(diff) * (present if sums.shape.rank == 2 else present[:, None, None]))
    loss = loss / (channels * channels)
    # dL/dsums = 2 w diff / (C² n); the sums are symmetric in f_p, so the
    # gradient at f_p is (dS + dSᵀ) f_p = 2 dS f_p.
    multiplier = 4.0 * weight * diff * scale / (channels * channels)
    return loss, multiplier


def style_cotangent(flat: tf.Tensor, multiplier: tf.Tensor, guides: tf.Tensor | None = None) -> tf.Tensor:
    """dL/dF at every position of `flat` [N, C]: F M, or Σ_r T_r² ∘ (F M_r)
    with `guides` [R, N] (the guided Gram's gradient, written out; the
    regions' M_r side by side in one matmul, as in gram_sums)."""
    if guides is None:
        return tf.matmul(flat, multiplier)
    n, c = tf.shape(flat)[0], tf.shape(flat)[1]
    side_by_side = tf.reshape(tf.transpose(multiplier, [1, 0, 2]), [c, -1])
    per_region = tf.reshape(tf.matmul(flat, side_by_side), [n, -1, c])
    return tf.reduce_sum(per_region * tf.transpose(tf.square(guides))[:, :, None], axis=1)


def squared_error_sum(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.square(features - target))


def content_of_sums(
    error_sum: tf.Tensor, count: tf.Tensor | float, weight: tf.Tensor | float
) -> tuple[tf.Tensor, tf.Tensor]:
    """(weight · mean((F - P)²), c) from Σ(F - P)² over all `count` values
    (N·C); the gradient is c·(F - P)."""
    return weight * error_sum / count, 2.0 * weight / count


def content_loss(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.square(features - target))


def style_loss(features: tf.Tensor, target_gram: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.square(gram(features) - target_gram))


def tv_loss(image: tf.Tensor) -> tf.Tensor:
    dy = image[:, 1:, :, :] - image[:, :-1, :, :]
    dx = image[:, :, 1:, :] - image[:, :, :-1, :]
    return tf.reduce_mean(tf.square(dy)) + tf.reduce_mean(tf.square(dx))


def tv_loss_and_grad(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """tv_loss and its gradient w.r.t. the [1, H, W, 3] image, written out:
    each difference pulls its two pixels together."""
    dy = image[:, 1:, :, :] - image[:, :-1, :, :]
    dx = image[:, :, 1:, :] - image[:, :, :-1, :]
    ny = tf.cast(tf.maximum(tf.size(dy), 1), image.dtype)
    nx = tf.cast(tf.maximum(tf.size(dx), 1), image.dtype)
    loss = tf.reduce_sum(tf.square(dy)) / ny + tf.reduce_sum(tf.square(dx)) / nx
    gy = 2.0 / ny * dy
    gx = 2.0 / nx * dx
    grad = (
        tf.pad(gy, [[0, 0], [1, 0], [0, 0], [0, 0]])
        - tf.pad(gy, [[0, 0], [0, 1], [0, 0], [0, 0]])
        + tf.pad(gx, [[0, 0], [0, 0], [1, 0], [0, 0]])
        - tf.pad(gx, [[0, 0], [0, 0], [0, 1], [0, 0]])
    )
    return loss, grad
