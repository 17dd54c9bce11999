"""The loss terms of Gatys et al., as pure TensorFlow functions of tensors.

Normalization follows jcjohnson/neural-style and anishathalye/neural-style so
their published weights carry over (see options.py):
  gram(F)       = FᵀF / (C·H·W)                 F reshaped to (H·W, C)
  content(F, P) = mean((F - P)²)
  style(F, A)   = mean((gram(F) - A)²)
  tv(x)         = mean((x[i+1,j] - x[i,j])²) + mean((x[i,j+1] - x[i,j])²)
"""

from __future__ import annotations

import tensorflow as tf


@tf.custom_gradient
def gram(features: tf.Tensor):
    """Gram matrix of a [1, H, W, C] feature map, normalized by its element count.

    The gradient is written out because FᵀF has the same tensor on both sides:
    d(FᵀF)/dF · dG = F(dG + dGᵀ), one matmul where autodiff would do two.
    """
    shape = tf.shape(features)
    flat = tf.reshape(features, [-1, shape[-1]])
    n = tf.cast(tf.size(features), features.dtype)
    g = tf.matmul(flat, flat, transpose_a=True) / n

    def backward(dg: tf.Tensor) -> tf.Tensor:
        return tf.reshape(tf.matmul(flat, (dg + tf.transpose(dg)) / n), shape)

    return g, backward


def content_loss(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.square(features - target))


def style_loss(features: tf.Tensor, target_gram: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.square(gram(features) - target_gram))


def tv_loss(image: tf.Tensor) -> tf.Tensor:
    dy = image[:, 1:, :, :] - image[:, :-1, :, :]
    dx = image[:, :, 1:, :] - image[:, :, :-1, :]
    return tf.reduce_mean(tf.square(dy)) + tf.reduce_mean(tf.square(dx))
