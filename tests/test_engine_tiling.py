"""The exact tiled objective (issue 12): tiled and whole-image evaluation of
the same loss agree in value and gradient, and a tiled job makes the same
image. Real TensorFlow, float32, random weights, 128-256 px, 48-64 px tiles."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from stylize_server.engine import regions
from stylize_server.engine.objective import LossSpec, Targets
from stylize_server.engine.runner import Engine, RunHooks
from stylize_server.engine.tiling import WHOLE, TileLayout, tile_grid
from stylize_server.job.layout import RELU_LAYERS, Pooling
from stylize_server.job.options import Inputs, JobOptions, Optimizer, StyleSource
from stylize_server.job.types import StopReason
from tests.support.images import image_array
from tests.support.terms import content_features, make_targets, spec_of, style_grams

DEFAULT_STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
LAYOUTS = {
    "uncut 64": TileLayout((), (64,)),
    "cut3 48, rest whole": TileLayout((3,), (48, 0)),
    "cut3 64, rest tiled": TileLayout((3,), (64, 64)),
    "cut2 48, rest whole": TileLayout((2,), (48, 0)),
}


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(weights="random:0", precision="float32", max_compiled=4)


def _targets(engine: Engine, spec: LossSpec, height: int, width: int, seed: int) -> Targets:
    whole = engine.compiled(spec).evaluator(WHOLE)
    rng = np.random.default_rng(seed)
    content = tf.constant(rng.uniform(0, 255, (1, height, width, 3)).astype(np.float32))
    style = tf.constant(image_array(80, 72, seed=seed)[None].astype(np.float32))
    grams = style_grams(whole, style)
    guides: tuple[tf.Tensor, ...] = ()
    if spec.guided:
        planes = np.zeros((2, height, width), np.float32)
        planes[0, :, : width // 2] = 1.0
        planes[0] = np.clip(planes[0] + rng.uniform(0, 0.4, (height, width)), 0, 1)
        planes[1] = 1.0 - planes[0]
        guides = tuple(tf.constant(g) for g in regions.guides_per_layer(planes, spec.terms[1][1]))
        grams = [tf.stack([g, 0.5 * g]) for g in grams]
    return make_targets(
        content=tuple(content_features(whole, content)),
        style=tuple(grams),
        guides=guides,
        content_layer_weights=tf.ones([len(spec.terms[0][1])]),
        style_layer_weights=tf.constant(np.linspace(1.0, 2.0, len(spec.terms[1][1])), tf.float32),
        loss_weights=tf.constant([5.0, 100.0, 1.0]),
    )


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


CASES = {
    "default layers, avg": (("relu4_2",), DEFAULT_STYLE, Pooling.AVG, False, (160, 208)),
    "all 16 relu layers, max": (("relu4_2",), RELU_LAYERS, Pooling.MAX, False, (144, 176)),
    "all 16 relu layers, avg": (("relu2_2", "relu5_2"), RELU_LAYERS, Pooling.AVG, False, (128, 144)),
    "masked styles (2 regions)": (("relu4_2",), DEFAULT_STYLE, Pooling.AVG, True, (176, 160)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tiled_loss_and_gradient_equal_the_whole_image_ones(engine: Engine, case: str) -> None:
    content, style, pooling, guided, (height, width) = CASES[case]
    spec = spec_of(content, style, pooling, engine.precision, guided)
    targets = _targets(engine, spec, height, width, seed=len(case))
    x = tf.constant(np.random.default_rng(1).uniform(0, 255, (1, height, width, 3)).astype(np.float32))
    steps = engine.compiled(spec)
    want_terms, want_grad = steps.evaluator(WHOLE).value_and_grad(x, targets)
    assert float(tf.reduce_min(want_terms)) > 0
    for name, layout in LAYOUTS.items():
        evaluator = steps.evaluator(layout)
        assert len(tile_grid(height, width, layout.tiles[0], 32)) > 4  # really tiled
        terms, grad = evaluator.value_and_grad(x, targets)
        np.testing.assert_allclose(terms.numpy(), want_terms.numpy(), rtol=1e-4, err_msg=name)
        assert _relative(grad.numpy(), want_grad.numpy()) < 1e-4, name
        np.testing.assert_allclose(evaluator.terms(x, targets).numpy(), want_terms.numpy(), rtol=1e-4)


def test_targets_computed_in_tiles_equal_the_whole_image_ones(engine: Engine) -> None:
    spec = spec_of(("relu2_2", "relu4_2"), DEFAULT_STYLE, Pooling.AVG, engine.precision)
    steps = engine.compiled(spec)
    image = tf.constant(image_array(200, 136, seed=4)[None].astype(np.float32))
    whole_features = content_features(steps.evaluator(WHOLE), image)
    whole_grams = style_grams(steps.evaluator(WHOLE), image)
    for name, layout in LAYOUTS.items():
        evaluator = steps.evaluator(layout)
        for got, want in zip(content_features(evaluator, image), whole_features):
            assert got.shape == want.shape, name
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-3, err_msg=name)
        for got, want in zip(style_grams(evaluator, image), whole_grams):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("optimizer", list(Optimizer))
def test_a_tiled_job_makes_the_same_image(engine: Engine, optimizer: Optimizer) -> None:
    inputs = Inputs(image_array(144, 128, seed=2), (StyleSource(image_array(96, 96, seed=3)),))
    options = JobOptions(size=144, iterations=12, multiscale=False, optimizer=optimizer)
    whole_plan = engine.plan(options, inputs, tile_setting=0)
    tiled_plan = engine.plan(options, inputs, tile_setting=48)
    assert whole_plan.scales[0].tile_size == 0 and tiled_plan.scales[0].tile_size == 48
    whole = engine.run(whole_plan)
    tiled = engine.run(tiled_plan)
    assert whole.complete and tiled.complete
    assert np.abs(whole.pixels - tiled.pixels).mean() < 1.0  # 1/255 of the range, on average
    assert tiled.losses.total == pytest.approx(whole.losses.total, rel=1e-3)


def test_a_stop_between_tiles_ends_the_iteration_there(engine: Engine) -> None:
    inputs = Inputs(image_array(128, 128, seed=2), (StyleSource(image_array(64, 64, seed=3)),))
    plan = engine.plan(JobOptions(size=128, iterations=20, multiscale=False), inputs, tile_setting=48)
    assert plan.scales[0].tiles == 9
    done: list[int] = []
    polls = [0]

    def stop() -> StopReason | None:
        # Iterations are reported one behind (the next is dispatched first):
        # once two are reported the third has run; stop a few tiles into the fourth.
        if len(done) >= 2:
            polls[0] += 1
            return StopReason.TIME_LIMIT if polls[0] > 4 else None
        return None

    result = engine.run(plan, RunHooks(stop=stop, on_iteration=lambda i, dt: done.append(i)))
    assert result.stop_reason is StopReason.TIME_LIMIT and not result.complete
    assert result.iterations == 3 and polls[0] == 5  # honoured at the fifth poll, between tiles
    assert result.image.shape == (128, 128, 3)


def test_tile_setting(engine: Engine) -> None:
    inputs = Inputs(image_array(160, 160, seed=2), (StyleSource(image_array(64, 64, seed=3)),))
    options = JobOptions(size=160, iterations=2, multiscale=False)
    assert engine.plan(options, inputs).scales[0].tile_size == 0  # -1: unlimited memory, whole
    assert engine.plan(options, inputs, tile_setting=0).scales[0].tile_size == 0
    forced = engine.plan(options, inputs, tile_setting=64).scales[0]
    assert forced.tile_size == 64 and forced.tiles == 9
    whole_bytes = engine.plan(options, inputs, tile_setting=0).estimate.device_memory_bytes
    squeezed = engine.plan(options, inputs, target_bytes=whole_bytes - 1).scales[0]
    assert squeezed.tile_size > 0 or squeezed.lbfgs_history < 20  # the model made it fit
