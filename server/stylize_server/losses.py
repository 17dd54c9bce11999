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


def gram(features: tf.Tensor) -> tf.Tensor:
    """Gram matrix of a [1, H, W, C] feature map, normalized by its element count."""
    shape = tf.shape(features)
    channels = shape[-1]
    flat = tf.reshape(features, [-1, channels])
    n = tf.cast(tf.size(features), features.dtype)
    return tf.matmul(flat, flat, transpose_a=True) / n


def content_loss(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.square(features - target))


def style_loss(features: tf.Tensor, target_gram: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.square(gram(features) - target_gram))


def tv_loss(image: tf.Tensor) -> tf.Tensor:
    dy = image[:, 1:, :, :] - image[:, :-1, :, :]
    dx = image[:, :, 1:, :] - image[:, :, :-1, :]
    return tf.reduce_mean(tf.square(dy)) + tf.reduce_mean(tf.square(dx))
