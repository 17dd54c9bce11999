"""The loss terms against plain numpy, and their written-out gradients against
autodiff of the plain formulas, on small random tensors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from stylize_server.engine import losses


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


def _autodiff(fn, f: np.ndarray) -> tuple[float, np.ndarray]:
    x = tf.constant(f)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return float(y), tape.gradient(y, x).numpy()


def test_the_written_out_style_gradient_matches_autodiff(rng: np.random.Generator) -> None:
    f = rng.normal(size=(1, 5, 6, 4)).astype(np.float32)
    target = np_gram(rng.normal(size=(1, 3, 3, 4))).astype(np.float32)
    weight = tf.constant(3.0)
    want_loss, want_grad = _autodiff(lambda x: weight * losses.style_loss(x, tf.constant(target)), f)
    flat = losses.flatten(tf.constant(f))
    loss, mult = losses.style_of_sums(losses.gram_sums(flat), tf.constant(30.0), tf.constant(target), weight)
    assert float(loss) == pytest.approx(want_loss, rel=1e-5)
    got = tf.reshape(losses.style_cotangent(flat, mult), f.shape).numpy()
    np.testing.assert_allclose(got, want_grad, rtol=1e-4, atol=1e-7)


def _masked_gram(x: tf.Tensor, guide: np.ndarray) -> tf.Tensor:
    """The definition: the Gram of the guide-weighted features over C·ΣT²."""
    masked = tf.reshape(x, [-1, x.shape[-1]]) * guide.reshape(-1, 1)
    return tf.matmul(masked, masked, transpose_a=True) / (x.shape[-1] * float(np.sum(guide**2)))


def test_a_guided_gram_is_the_gram_of_the_masked_features_and_its_gradient_matches(
    rng: np.random.Generator,
) -> None:
    f = rng.normal(size=(1, 6, 5, 3)).astype(np.float32)
    guides = rng.uniform(0, 1, size=(2, 6, 5)).astype(np.float32)
    targets = np.stack([np_gram(rng.normal(size=(1, 2, 2, 3))) for _ in range(2)]).astype(np.float32)
    flat = losses.flatten(tf.constant(f))
    g = tf.reshape(tf.constant(guides), [2, -1])
    sums = losses.gram_sums(flat, g)
    counts = losses.guide_counts(tf.constant(guides))
    for r in range(2):
        np.testing.assert_allclose(
            sums[r].numpy() / (3 * counts[r].numpy()), _masked_gram(tf.constant(f), guides[r]).numpy(), rtol=1e-5
        )

    def plain(x: tf.Tensor) -> tf.Tensor:
        return tf.add_n([tf.reduce_mean(tf.square(_masked_gram(x, guides[r]) - targets[r])) for r in range(2)])

    want_loss, want_grad = _autodiff(plain, f)
    loss, mult = losses.style_of_sums(sums, counts, tf.constant(targets), tf.constant(1.0))
    assert float(loss) == pytest.approx(want_loss, rel=1e-5)
    got = tf.reshape(losses.style_cotangent(flat, mult, g), f.shape).numpy()
    np.testing.assert_allclose(got, want_grad, rtol=1e-4, atol=1e-7)


def test_an_all_ones_guide_gives_exactly_the_unguided_loss(rng: np.random.Generator) -> None:
    f = rng.normal(size=(1, 8, 8, 16)).astype(np.float32)
    target = np_gram(rng.normal(size=(1, 4, 4, 16))).astype(np.float32)
    flat = losses.flatten(tf.constant(f))
    ones = tf.ones([1, 8, 8])
    plain, plain_m = losses.style_of_sums(losses.gram_sums(flat), tf.constant(64.0), tf.constant(target), 1.0)
    guided, guided_m = losses.style_of_sums(
        losses.gram_sums(flat, tf.reshape(ones, [1, -1])), losses.guide_counts(ones), tf.constant(target[None]), 1.0
    )
    assert float(guided) == float(plain)
    np.testing.assert_array_equal(guided_m[0].numpy(), plain_m.numpy())


def test_a_region_without_area_has_no_term(rng: np.random.Generator) -> None:
    f = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
    flat = losses.flatten(tf.constant(f))
    guides = np.zeros((2, 4, 4), np.float32)
    guides[0] = 1.0
    target = np.ones((2, 3, 3), np.float32)
    g = tf.reshape(tf.constant(guides), [2, -1])
    loss, mult = losses.style_of_sums(
        losses.gram_sums(flat, g), losses.guide_counts(tf.constant(guides)), tf.constant(target), 1.0
    )
    expected = np.mean((np_gram(f) - 1.0) ** 2)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert np.all(mult[1].numpy() == 0.0) and np.all(np.isfinite(mult.numpy()))


def test_the_written_out_tv_gradient_matches_autodiff(rng: np.random.Generator) -> None:
    x = rng.uniform(0, 255, size=(1, 7, 5, 3)).astype(np.float32)
    want_loss, want_grad = _autodiff(losses.tv_loss, x)
    loss, grad = losses.tv_loss_and_grad(tf.constant(x))
    assert float(loss) == pytest.approx(want_loss, rel=1e-6)
    np.testing.assert_allclose(grad.numpy(), want_grad, rtol=1e-5, atol=1e-6)


def test_content_of_sums_is_the_mean_and_its_gradient(rng: np.random.Generator) -> None:
    f = rng.normal(size=(1, 3, 4, 5)).astype(np.float32)
    p = rng.normal(size=(1, 3, 4, 5)).astype(np.float32)
    want_loss, want_grad = _autodiff(lambda x: 2.0 * losses.content_loss(x, tf.constant(p)), f)
    loss, coef = losses.content_of_sums(losses.squared_error_sum(tf.constant(f), tf.constant(p)), 60.0, 2.0)
    assert float(loss) == pytest.approx(want_loss, rel=1e-6)
    np.testing.assert_allclose(float(coef) * (f - p), want_grad, rtol=1e-5)


@pytest.mark.parametrize("xla", [False, True])
def test_the_guided_loop_takes_any_number_of_regions_in_one_trace(rng: np.random.Generator, xla: bool) -> None:
    """Issue 17: the guided Gram loops over the regions (one weighted copy at
    a time); the region count is a tensor dimension, none included (with XLA
    the loop body compiles even when it never runs)."""
    f = rng.normal(size=(1, 6, 5, 3)).astype(np.float32)
    flat = losses.flatten(tf.constant(f))

    @tf.function(
        input_signature=[tf.TensorSpec([None, 3]), tf.TensorSpec([None, None]), tf.TensorSpec([None, 3, 3])],
        jit_compile=xla,
    )
    def both(flat: tf.Tensor, guides: tf.Tensor, mult: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return losses.gram_sums(flat, guides), losses.style_cotangent(flat, mult, guides)

    for regions in (0, 1, 4):
        guides = rng.uniform(0, 1, size=(regions, 6, 5)).astype(np.float32)
        mult = rng.normal(size=(regions, 3, 3)).astype(np.float32)
        sums, cot = both(flat, tf.constant(guides.reshape(regions, 30)), tf.constant(mult))
        assert sums.shape == (regions, 3, 3)
        for r in range(regions):
            want = _masked_gram(tf.constant(f), guides[r]).numpy() * 3 * float(np.sum(guides[r] ** 2))
            np.testing.assert_allclose(sums[r].numpy(), want, rtol=1e-5)
        flat64 = f.reshape(-1, 3).astype(np.float64)
        want_cot = sum((guides[r].reshape(-1, 1) ** 2) * (flat64 @ mult[r]) for r in range(regions))
        np.testing.assert_allclose(cot.numpy(), np.zeros_like(flat64) + want_cot, rtol=1e-4, atol=1e-6)
    assert both.experimental_get_tracing_count() == 1
