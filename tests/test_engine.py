"""The engine end to end on the CPU at 32-64 px with seeded random weights."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

from stylize_server.engine import color
from stylize_server.engine import targets as job_targets
from stylize_server.engine.regions import plan_regions
from stylize_server.engine.runner import Engine, RunHooks
from stylize_server.engine.spec import job_spec
from stylize_server.engine.tiling import WHOLE
from stylize_server.job.errors import InvalidArgument
from stylize_server.job.geometry import plan_scales
from stylize_server.job.options import (
    DEFAULT_STYLE_LAYERS,
    Init,
    Inputs,
    JobOptions,
    Optimizer,
    Pooling,
    StyleSource,
    resolve,
)
from stylize_server.job.types import Result, StopReason
from tests.support.terms import spec_of, style_targets


def gradient_image(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack(
        [xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1), (xx + yy) * 127 // max(1, h + w - 2)], -1
    ).astype(np.uint8)


def blocky_image(seed: int, h: int = 64, w: int = 64, block: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 256, (h // block, w // block, 3))
    return cells.repeat(block, 0).repeat(block, 1).astype(np.uint8)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(weights="random:0")


def job(**kw) -> tuple[JobOptions, Inputs]:
    """Options and inputs of a small job: a 64 px gradient in a blocky style."""
    content = kw.pop("content", gradient_image(64, 64))
    styles = tuple(kw.pop("styles", [StyleSource(blocky_image(1))]))
    init_image = kw.pop("init_image", None)
    base = {"size": 64, "iterations": 30}
    base.update(kw)
    return JobOptions(**base), Inputs(content, styles, init_image)


def run(engine: Engine, spec: tuple[JobOptions, Inputs], on_progress=None, stop=None, on_iteration=None) -> Result:
    return engine.run(engine.plan(*spec), RunHooks(on_progress=on_progress, stop=stop, on_iteration=on_iteration))


@pytest.mark.parametrize("optimizer", list(Optimizer))
def test_both_optimizers_lower_the_loss_by_a_large_factor(engine: Engine, optimizer: Optimizer) -> None:
    totals: list[float] = []
    result = run(engine, job(optimizer=optimizer), on_progress=lambda p: totals.append(p.losses.total))
    assert len(totals) == 30 and result.iterations == 30
    assert totals[0] / result.losses.total > 5.0, (optimizer, totals[0], result.losses.total)
    assert result.image.shape == (64, 64, 3) and result.image.dtype == np.uint8
    parts = result.losses
    assert parts.total == pytest.approx(parts.content + parts.style + parts.tv, rel=1e-6)


def test_progress_reports_every_iteration(engine: Engine) -> None:
    seen = []
    run(engine, job(iterations=23), on_progress=lambda p: seen.append(p))
    assert [p.iteration for p in seen] == list(range(1, 24))
    assert all(p.total_iterations == 23 for p in seen)
    elapsed = [p.elapsed_seconds for p in seen]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0
    image = seen[-1].image
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8


def test_output_keeps_the_content_aspect_ratio(engine: Engine) -> None:
    result = run(engine, job(content=gradient_image(40, 80), size=64, iterations=2))
    assert result.image.shape == (32, 64, 3)


def test_preserve_colors_keeps_the_content_chrominance(engine: Engine) -> None:
    content = gradient_image(48, 48)
    result = run(engine, job(content=content, size=48, iterations=10, preserve_colors=True))
    out = color.rgb_to_ycbcr(result.image)
    ref = color.rgb_to_ycbcr(content)
    # Pixels that clipping to 0..255 left alone carry the content's chrominance
    # up to uint8 rounding.
    unclipped = np.all((result.image > 0) & (result.image < 255), axis=-1)
    assert unclipped.mean() > 0.5
    np.testing.assert_allclose(out[unclipped][:, 1:], ref[unclipped][:, 1:], atol=1.5)
    # ... while the luminance is the optimized one, not the content's.
    plain = run(engine, job(content=content, size=48, iterations=10))
    both = unclipped & np.all((plain.image > 0) & (plain.image < 255), axis=-1)
    np.testing.assert_allclose(out[both][:, 0], color.rgb_to_ycbcr(plain.image)[both][:, 0], atol=1.5)
    assert np.abs(out[..., 0] - ref[..., 0]).mean() > 1.0


def test_style_blend_weights_one_zero_give_the_single_style_targets(engine: Engine) -> None:
    a, b = blocky_image(1), blocky_image(2)
    spec = spec_of((), tuple(n for n, _ in DEFAULT_STYLE_LAYERS), Pooling.AVG, engine.precision)
    evaluator = engine.compiled(spec).evaluator(WHOLE)
    content = gradient_image(64, 64)

    def grams(*styles: StyleSource):
        options, inputs = job(styles=list(styles))
        regions = plan_regions(inputs.styles, options.unmasked_region, (64, 64))
        images = [s.image for s in inputs.styles]
        job_of = job_spec(resolve(options), engine.precision, guided=False)
        built = job_targets.build(evaluator, job_of, content, images, regions, lambda: False)
        assert built is not None
        return style_targets(built)

    single = grams(StyleSource(a))
    for s, t in zip(single, grams(StyleSource(a, 1.0), StyleSource(b, 0.0))):
        np.testing.assert_array_equal(s.numpy(), t.numpy())
    only_b = grams(StyleSource(b))
    for s_a, s_b, m in zip(single, only_b, grams(StyleSource(a), StyleSource(b))):
        np.testing.assert_allclose(m.numpy(), 0.5 * s_a.numpy() + 0.5 * s_b.numpy(), rtol=1e-5)
    # Through the public API: weights (1, 0) run exactly like the single style.
    one = run(engine, job(iterations=5, styles=[StyleSource(a)]))
    two = run(engine, job(iterations=5, styles=[StyleSource(a, 1.0), StyleSource(b, 0.0)]))
    np.testing.assert_array_equal(one.image, two.image)


def test_same_seed_gives_identical_output_and_another_seed_does_not(engine: Engine) -> None:
    first = run(engine, job(init=Init.NOISE, seed=7, iterations=8))
    again = run(engine, job(init=Init.NOISE, seed=7, iterations=8))
    other = run(engine, job(init=Init.NOISE, seed=8, iterations=8))
    np.testing.assert_array_equal(first.image, again.image)
    assert first.losses == again.losses
    assert not np.array_equal(first.image, other.image)


@pytest.mark.parametrize("optimizer", list(Optimizer))
def test_a_stop_ends_the_job_within_one_iteration_with_its_best_image(engine: Engine, optimizer: Optimizer) -> None:
    stop: dict[str, StopReason | None] = {"reason": None}
    ran: list[int] = []

    def on_progress(p) -> None:
        if p.iteration == 5:
            stop["reason"] = StopReason.TIME_LIMIT

    result = run(
        engine,
        job(iterations=50, optimizer=optimizer),
        on_progress=on_progress,
        stop=lambda: stop["reason"],
        on_iteration=lambda i, dt: ran.append(i),
    )
    assert max(ran) <= 6  # at most the one iteration already dispatched
    assert not result.complete and result.stop_reason is StopReason.TIME_LIMIT
    assert result.iterations == max(ran) and result.iterations_requested == 50
    assert result.image.shape == (64, 64, 3) and np.isfinite(result.losses.total) and result.losses.total > 0


def test_a_stop_before_the_first_iteration_returns_the_starting_image(engine: Engine) -> None:
    content = gradient_image(64, 64)
    result = run(engine, job(content=content, iterations=50), stop=lambda: StopReason.SHUTDOWN)
    assert result.iterations == 0 and not result.complete and result.stop_reason is StopReason.SHUTDOWN
    np.testing.assert_array_equal(result.image, content)


def test_init_options(engine: Engine) -> None:
    style = blocky_image(3)
    from_style = run(engine, job(init=Init.STYLE, iterations=1, styles=[StyleSource(style)]))
    assert from_style.image.shape == (64, 64, 3)
    init = blocky_image(4)
    seen = []
    run(engine, job(init=Init.IMAGE, init_image=init, iterations=1), on_progress=seen.append)
    np.testing.assert_array_equal(seen[0].image, init)  # iteration 1 is evaluated at the initial image
    with pytest.raises(InvalidArgument, match="init_image"):
        run(engine, job(init=Init.IMAGE, init_image=None, iterations=1))


def test_multiscale_plan_and_run(engine: Engine) -> None:
    spec = job(content=gradient_image(96, 96), size=96, iterations=12, multiscale=True, multiscale_min_size=32)
    plan = plan_scales(spec[0], (96, 96))
    assert [s.size for s in plan] == [48, 96]  # doubling down to >= min size, coarse first
    assert [s.iterations for s in plan] == [8, 4]  # shares 2:1
    seen = []
    result = run(engine, spec, on_progress=seen.append)
    assert result.iterations == 12 and result.image.shape == (96, 96, 3)
    assert [p.scale_index for p in seen][:8] == [0] * 8 and [p.scale_index for p in seen][8:] == [1] * 4
    assert seen[0].image.shape == (48, 48, 3) and seen[-1].image.shape == (96, 96, 3)


def test_multiscale_is_on_by_default_above_256_only() -> None:
    c = (8, 8)
    assert len(plan_scales(JobOptions(size=256), c)) == 1
    big = plan_scales(JobOptions(size=1024, iterations=500), c)
    assert [s.size for s in big] == [256, 512, 1024]
    assert [s.iterations for s in big] == [250, 125, 125]
    assert len(plan_scales(JobOptions(size=1024, multiscale=False), c)) == 1


def test_print_sizes_give_the_finest_scales_halving_shares() -> None:
    plan = plan_scales(JobOptions(size=4096, iterations=500), (3000, 4000))
    assert [s.size for s in plan] == [256, 512, 1024, 2048, 4096]
    assert [s.iterations for s in plan] == [212, 105, 105, 52, 26]  # shares 2:1:1:1/2:1/4
    assert sum(s.iterations for s in plan) == 500


def test_a_new_size_does_not_retrace_the_step(engine: Engine) -> None:
    run(engine, job(iterations=2))
    spec = spec_of(("relu4_2",), tuple(n for n, _ in DEFAULT_STYLE_LAYERS), Pooling.AVG, engine.precision)
    optimizer = engine.compiled(spec).optimizer(Optimizer.LBFGS, 20)
    before = optimizer._step.experimental_get_tracing_count()
    run(engine, job(content=gradient_image(48, 40), size=48, iterations=2))
    run(engine, job(content=gradient_image(32, 56), size=56, iterations=2))
    assert optimizer._step.experimental_get_tracing_count() == before == 1


def test_graph_ends_at_the_deepest_needed_layer(engine: Engine) -> None:
    def conv_ops(layers: tuple[str, ...], pooling: Pooling) -> tuple[int, set[str]]:
        fn = tf.function(lambda x: engine.vgg(x, layers, pooling))
        graph = fn.get_concrete_function(tf.TensorSpec([1, None, None, 3], tf.float32)).graph
        types = [op.type for op in graph.get_operations()]
        return types.count("Conv2D"), {t for t in types if "Pool" in t}

    assert conv_ops(("relu1_1",), Pooling.AVG) == (1, set())
    assert conv_ops(("relu4_2",), Pooling.AVG) == (10, {"AvgPool"})
    assert conv_ops(("relu1_1", "relu3_1", "conv4_1"), Pooling.MAX) == (9, {"MaxPool"})
    assert conv_ops(("relu5_1",), Pooling.AVG)[0] == 13
    feats = engine.vgg(tf.zeros([1, 32, 32, 3]), ("conv2_1", "relu2_1"), Pooling.AVG)
    assert set(feats) == {"conv2_1", "relu2_1"}
    np.testing.assert_allclose(feats["relu2_1"].numpy(), np.maximum(feats["conv2_1"].numpy(), 0))


def test_invalid_options_name_the_field(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match=r"style_layers: unknown layer 'relu9_9'"):
        engine.plan(*job(style_layers=(("relu9_9", 1.0),)))
    with pytest.raises(InvalidArgument, match=r"iterations: must be in \[1, 2000\]"):
        engine.plan(*job(iterations=0))
    with pytest.raises(InvalidArgument, match="content_weight"):
        engine.plan(*job(content_weight=float("nan")))


def test_model_info_reports_random_weights(engine: Engine) -> None:
    info = engine.model_info
    assert info.random_weights is True and info.weights_source == "random:0"
    assert info.device_kind in ("CPU", "GPU") and info.default_pooling == Pooling.AVG.value


def test_thin_style_images_still_reach_block5(engine: Engine) -> None:
    thin = blocky_image(5, h=8, w=256, block=8)
    result = run(engine, job(styles=[StyleSource(thin)], iterations=3, style_scale=0.5))
    assert np.isfinite(result.losses.total)


def test_too_small_outputs_are_refused_with_the_limit(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match=r"size: output 64x8 is too small; .* at least 16 px"):
        engine.plan(*job(content=gradient_image(10, 80), size=64))


def test_lbfgs_reports_a_loss_that_never_rises(engine: Engine) -> None:
    # From noise the first curvature estimates overshoot; the rejected trials must not show.
    totals: list[float] = []
    result = run(
        engine, job(init=Init.NOISE, seed=3, iterations=30), on_progress=lambda p: totals.append(p.losses.total)
    )
    assert all(b <= a for a, b in itertools.pairwise(totals)), totals
    assert result.losses.total == pytest.approx(totals[-1], rel=1e-4)
    assert totals[0] / totals[-1] > 5.0
