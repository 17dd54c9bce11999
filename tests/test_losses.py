"""The loss terms against plain numpy on small random tensors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from stylize_server import losses


def np_gram(f: np.ndarray) -> np.ndarray:
    _, h, w, c = f.shape
    flat = f.reshape(h * w, c).astype(np.float64)
    return flat.T @ flat / (h * w * c)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


def test_gram_matches_numpy(rng: np.random.Generator) -> None:
    f = rng.normal(size=(1, 5, 7, 4)).astype(np.float32)
    g = losses.gram(tf.constant(f)).numpy()
    assert g.shape == (4, 4)
    np.testing.assert_allclose(g, np_gram(f), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g, g.T, rtol=1e-6)


def test_content_loss_is_mse_of_feature_maps(rng: np.random.Generator) -> None:
    f = rng.normal(size=(1, 6, 5, 3)).astype(np.float32)
    p = rng.normal(size=(1, 6, 5, 3)).astype(np.float32)
    expected = np.mean((f.astype(np.float64) - p) ** 2)
    assert losses.content_loss(tf.constant(f), tf.constant(p)).numpy() == pytest.approx(expected, rel=1e-5)
    assert losses.content_loss(tf.constant(f), tf.constant(f)).numpy() == 0.0


def test_style_loss_is_mse_of_gram_matrices(rng: np.random.Generator) -> None:
    f = rng.normal(size=(1, 4, 9, 6)).astype(np.float32)
    target = np_gram(rng.normal(size=(1, 3, 3, 6)))
    expected = np.mean((np_gram(f) - target) ** 2)
    got = losses.style_loss(tf.constant(f), tf.constant(target, tf.float32)).numpy()
    assert got == pytest.approx(expected, rel=1e-4)


def test_gram_does_not_depend_on_spatial_size_for_tiled_maps(rng: np.random.Generator) -> None:
    # Normalizing by H·W·C makes a texture's Gram independent of how much of it we see.
    tile = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
    tiled = np.tile(tile, (1, 3, 2, 1))
    np.testing.assert_allclose(
        losses.gram(tf.constant(tiled)).numpy(), losses.gram(tf.constant(tile)).numpy(), rtol=1e-5
    )


def test_tv_loss_matches_numpy(rng: np.random.Generator) -> None:
    x = rng.uniform(0, 255, size=(1, 7, 5, 3)).astype(np.float32)
    x64 = x.astype(np.float64)
    expected = np.mean((x64[:, 1:] - x64[:, :-1]) ** 2) + np.mean((x64[:, :, 1:] - x64[:, :, :-1]) ** 2)
    assert losses.tv_loss(tf.constant(x)).numpy() == pytest.approx(expected, rel=1e-5)
    flat = np.full((1, 4, 4, 3), 17.0, np.float32)
    assert losses.tv_loss(tf.constant(flat)).numpy() == 0.0


def test_gram_gradient_matches_the_analytic_one(rng: np.random.Generator) -> None:
    # gram() writes its gradient out by hand (one matmul instead of two); check it.
    f = rng.normal(size=(1, 3, 4, 5)).astype(np.float32)
    w = rng.normal(size=(5, 5)).astype(np.float32)  # not symmetric: both halves of dG must count
    x = tf.constant(f)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(losses.gram(x) * w)
    got = tape.gradient(y, x).numpy()
    flat = f.reshape(-1, 5).astype(np.float64)
    expected = (flat @ (w + w.T) / f.size).reshape(f.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # ... and the autodiff of the plain formula agrees.
    with tf.GradientTape() as tape:
        tape.watch(x)
        flat_t = tf.reshape(x, [-1, 5])
        plain = tf.reduce_sum(tf.matmul(flat_t, flat_t, transpose_a=True) / f.size * w)
    np.testing.assert_allclose(got, tape.gradient(plain, x).numpy(), rtol=1e-5, atol=1e-6)
