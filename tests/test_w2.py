"""The Wasserstein-2 style term (`style_loss = mean_cov`, engine/terms/
meancov.py): its value against an independent float64 numpy W2 of the same
VGG features, its written-out gradient against float64 autodiff, exact under
tiling, finite for a flat style and a mask of a few pixels, and refused
values named. Real TensorFlow, float32, random weights, 48-96 px."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tensorflow as tf

from stylize_server.engine import prepare, regions, targets
from stylize_server.engine.runner import Engine
from stylize_server.engine.spec import LossSpec, Targets
from stylize_server.engine.terms import meancov
from stylize_server.engine.tiling import WHOLE, TileLayout
from stylize_server.job.errors import InvalidArgument
from stylize_server.job.layout import Pooling, block_of, channels, stride
from stylize_server.job.options import Inputs, JobOptions, StyleSource, resolve, style_shape
from stylize_server.job.port import RunHooks
from stylize_server.job.precision import Precision
from tests.support.images import image_array

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
MEAN_COV = (("style_loss", "mean_cov"),)


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    yield Engine(weights="random:0", precision="float32", max_compiled=4)


def _spec(guided: bool = False) -> LossSpec:
    return LossSpec(terms=(("style_w2", LAYERS),), pooling=Pooling.AVG, precision=Precision.FLOAT32, guided=guided)


def _targets(engine: Engine, x: np.ndarray, styles: list[StyleSource], layout: TileLayout = WHOLE) -> Targets:
    options = resolve(JobOptions(size=max(x.shape[:2]), style_weight=3.0, term_options=MEAN_COV))
    inputs = Inputs(x.astype(np.uint8), tuple(styles))
    guided = any(s.mask is not None for s in styles)
    evaluator = engine.compiled(_spec(guided)).evaluator(layout)
    job_regions = regions.plan_regions(inputs.styles, options.unmasked_region, x.shape[:2])
    built = targets.build(evaluator, options, x, prepare.styles(options, inputs), job_regions, lambda: False)
    assert built is not None
    return built


def _features(engine: Engine, image: np.ndarray) -> dict[str, np.ndarray]:
    feats = engine.vgg(tf.constant(image[None].astype(np.float32)), LAYERS, Pooling.AVG)
    return {n: feats[n].numpy().reshape(-1, channels(n)).astype(np.float64) for n in LAYERS}


def _sqrtm(m: np.ndarray) -> np.ndarray:
    lam, v = np.linalg.eigh(0.5 * (m + m.T))
    return (v * np.sqrt(np.maximum(lam, 0.0))) @ v.T


def reference_w2(x_feats: np.ndarray, s_feats: np.ndarray) -> float:
    """W2 between Gaussians of two [N, C] float64 feature sets, ε·I added to
    both covariances as the term does (meancov.gaussian's ε)."""
    mo, ms = x_feats.mean(0), s_feats.mean(0)
    co = np.cov(x_feats.T, bias=True)
    cs = np.cov(s_feats.T, bias=True)
    c = cs.shape[0]
    eps = meancov.EPS_REL * np.trace(cs) / c + meancov.EPS_ABS
    co, cs = co + eps * np.eye(c), cs + eps * np.eye(c)
    root = _sqrtm(cs)
    return float(np.sum((mo - ms) ** 2) + np.trace(co) + np.trace(cs) - 2 * np.trace(_sqrtm(root @ co @ root)))


def reference_loss(engine: Engine, x: np.ndarray, style: np.ndarray, weight: float) -> float:
    fx, fs = _features(engine, x), _features(engine, style)
    v = meancov.block_weights(tuple((n, 1.0) for n in LAYERS))
    return (
        meancov.W2_SCALE * weight * sum(v[j] * reference_w2(fx[n], fs[n]) / channels(n) for j, n in enumerate(LAYERS))
    )


def test_its_value_is_an_independent_float64_w2_of_the_same_features(engine: Engine) -> None:
    x = image_array(80, 64, seed=1).astype(np.float32)
    style = image_array(64, 72, seed=2)
    t = _targets(engine, x, [StyleSource(style)])
    value = float(engine.compiled(_spec()).evaluator(WHOLE).terms(tf.constant(x[None]), t)[0])
    shaped = prepare.resize(style, style_shape(style.shape[:2], x.shape[:2], 1.0))
    want = reference_loss(engine, x, shaped.astype(np.float32), 3.0)
    assert value == pytest.approx(want, rel=2e-3)
    # and zero against itself: a style's own statistics (same image, same size)
    same = _targets(engine, shaped.astype(np.float32), [StyleSource(shaped)])
    own = float(engine.compiled(_spec()).evaluator(WHOLE).terms(tf.constant(shaped[None].astype(np.float32)), same)[0])
    assert abs(own) < 1e-3 * want


def test_its_written_out_gradient_is_float64_autodiff_of_its_value(engine: Engine) -> None:
    x = image_array(64, 64, seed=3).astype(np.float32)
    style = image_array(64, 64, seed=4)
    t = _targets(engine, x, [StyleSource(style)])
    _, grad = engine.compiled(_spec()).evaluator(WHOLE).value_and_grad(tf.constant(x[None]), t)
    means, roots, eps, v = t.per_term[0][:5], t.per_term[0][5:10], t.per_term[0][10], t.per_term[0][11]
    xt = tf.constant(x[None])
    with tf.GradientTape() as tape:
        tape.watch(xt)
        feats = engine.vgg(xt, LAYERS, Pooling.AVG)
        total = tf.constant(0.0, tf.float64)
        for j, n in enumerate(LAYERS):
            f = tf.cast(tf.reshape(feats[n], [-1, channels(n)]), tf.float64)
            mu = tf.reduce_mean(f, 0)
            g = f - mu
            cov = tf.matmul(g, g, transpose_a=True) / tf.cast(tf.shape(f)[0], tf.float64)
            cov += tf.cast(eps[j], tf.float64) * tf.eye(channels(n), dtype=tf.float64)
            root = tf.cast(roots[j], tf.float64)
            lam = tf.linalg.eigvalsh(root @ cov @ root)
            w2 = tf.reduce_sum(tf.square(mu - tf.cast(means[j], tf.float64))) + tf.linalg.trace(cov)
            w2 += tf.reduce_sum(tf.square(root)) - 2.0 * tf.reduce_sum(tf.sqrt(tf.maximum(lam, 1e-30)))
            total += tf.cast(3.0 * meancov.W2_SCALE * v[j] / channels(n), tf.float64) * w2
    want = tape.gradient(total, xt).numpy()
    assert np.linalg.norm(grad.numpy() - want) / np.linalg.norm(want) < 1e-3


@pytest.mark.parametrize("layout", [TileLayout((), (32,)), TileLayout((2,), (32, 0))], ids=["uncut 32", "cut2 32"])
def test_it_is_exact_under_tiling(engine: Engine, layout: TileLayout) -> None:
    x = image_array(96, 112, seed=5).astype(np.float32)
    t = _targets(engine, x, [StyleSource(image_array(64, 64, seed=6))])
    steps = engine.compiled(_spec())
    want_values, want_grad = steps.evaluator(WHOLE).value_and_grad(tf.constant(x[None]), t)
    values, grad = steps.evaluator(layout).value_and_grad(tf.constant(x[None]), t)
    assert abs(float(values[0]) - float(want_values[0])) / abs(float(want_values[0])) < 1e-4
    rel = np.linalg.norm(grad.numpy() - want_grad.numpy()) / np.linalg.norm(want_grad.numpy())
    assert rel < 1e-4


def test_guided_tiled_is_exact_and_a_flat_style_and_a_few_pixel_mask_stay_finite(engine: Engine) -> None:
    x = image_array(64, 80, seed=7).astype(np.float32)
    grey = np.full((48, 48, 3), 128, np.uint8)
    dot = np.zeros((64, 80), np.float32)
    dot[30:32, 40:42] = 1.0  # four pixels: less than one position of relu2_1 and deeper
    styles = [StyleSource(grey, mask=dot), StyleSource(image_array(48, 48, seed=8))]
    t = _targets(engine, x, styles)
    steps = engine.compiled(_spec(guided=True))
    values, grad = steps.evaluator(WHOLE).value_and_grad(tf.constant(x[None]), t)
    assert np.isfinite(values.numpy()).all() and np.isfinite(grad.numpy()).all()
    assert float(values[0]) > 0 and float(tf.reduce_max(tf.abs(grad))) > 0
    tiled_values, tiled_grad = steps.evaluator(TileLayout((), (32,))).value_and_grad(tf.constant(x[None]), t)
    assert abs(float(tiled_values[0]) - float(values[0])) / float(values[0]) < 1e-4
    assert np.linalg.norm(tiled_grad.numpy() - grad.numpy()) / np.linalg.norm(grad.numpy()) < 1e-4
    # A flat style everywhere: its covariance is 0, regularized to ε·I.
    t = _targets(engine, x, [StyleSource(grey)])
    values, grad = engine.compiled(_spec()).evaluator(WHOLE).value_and_grad(tf.constant(x[None]), t)
    assert np.isfinite(values.numpy()).all() and np.isfinite(grad.numpy()).all()


def test_a_job_with_it_lowers_the_w2_and_reports_its_term(engine: Engine) -> None:
    content, style = image_array(48, 48, seed=9), image_array(48, 48, seed=10)
    inputs = Inputs(content, (StyleSource(style),))
    options = JobOptions(size=48, iterations=8, multiscale=False, term_options=MEAN_COV)
    first: list[float] = []
    result = engine.run(
        engine.plan(options, inputs), RunHooks(on_progress=lambda p: first.append(p.losses.terms["style_w2"]))
    )
    assert list(result.losses.terms) == ["content", "style_w2", "tv"]
    assert result.losses.terms["style_w2"] < 0.9 * first[0]


def test_an_unknown_style_loss_is_refused_with_its_name(engine: Engine) -> None:
    inputs = Inputs(image_array(48, 48, seed=1), (StyleSource(image_array(48, 48, seed=2)),))
    with pytest.raises(InvalidArgument) as caught:
        engine.plan(JobOptions(size=48, iterations=2, term_options=(("style_loss", "wasserstein"),)), inputs)
    assert caught.value.field == "style_loss"


def test_block_weights_are_256_64_16_4_1_normalized() -> None:
    v = meancov.block_weights(tuple((n, 1.0) for n in LAYERS))
    assert v == pytest.approx([256 / 341, 64 / 341, 16 / 341, 4 / 341, 1 / 341])
    assert [block_of(n) for n in LAYERS] == [1, 2, 3, 4, 5] and stride("relu5_1") == 16
