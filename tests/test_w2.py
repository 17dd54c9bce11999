"""The Wasserstein-2 style term (`style_loss = mean_cov`, engine/terms/
meancov.py): its value against an independent float64 numpy W2 of the same
VGG features, its written-out gradient against float64 autodiff, exact under
tiling, finite for a flat style and a mask of a few pixels, and refused
values named. Real TensorFlow, float32, random weights, 48-96 px."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from stylize_server.engine import prepare, regions, targets
from stylize_server.engine.optimize import Carry, IterateAverage
from stylize_server.engine.runner import Engine
from stylize_server.engine.spec import LossSpec, Targets, job_spec
from stylize_server.engine.terms import meancov
from stylize_server.engine.tiling import WHOLE, TileLayout
from stylize_server.job.errors import InvalidArgument
from stylize_server.job.geometry import plan_scales
from stylize_server.job.layout import Pooling, block_of, channels, stride
from stylize_server.job.options import (
    Inputs,
    InputShapes,
    JobOptions,
    Limits,
    Optimizer,
    StyleSource,
    resolve,
    style_shape,
    validate,
)
from stylize_server.job.precision import Precision
from tests.support.images import image_array
from tests.support.server import shared_engine

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
MEAN_COV = (("style_loss", "mean_cov"),)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return shared_engine()  # its compiled steps are the served test's too


def _spec(guided: bool = False) -> LossSpec:
    # The spec a mean_cov job compiles; content and tv are weighted 0 below.
    terms = (("content", ("relu4_2",)), ("style_w2", LAYERS), ("tv", ()))
    return LossSpec(terms=terms, pooling=Pooling.AVG, precision=Precision.FLOAT32, guided=guided)


def _targets(engine: Engine, x: np.ndarray, styles: list[StyleSource], layout: TileLayout = WHOLE) -> Targets:
    options = JobOptions(size=max(x.shape[:2]), style_weight=3.0, content_weight=0.0, tv_weight=0.0)
    options = resolve(options.replace(term_options=MEAN_COV))
    inputs = Inputs(x.astype(np.uint8), tuple(styles))
    guided = any(s.mask is not None for s in styles)
    evaluator = engine.compiled(_spec(guided)).evaluator(layout)
    job_regions = regions.plan_regions(inputs.styles, options.unmasked_region, x.shape[:2])
    job = job_spec(options, engine.precision, guided)
    built = targets.build(evaluator, job, x, prepare.styles(options, inputs), job_regions, lambda: False)
    assert built is not None
    return built


def _w2(engine: Engine, x: np.ndarray, t: Targets, guided: bool = False) -> tuple[float, np.ndarray]:
    """The term's value and the objective's gradient (the term's alone: the others weigh 0)."""
    values, grad = engine.compiled(_spec(guided)).evaluator(WHOLE).value_and_grad(tf.constant(x[None]), t)
    return float(values[1]), grad.numpy()


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
    value, _ = _w2(engine, x, _targets(engine, x, [StyleSource(style)]))
    shaped = prepare.resize(style, style_shape(style.shape[:2], x.shape[:2], 1.0)).astype(np.float32)
    want = reference_loss(engine, x, shaped, 3.0)
    assert value == pytest.approx(want, rel=2e-3)
    # and zero against its own statistics (the same image at the same size)
    own, _ = _w2(engine, shaped, _targets(engine, shaped, [StyleSource(shaped.astype(np.uint8))]))
    assert abs(own) < 1e-3 * want


def test_its_written_out_gradient_is_float64_autodiff_of_its_value(engine: Engine) -> None:
    x = image_array(64, 64, seed=3).astype(np.float32)
    t = _targets(engine, x, [StyleSource(image_array(64, 64, seed=4))])
    _, grad = _w2(engine, x, t)
    mine = t.per_term[1]
    means, roots, eps, v = mine[:5], mine[5:10], mine[10], mine[11]
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
    assert np.linalg.norm(grad - want) / np.linalg.norm(want) < 1e-3


def test_it_is_exact_under_tiling(engine: Engine) -> None:
    """Per-tile sums over the interiors, one gradient of the statistics, per-tile backward passes."""
    x = tf.constant(image_array(64, 80, seed=5).astype(np.float32)[None])  # 2 x 3 tiles of 32 px
    t = _targets(engine, x[0].numpy(), [StyleSource(image_array(64, 64, seed=6))])
    steps = engine.compiled(_spec())
    want_values, want_grad = steps.evaluator(WHOLE).value_and_grad(x, t)
    values, grad = steps.evaluator(TileLayout((), (32,))).value_and_grad(x, t)
    assert abs(float(values[1]) - float(want_values[1])) / abs(float(want_values[1])) < 1e-4
    assert np.linalg.norm(grad.numpy() - want_grad.numpy()) / np.linalg.norm(want_grad.numpy()) < 1e-4


def test_a_flat_style_and_a_few_pixel_mask_stay_finite_and_a_full_mask_is_unguided(engine: Engine) -> None:
    x = image_array(64, 64, seed=7).astype(np.float32)
    grey = np.full((48, 48, 3), 128, np.uint8)
    other = image_array(48, 48, seed=8)
    dot = np.zeros((64, 64), np.float32)
    dot[30:32, 40:42] = 1.0  # four pixels: less than one position of relu2_1 and deeper
    value, grad = _w2(engine, x, _targets(engine, x, [StyleSource(grey, mask=dot), StyleSource(other)]), True)
    assert np.isfinite(value) and value > 0 and np.isfinite(grad).all() and np.abs(grad).max() > 0
    # A flat style everywhere: its covariance is 0, regularized to ε·I.
    value, grad = _w2(engine, x, _targets(engine, x, [StyleSource(grey)]))
    assert np.isfinite(value) and value > 0 and np.isfinite(grad).all()
    # Guide-weighted statistics: a mask over everything is the unguided term.
    everywhere = np.ones((64, 64), np.float32)
    guided, guided_grad = _w2(engine, x, _targets(engine, x, [StyleSource(other, mask=everywhere)]), True)
    plain, plain_grad = _w2(engine, x, _targets(engine, x, [StyleSource(other)]))
    assert guided == pytest.approx(plain, rel=1e-5)
    assert np.linalg.norm(guided_grad - plain_grad) / np.linalg.norm(plain_grad) < 1e-4


def test_an_unknown_style_loss_is_refused_with_its_name(engine: Engine) -> None:
    inputs = Inputs(image_array(48, 48, seed=1), (StyleSource(image_array(48, 48, seed=2)),))
    with pytest.raises(InvalidArgument) as caught:
        engine.plan(JobOptions(size=48, iterations=2, term_options=(("style_loss", "wasserstein"),)), inputs)
    assert caught.value.field == "style_loss"


def test_block_weights_are_256_64_16_4_1_normalized() -> None:
    v = meancov.block_weights(tuple((n, 1.0) for n in LAYERS))
    assert v == pytest.approx([256 / 341, 64 / 341, 16 / 341, 4 / 341, 1 / 341])
    assert [block_of(n) for n in LAYERS] == [1, 2, 3, 4, 5] and stride("relu5_1") == 16


def test_the_iterate_average_is_bias_corrected() -> None:
    average = IterateAverage(0.9)
    x1, x2 = tf.fill([1, 2, 2, 3], 10.0), tf.fill([1, 2, 2, 3], 20.0)
    assert float(average.update(x1)[0, 0, 0, 0]) == pytest.approx(10.0)  # the first is x_1 itself
    want = (0.9 * 0.1 * 10.0 + 0.1 * 20.0) / (1 - 0.9**2)
    assert float(average.update(x2)[0, 0, 0, 0]) == pytest.approx(want, rel=1e-6)
    assert float(IterateAverage(0.0).update(x2)[0, 0, 0, 0]) == 20.0  # decay 0: no average


def test_the_scale_schedule_climbs_a_sqrt2_ladder_and_keeps_today_at_ratio_2() -> None:
    ladder = JobOptions(size=512, iterations=3000, multiscale=True, multiscale_min_size=128, scale_ratio=2**0.5)
    assert [s.size for s in plan_scales(ladder, (512, 512))] == [128, 181, 256, 362, 512]  # crowsonkb's
    its = [s.iterations for s in plan_scales(ladder, (512, 512))]
    assert its == [1000, 500, 500, 500, 500] and sum(its) == 3000  # the first scale gets twice a later one's
    flat = [s.iterations for s in plan_scales(ladder.replace(first_scale_share=1.0), (512, 512))]
    assert flat == [600] * 5
    today = JobOptions(size=1031, iterations=100, multiscale_min_size=64)
    assert [s.size for s in plan_scales(today, (1031, 1031))] == [64, 128, 257, 515, 1031]  # size // 2**k
    shapes = InputShapes(content=(64, 64), styles=((64, 64),), masks=(None,), weights=(1.0,))
    for name, value in (("scale_ratio", 1.1), ("scale_ratio", 5.0), ("first_scale_share", 0.0)):
        with pytest.raises(InvalidArgument) as caught:
            validate(JobOptions(size=64, **{name: value}), shapes, Limits())
        assert caught.value.field == name


def test_adam_carries_its_moments_resized_and_lbfgs_starts_afresh(engine: Engine) -> None:
    steps = engine.compiled(_spec())
    x_small, x_big = tf.zeros([1, 8, 8, 3]), tf.zeros([1, 16, 12, 3])
    adam = steps.optimizer(Optimizer.ADAM, 0)
    carry = Carry((tf.fill([1, 8, 8, 3], 2.0), tf.fill([1, 8, 8, 3], 3.0), tf.constant(7.0)))
    m, v, t = carry.start(adam, x_big)
    assert m.shape == v.shape == x_big.shape and float(t) == 7.0
    assert np.allclose(m.numpy(), 2.0) and np.allclose(v.numpy(), 3.0)
    lbfgs = steps.optimizer(Optimizer.LBFGS, 5)
    fresh = Carry(lbfgs.init(x_small)).start(lbfgs, x_big)
    assert fresh[0].shape == x_big.shape and bool(fresh[-1])  # a first step again
