"""The temporal loss term (engine/terms/temporal.py): its value and written-out
gradient against the closed form and autodiff, exactness under tiling, and a
real job pulled toward the warped previous frame where (and only where) the
warp is reliable. Real TensorFlow, float32, random weights, 48-64 px."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from stylize_server.engine.runner import Engine
from stylize_server.engine.spec import LossSpec, Targets
from stylize_server.engine.terms import temporal
from stylize_server.engine.tiling import WHOLE, TileLayout
from stylize_server.job.errors import InvalidArgument
from stylize_server.job.layout import Pooling
from stylize_server.job.options import Inputs, JobOptions, StyleSource
from stylize_server.job.precision import Precision
from stylize_server.job.temporal import Temporal
from tests.support.images import image_array

SPEC = LossSpec(terms=(("content", ("relu2_1",)), ("temporal", ())), pooling=Pooling.AVG, precision=Precision.FLOAT32)


def _targets(engine: Engine, h: int, w: int, weights: list[float], seed: int) -> tuple[Targets, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = engine.compiled(SPEC).objective.placeholder_targets(h, w, weights=weights)
    warped = rng.uniform(0, 255, (1, h, w, 3)).astype(np.float32)
    trust = (rng.uniform(0, 1, (1, h, w, 1)) > 0.3).astype(np.float32)
    content = (tf.constant(rng.uniform(0, 5, (1, h // 2, w // 2, 128)).astype(np.float32)), tf.constant([1.0]))
    per_term = (content, (tf.constant(warped), tf.constant(trust)))
    return Targets(per_term, base.weights), warped, trust


def test_value_and_gradient_are_the_closed_form_and_autodiff_agrees(engine: Engine) -> None:
    h, w = 48, 40
    targets, warped, trust = _targets(engine, h, w, [0.0, 7.0], seed=1)
    x = np.random.default_rng(2).uniform(0, 255, (1, h, w, 3)).astype(np.float32)
    values, grad = engine.compiled(SPEC).evaluator(WHOLE).value_and_grad(tf.constant(x), targets)
    n = x.size
    want = 7.0 * float(np.sum(trust * (x - warped) ** 2)) / n
    assert float(values[1]) == pytest.approx(want, rel=1e-5)
    assert float(values[0]) == 0.0
    np.testing.assert_allclose(grad.numpy(), 7.0 * 2.0 * trust * (x - warped) / n, rtol=1e-4, atol=1e-7)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        value, written = temporal.loss_and_grad(xt, tf.constant(warped), tf.constant(trust))
    np.testing.assert_allclose(tape.gradient(value, xt).numpy(), written.numpy(), rtol=1e-5, atol=1e-9)
    # Unreliable pixels get no gradient at all.
    assert not grad.numpy()[np.broadcast_to(trust == 0, grad.shape)].any()


def test_it_is_exact_under_tiling(engine: Engine) -> None:
    h, w = 96, 80
    targets, _, _ = _targets(engine, h, w, [1.0, 1000.0], seed=3)
    x = tf.constant(np.random.default_rng(4).uniform(0, 255, (1, h, w, 3)).astype(np.float32))
    steps = engine.compiled(SPEC)
    want_values, want_grad = steps.evaluator(WHOLE).value_and_grad(x, targets)
    values, grad = steps.evaluator(TileLayout((), (32,))).value_and_grad(x, targets)
    np.testing.assert_allclose(values.numpy(), want_values.numpy(), rtol=1e-4)
    assert np.linalg.norm(grad.numpy() - want_grad.numpy()) / np.linalg.norm(want_grad.numpy()) < 1e-4


def _run(engine: Engine, weight: float, previous: Temporal | None) -> tuple[np.ndarray, dict[str, float]]:
    content = image_array(48, 48, seed=5)
    options = JobOptions(size=48, iterations=6, multiscale=False, term_options=(("temporal_weight", weight),))
    inputs = Inputs(content, (StyleSource(image_array(48, 48, seed=6)),), temporal=previous)
    result = engine.run(engine.plan(options, inputs))
    return result.pixels, dict(result.losses.terms)


def test_a_job_is_pulled_toward_the_warped_frame_only_where_it_is_reliable(engine: Engine) -> None:
    warped = np.full((48, 48, 3), 128.0, np.float32)
    trust = np.zeros((48, 48), np.float32)
    trust[:, :24] = 1.0
    alone, losses_alone = _run(engine, 0.0, None)
    pulled, losses = _run(engine, 1e4, Temporal(warped, trust))
    assert "temporal" not in losses_alone and losses["temporal"] > 0
    left = np.abs(pulled[:, :24] - 128).mean(), np.abs(alone[:, :24] - 128).mean()
    assert left[0] < 0.5 * left[1]  # the reliable half moved toward the warped frame
    right = np.abs(pulled[:, 30:] - alone[:, 30:]).mean()
    # the other half moves only through the network's coupling of neighbouring pixels
    assert right < 0.5 * np.abs(pulled[:, :18] - alone[:, :18]).mean()


def test_a_first_frame_has_the_term_but_nothing_to_match(engine: Engine) -> None:
    _, losses = _run(engine, 1e3, None)
    assert losses["temporal"] == 0.0


def test_its_weight_is_range_checked_with_its_name(engine: Engine) -> None:
    options = JobOptions(size=48, iterations=1, term_options=(("temporal_weight", -1.0),))
    with pytest.raises(InvalidArgument) as caught:
        engine.plan(options, Inputs(image_array(48, 48), (StyleSource(image_array(48, 48)),)))
    assert caught.value.field == "temporal_weight"
