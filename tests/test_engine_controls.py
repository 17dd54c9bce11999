"""Spatial control (guided Gram matrices per region) and colour control in the
engine (issue 11), on the real TensorFlow graph with random weights."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from stylize_server.engine import color, losses, prepare, regions
from stylize_server.engine import targets as job_targets
from stylize_server.engine.runner import Engine, RunHooks
from stylize_server.engine.spec import job_spec
from stylize_server.engine.tiling import WHOLE
from stylize_server.job.layout import Pooling
from stylize_server.job.options import (
    ColorControl,
    Inputs,
    JobOptions,
    Optimizer,
    StyleSource,
    UnmaskedRegion,
    resolve,
)
from stylize_server.job.types import Result
from tests.support.images import image_array
from tests.support.terms import spec_of, style_grams, style_targets

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(weights="random:0", precision="float32")


def stripes(size: int, period: int, horizontal: bool, colours: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    band = ((yy if horizontal else xx) // period) % len(colours)
    return np.asarray(colours, np.uint8)[band]


def halves(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    left = np.zeros((h, w), np.float32)
    left[:, : w // 2] = 1.0
    return left, 1.0 - left


def run(engine: Engine, options: JobOptions, inputs: Inputs, **hooks) -> Result:
    return engine.run(engine.plan(options, inputs), RunHooks(**hooks))


def first_loss(engine: Engine, options: JobOptions, inputs: Inputs) -> float:
    seen: list[float] = []
    run(engine, options.replace(iterations=1), inputs, on_progress=lambda p: seen.append(p.losses.style))
    return seen[0]


def test_a_guided_gram_in_the_network_is_the_gram_of_the_masked_features(engine: Engine) -> None:
    image = image_array(64, 48, seed=3).astype(np.float32)
    guide = np.zeros((48, 64), np.float32)
    guide[:, :40] = 1.0
    guide[10:30, 40:] = 0.5
    spec = spec_of((), STYLE_LAYERS, Pooling.AVG, engine.precision, guided=True)
    objective = engine.compiled(spec).objective
    per_layer = regions.guides_per_layer(guide[None], STYLE_LAYERS)
    whole = objective.whole
    grams = [tf.zeros([1, c, c]) for c in (64, 128, 256, 512, 512)]  # style targets: unused by the sums
    per_term = [[tf.zeros([0])], [*grams, *[tf.constant(g) for g in per_layer], tf.ones([5])], []]
    slot_sums, _ = objective.function("forward", whole)(
        tf.constant(image[None]), tf.constant([0, 0]), tf.constant([0, 48, 0, 64]), per_term, tf.ones([3])
    )
    sums = [s[0] for s in slot_sums]
    feats = engine.vgg(tf.constant(image[None]), STYLE_LAYERS, Pooling.AVG)
    for name, g, s in zip(STYLE_LAYERS, per_layer, sums):
        f = feats[name].numpy()[0]
        assert f.shape[:2] == g.shape[1:]  # the guide follows the network's grid
        masked = (f * g[0][..., None]).reshape(-1, f.shape[-1]).astype(np.float64)
        want = masked.T @ masked / (f.shape[-1] * np.sum(g[0].astype(np.float64) ** 2))
        got = s.numpy()[0] / (f.shape[-1] * np.sum(g[0].astype(np.float64) ** 2))
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6 * np.abs(want).max())


def test_an_all_ones_mask_gives_exactly_the_unmasked_loss(engine: Engine) -> None:
    content, style = image_array(64, 64, seed=1), image_array(64, 64, seed=2)
    options = JobOptions(size=64, iterations=3, multiscale=False)
    plain = Inputs(content, (StyleSource(style),))
    ones = Inputs(content, (StyleSource(style, mask=np.ones((64, 64), np.float32)),))
    a, b = run(engine, options, plain), run(engine, options, ones)
    assert a.losses == b.losses
    assert a.pixels.tobytes() == b.pixels.tobytes()


def test_complementary_masks_put_each_style_on_its_own_half(engine: Engine) -> None:
    size = 96
    content = np.full((size, size, 3), 128, np.uint8) + image_array(size, size, seed=4) // 8
    warm = stripes(size, 6, True, ((230, 40, 20), (250, 200, 30)))
    cold = stripes(size, 11, False, ((20, 60, 220), (10, 200, 190), (240, 240, 255)))
    left, right = halves(size, size)
    options = JobOptions(size=size, iterations=60, multiscale=False, content_weight=0.5)
    inputs = Inputs(content, (StyleSource(warm, mask=left), StyleSource(cold, mask=right)))
    result = run(engine, options, inputs)
    assert result.complete

    # Judged by another network: other random weights, shallow layers only.
    judge = Engine(weights="random:1", precision="float32", max_compiled=1)
    layers = ("relu1_1", "relu2_1", "relu3_1")

    def grams(image: np.ndarray) -> list[np.ndarray]:
        feats = judge.vgg(tf.constant(image[None].astype(np.float32)), layers, Pooling.AVG)
        return [losses.gram(feats[n]).numpy() for n in layers]

    def distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
        return float(sum(np.mean((x - y) ** 2) / np.mean(y**2) for x, y in zip(a, b)))

    half = size // 2
    out = result.pixels
    warm_g, cold_g = grams(warm[:, :half]), grams(cold[:, half:])
    left_g, right_g = grams(out[:, :half]), grams(out[:, half:])
    assert distance(left_g, warm_g) < distance(left_g, cold_g)
    assert distance(right_g, cold_g) < distance(right_g, warm_g)


def _style_gradient(engine: Engine, options: JobOptions, inputs: Inputs, x: np.ndarray) -> np.ndarray:
    """The style term's gradient w.r.t. the pixels at `x` for this job."""
    guided = any(s.mask is not None for s in inputs.styles)
    job = job_spec(resolve(options), engine.precision, guided)
    evaluator = engine.compiled(job.loss).evaluator(WHOLE)
    found = regions.plan_regions(inputs.styles, job.options.unmasked_region, x.shape[:2])
    built = job_targets.build(evaluator, job, inputs.content, [s.image for s in inputs.styles], found, lambda: False)
    assert built is not None
    _, grad = evaluator.value_and_grad(job_targets.batch(x), built)
    return np.abs(grad.numpy()[0]).sum(axis=(0, 2))  # per column


def test_unmasked_region_content_gives_the_uncovered_part_no_style_term(engine: Engine) -> None:
    size = 256
    content = image_array(size, size, seed=6)
    x = image_array(size, size, seed=7).astype(np.float32)
    style, other = stripes(size, 5, True, ((255, 0, 0), (0, 0, 255))), image_array(size, size, seed=3)
    mask = np.zeros((size, size), np.float32)
    mask[:, :64] = 1.0
    options = JobOptions(size=size, multiscale=False, content_weight=0.0, tv_weight=0.0)
    content_mode = options.replace(unmasked_region=UnmaskedRegion.CONTENT)
    alone = _style_gradient(engine, content_mode, Inputs(content, (StyleSource(style, mask=mask),)), x)
    # Columns beyond the deepest style layer's reach (relu5_1: 70 px past the
    # last masked 16-px cell) feed no masked feature: no style gradient at all.
    assert alone[:64].min() > 0
    assert np.all(alone[64 + 80 :] == 0.0)
    # With unmasked_region = styles, an unmasked style covers the rest.
    both = _style_gradient(engine, options, Inputs(content, (StyleSource(style, mask=mask), StyleSource(other))), x)
    assert both[64 + 80 :].min() > 0


def test_styles_sharing_a_mask_share_a_region_and_blend_there() -> None:
    mask = np.zeros((32, 32), np.float32)
    mask[:, :16] = 1.0
    a, b, c = (image_array(32, 32, seed=s) for s in (1, 2, 3))
    styles = (StyleSource(a, 3.0, mask.copy()), StyleSource(b, 1.0, mask.copy()), StyleSource(c, 2.0))
    found = regions.plan_regions(styles, UnmaskedRegion.STYLES, (32, 32))
    assert len(found) == 2
    shared, rest = found
    assert shared.styles == ((0, 0.75), (1, 0.25))
    assert rest.styles == ((2, 1.0),)
    assert rest.guide is not None
    np.testing.assert_array_equal(rest.guide, 1.0 - mask)
    assert regions.count_regions(styles, UnmaskedRegion.STYLES) == 2
    # No positive weight: the region is dropped; no mask at all: one unguided region.
    dropped = regions.plan_regions((StyleSource(a, 0.0, mask), StyleSource(c)), UnmaskedRegion.STYLES, (32, 32))
    assert len(dropped) == 1 and dropped[0].styles == ((1, 1.0),)
    plain = regions.plan_regions((StyleSource(a), StyleSource(c, 3.0)), UnmaskedRegion.STYLES, (32, 32))
    assert len(plain) == 1 and plain[0].guide is None and plain[0].styles == ((0, 0.25), (1, 0.75))


def test_masks_do_not_multiply_compiled_steps() -> None:
    engine = Engine(weights="random:0", precision="float32")
    content = image_array(48, 48, seed=1)
    options = JobOptions(size=48, iterations=2, multiscale=False)
    masks = [np.zeros((48, 48), np.float32) for _ in range(3)]
    for i, m in enumerate(masks):
        m[:, i * 16 : (i + 1) * 16] = 1.0
    jobs = [
        (StyleSource(image_array(48, 48, seed=2), mask=masks[0]),),
        (StyleSource(image_array(48, 48, seed=2), mask=masks[0]), StyleSource(image_array(48, 48, seed=3))),
        tuple(StyleSource(image_array(48, 48, seed=4 + i), mask=m) for i, m in enumerate(masks)),
    ]
    for styles in jobs:  # 1, 2 and 3 regions
        run(engine, options, Inputs(content, styles))
    spec = job_spec(resolve(options), engine.precision, guided=True).loss
    step = engine.compiled(spec).optimizer(Optimizer.LBFGS, 20)._step
    assert step.experimental_get_tracing_count() == 1
    assert len(engine.step_cache) == 1  # the guided spec only: no mask count is part of a key
    run(engine, options, Inputs(content, (StyleSource(image_array(48, 48, seed=2)),)))
    assert len(engine.step_cache) == 2  # ... and the unmasked job keeps its own fast path


def test_luminance_control_output_has_exactly_the_content_chrominance(engine: Engine) -> None:
    content = image_array(64, 64, seed=8)
    style = stripes(64, 4, False, ((255, 30, 30), (30, 255, 30)))
    options = JobOptions(size=64, iterations=15, multiscale=False, color_control=ColorControl.LUMINANCE)
    previews: list[np.ndarray] = []
    result = run(engine, options, Inputs(content, (StyleSource(style),)), on_progress=lambda p: previews.append(p))
    out, want = color.rgb_to_ycbcr(result.pixels), color.rgb_to_ycbcr(content)
    np.testing.assert_allclose(out[..., 1:], want[..., 1:], atol=1e-3)  # float32 pixels, before quantization
    assert np.abs(out[..., 0] - want[..., 0]).mean() > 1.0  # the luminance is the optimized one
    preview = previews[-1].image
    np.testing.assert_allclose(color.rgb_to_ycbcr(preview)[..., 1:], want[..., 1:], atol=2.0)  # uint8 rounding


def test_luminance_control_optimizes_gray_images(engine: Engine) -> None:
    content = image_array(48, 48, seed=8)
    style = image_array(48, 48, seed=9)
    options = resolve(JobOptions(size=48, color_control=ColorControl.LUMINANCE))
    inputs = Inputs(content, (StyleSource(style),))
    (gray_style,) = prepare.styles(options, inputs)
    np.testing.assert_allclose(gray_style[..., 0], gray_style[..., 2])
    assert gray_style.mean() == pytest.approx(color.luminance(content).mean(), abs=1e-3)


def test_histogram_control_matches_the_styles_before_their_grams(engine: Engine) -> None:
    content = image_array(48, 48, seed=8)
    style = np.clip(image_array(48, 48, seed=9).astype(np.float64) * [0.3, 1.0, 0.5] + [150, 0, 40], 0, 255)
    style = style.astype(np.uint8)
    job = job_spec(resolve(JobOptions(size=48, color_control=ColorControl.HISTOGRAM)), engine.precision, False)
    options = job.options
    inputs = Inputs(content, (StyleSource(style),))
    evaluator = engine.compiled(job.loss).evaluator(WHOLE)
    found = regions.plan_regions(inputs.styles, options.unmasked_region, (48, 48))
    matched = prepare.styles(options, inputs)
    built = job_targets.build(evaluator, job, content, matched, found, lambda: False)
    assert built is not None
    direct = style_grams(evaluator, job_targets.batch(color.match_histogram(style, content)))
    for got, want in zip(style_targets(built), direct):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5)
    unmatched = style_grams(evaluator, job_targets.batch(style))
    assert not np.allclose(unmatched[0].numpy(), direct[0].numpy(), rtol=1e-2)
    result = run(engine, JobOptions(size=48, iterations=5, color_control=ColorControl.HISTOGRAM), inputs)
    assert result.complete and np.isfinite(result.losses.total)


def test_an_all_ones_style_mask_costs_the_guided_path_only_one_region(engine: Engine) -> None:
    # unmasked_region = styles with every style masked: no leftover region.
    mask = np.ones((32, 32), np.float32)
    found = regions.plan_regions((StyleSource(image_array(32, 32), mask=mask),), UnmaskedRegion.STYLES, (32, 32))
    assert len(found) == 1
    assert first_loss(
        engine,
        JobOptions(size=32, multiscale=False),
        Inputs(image_array(32, 32, seed=1), (StyleSource(image_array(32, 32), mask=mask),)),
    ) == pytest.approx(
        first_loss(
            engine,
            JobOptions(size=32, multiscale=False),
            Inputs(image_array(32, 32, seed=1), (StyleSource(image_array(32, 32)),)),
        ),
        rel=1e-6,
    )


def test_a_masked_request_through_a_real_server(server) -> None:
    """Raw stub, real in-process gRPC server: two styles with complementary
    masks and luminance control come back as a complete result whose
    chrominance is the content's."""
    from stylize_api.v1 import stylize_pb2 as pb
    from tests.support.images import decode, encode, png_bytes
    from tests.support.server import small_request

    left = np.zeros((32, 40), np.uint8)
    left[:, :20] = 255
    styles = [
        pb.StyleImage(image=pb.Image(data=png_bytes(32, 32, seed=2)), mask=pb.Image(data=encode(left))),
        pb.StyleImage(image=pb.Image(data=png_bytes(32, 32, seed=3)), mask=pb.Image(data=encode(255 - left))),
    ]
    request = small_request(
        styles=styles,
        iterations=4,
        color_control=pb.COLOR_CONTROL_LUMINANCE,
        unmasked_region=pb.UNMASKED_REGION_CONTENT,
    )
    frames = list(server.stub().Stylize(request, timeout=120))
    result = frames[-1].result
    assert result.complete and result.iterations == 4
    _, pixels = decode(result.image.data)
    assert pixels.shape == (26, 32, 3)
    content = image_array(40, 32, seed=1)
    from PIL import Image

    expected = np.asarray(Image.fromarray(content).resize((32, 26), Image.Resampling.LANCZOS))
    chroma = np.abs(color.rgb_to_ycbcr(pixels)[..., 1:] - color.rgb_to_ycbcr(expected)[..., 1:])
    assert chroma.mean() < 1.0  # the content's chrominance, up to 8-bit rounding
    plain = list(server.stub().Stylize(small_request(iterations=4), timeout=120))[-1].result
    assert plain.image.data != result.image.data
