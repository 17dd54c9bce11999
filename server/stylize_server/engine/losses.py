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
    [R, N], Σ_p T_rp² f_p f_pᵀ = Fᵀ(T_r²∘F) per region: [R, C, C]
    (guided_gram_sums)."""
    if guides is None:
        return tf.matmul(flat, flat, transpose_a=True)
    return guided_gram_sums(flat, guides)


def guided_gram_sums(flat: tf.Tensor, guides: tf.Tensor) -> tf.Tensor:
    """Fᵀ(T_r²∘F) for each region r of `guides` [R, N]: [R, C, C].

    One region at a time, in a loop over the region dimension (a tensor, so
    any number of masks runs the one traced graph): what is held beyond F is
    one weighted copy T_r²∘F, never R of them side by side (issue 17: that
    made a masked job's memory R times a feature map per style layer). For an
    all-ones guide the product is the unguided FᵀF's, to the bit. Nothing
    differentiates through the loop: the gradient is style_cotangent."""
    c, regions = flat.shape[1], tf.shape(guides)[0]
    padded = _past_the_end(guides)
    sums = tf.TensorArray(flat.dtype, size=regions, element_shape=tf.TensorShape([c, c]))

    def body(r: tf.Tensor, sums: tf.TensorArray) -> tuple[tf.Tensor, tf.TensorArray]:
        weighted = tf.square(padded[r])[:, None] * flat
        return r + 1, sums.write(r, tf.matmul(flat, weighted, transpose_a=True))

    _, sums = tf.while_loop(lambda r, _: r < regions, body, [tf.constant(0), sums], parallel_iterations=1)
    return sums.stack()


def _past_the_end(t: tf.Tensor) -> tf.Tensor:
    """`t` with one zero row after its last, never read: with --xla the loop
    body is compiled even for no regions, and slicing row r of an empty
    dimension does not compile."""
    return tf.concat([t, tf.zeros(tf.concat([[1], tf.shape(t)[1:]], 0), t.dtype)], 0)


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
    with `guides` [R, N] (guided_style_cotangent)."""
    if guides is None:
        return tf.matmul(flat, multiplier)
    return guided_style_cotangent(flat, multiplier, guides)


def guided_style_cotangent(flat: tf.Tensor, multiplier: tf.Tensor, guides: tf.Tensor) -> tf.Tensor:
    """Σ_r T_r² ∘ (F M_r): the guided Gram's gradient, written out, summed
    one region at a time (as in guided_gram_sums: an [N, C] accumulator and
    one region's product, never R of them)."""

    regions = tf.shape(guides)[0]
    padded, multipliers = _past_the_end(guides), _past_the_end(multiplier)

    def body(r: tf.Tensor, total: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return r + 1, total + tf.square(padded[r])[:, None] * tf.matmul(flat, multipliers[r])

    _, total = tf.while_loop(
        lambda r, _: r < regions, body, [tf.constant(0), tf.zeros_like(flat)], parallel_iterations=1
    )
    return total


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
