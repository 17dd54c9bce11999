"""Loss terms are components: a term the tests define here, in this file
alone, registers with the engine and takes part in a job, in the exact tiled
objective and in the reported losses, with nothing else changed. It matches
the mean of each channel of a layer to a style image's, a term with per-tile
sums, a gradient written out, targets from image statistics and an option of
its own (off by default). Real TensorFlow, float32, random weights."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar

import numpy as np
import pytest
import tensorflow as tf

from stylize_api.losses import Losses
from stylize_api.schema import OPTIONS, Scope
from stylize_server.engine import terms
from stylize_server.engine.runner import Engine
from stylize_server.engine.spec import LossSpec
from stylize_server.engine.terms.base import TargetContext, TensorList, Term, View
from stylize_server.engine.tiling import WHOLE, TileLayout
from stylize_server.job.errors import InvalidArgument
from stylize_server.job.layout import Pooling, channels, stride
from stylize_server.job.options import Inputs, JobOptions, StyleSource, style_shape
from stylize_server.job.precision import Precision
from stylize_server.wire import convert
from tests.support.images import image_array

LAYERS = (("relu2_1", 1.0), ("relu3_1", 0.5))


class ChannelMeans(Term):
    """Σ_l w_l |mean_p f_p − μ_l|², μ_l the style image's channel means."""

    name = "channel_means"
    order: ClassVar[int] = 90
    weight_option = "channel_means_weight"
    layers_option = "channel_means_layers"
    option_defaults: ClassVar[dict[str, object]] = {"channel_means_weight": 0.0, "channel_means_layers": LAYERS}

    @classmethod
    def active(cls, options: JobOptions) -> bool:
        return cls.weight(options) > 0

    def _spec(self, j: int) -> tf.TensorSpec:
        return tf.TensorSpec([channels(self.layers[j])], tf.float32)

    def target_specs(self) -> list[tf.TensorSpec]:
        return [*(self._spec(j) for j in range(len(self.layers))), tf.TensorSpec([len(self.layers)], tf.float32)]

    def sum_specs(self, j: int) -> list[tf.TensorSpec]:
        return [self._spec(j)]

    def mult_specs(self, j: int) -> list[tf.TensorSpec]:
        return [self._spec(j)]

    def tile_sums(self, j: int, features: tf.Tensor, view: View, targets: Sequence[tf.Tensor]) -> TensorList:
        return [tf.reduce_sum(features, axis=[0, 1, 2])]

    def image_sums(self, j: int, features: tf.Tensor) -> TensorList:
        return [tf.reduce_sum(features, axis=[0, 1, 2])]

    def reduce(
        self, sums: Sequence[Sequence[tf.Tensor]], targets: Sequence[tf.Tensor], image_hw: tf.Tensor, weight: tf.Tensor
    ) -> tuple[tf.Tensor, list[TensorList]]:
        total, mults = tf.constant(0.0), []
        for j, name in enumerate(self.layers):
            k = stride(name)
            n = tf.cast((image_hw[0] // k) * (image_hw[1] // k), tf.float32)
            diff = sums[j][0] / n - targets[j]
            w = weight * targets[-1][j]
            total += w * tf.reduce_sum(tf.square(diff))
            mults.append([2.0 * w * diff / n])
        return total, mults

    def cotangent(
        self, j: int, features: tf.Tensor, view: View, targets: Sequence[tf.Tensor], mults: Sequence[tf.Tensor]
    ) -> tf.Tensor:
        return tf.ones_like(features) * mults[0]

    def targets(self, ctx: TargetContext) -> tuple[tf.Tensor, ...] | None:
        if ctx.phase("channel means"):
            return None
        style = ctx.styles[0]
        shaped = tf.image.resize(style, style_shape(style.shape[:2], ctx.shape, 1.0)).numpy()
        means = []
        for name, sums in zip(self.layers, ctx.image_sums(self, shaped)):
            k = stride(name)
            means.append(sums[0] / float((shaped.shape[0] // k) * (shaped.shape[1] // k)))
        return (*means, tf.constant([w for _, w in self.layer_weights(ctx.options)], tf.float32))


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    terms.register(ChannelMeans)
    try:
        yield Engine(weights="random:0", precision="float32", max_compiled=4)
    finally:
        terms.unregister(ChannelMeans.name)


def _inputs() -> Inputs:
    return Inputs(image_array(64, 56, seed=1), (StyleSource(image_array(48, 48, seed=2)),))


def _options(weight: float) -> JobOptions:
    return JobOptions(size=64, iterations=6, multiscale=False, term_options=(("channel_means_weight", weight),))


def test_a_registered_term_takes_part_in_a_job_and_its_losses(engine: Engine) -> None:
    result = engine.run(engine.plan(_options(50.0), _inputs()))
    assert list(result.losses.terms) == ["content", "style", "tv", "channel_means"]
    assert result.losses.channel_means > 0
    assert result.losses.total == pytest.approx(sum(result.losses.terms.values()), rel=1e-6)
    # The wire carries it by name too, with the deprecated fields of the old three.
    wire = result.losses.to_proto()
    assert dict(wire.terms) == pytest.approx(dict(result.losses.terms)) and wire.tv == result.losses.tv
    assert Losses.from_proto(wire) == result.losses


def test_the_term_is_off_unless_its_option_turns_it_on(engine: Engine) -> None:
    result = engine.run(engine.plan(_options(0.0), _inputs()))
    assert list(result.losses.terms) == ["content", "style", "tv"]


def test_its_weight_lowers_its_own_loss(engine: Engine) -> None:
    light = engine.run(engine.plan(_options(1e-3), _inputs())).losses.channel_means / 1e-3
    heavy = engine.run(engine.plan(_options(1e3), _inputs())).losses.channel_means / 1e3
    assert heavy < 0.5 * light  # unweighted: the optimizer pulled the channel means toward the style's


def test_an_option_no_term_owns_is_refused_with_its_name(engine: Engine) -> None:
    options = JobOptions(size=64, iterations=2, term_options=(("channel_meanz_weight", 1.0),))
    with pytest.raises(InvalidArgument) as caught:
        engine.plan(options, _inputs())
    assert caught.value.field == "channel_meanz_weight"


def _spec() -> LossSpec:
    names = tuple(n for n, _ in LAYERS)
    return LossSpec(terms=((ChannelMeans.name, names),), pooling=Pooling.AVG, precision=Precision.FLOAT32)


def test_its_written_out_gradient_is_the_gradient_of_its_value(engine: Engine) -> None:
    steps = engine.compiled(_spec())
    targets = steps.objective.placeholder_targets(80, 72, weights=[3.0])
    rng = np.random.default_rng(4)
    means = [tf.constant(rng.uniform(0, 50, channels(n)).astype(np.float32)) for n, _ in LAYERS]
    targets = type(targets)(((*means, tf.constant([1.0, 0.5])),), targets.weights)
    x = tf.constant(rng.uniform(0, 255, (1, 80, 72, 3)).astype(np.float32))
    values, grad = steps.evaluator(WHOLE).value_and_grad(x, targets)
    with tf.GradientTape() as tape:
        tape.watch(x)
        feats = engine.vgg(x, [n for n, _ in LAYERS], Pooling.AVG)
        direct = sum(
            3.0 * w * tf.reduce_sum(tf.square(tf.reduce_mean(feats[n], axis=[0, 1, 2]) - m))
            for (n, w), m in zip(LAYERS, means)
        )
    want = tape.gradient(direct, x)
    assert float(values[0]) == pytest.approx(float(direct), rel=1e-5)
    np.testing.assert_allclose(grad.numpy(), want.numpy(), rtol=1e-3, atol=1e-3 * float(tf.reduce_max(tf.abs(want))))


@pytest.mark.parametrize("layout", [TileLayout((), (32,)), TileLayout((2,), (32, 0))], ids=["uncut 32", "cut2 32"])
def test_it_is_exact_under_tiling(engine: Engine, layout: TileLayout) -> None:
    steps = engine.compiled(_spec())
    rng = np.random.default_rng(5)
    means = [tf.constant(rng.uniform(0, 50, channels(n)).astype(np.float32)) for n, _ in LAYERS]
    base = steps.objective.placeholder_targets(96, 112, weights=[2.0])
    targets = type(base)(((*means, tf.constant([1.0, 0.5])),), base.weights)
    x = tf.constant(rng.uniform(0, 255, (1, 96, 112, 3)).astype(np.float32))
    want_values, want_grad = steps.evaluator(WHOLE).value_and_grad(x, targets)
    values, grad = steps.evaluator(layout).value_and_grad(x, targets)
    np.testing.assert_allclose(values.numpy(), want_values.numpy(), rtol=1e-4)
    assert np.linalg.norm(grad.numpy() - want_grad.numpy()) / np.linalg.norm(want_grad.numpy()) < 1e-4


def test_every_engine_option_of_the_proto_is_a_field_or_owned_by_a_term() -> None:
    owned = set(terms.option_defaults())
    for name in convert.term_option_names():
        assert name in owned, f"StylizeRequest.{name} is neither a JobOptions field nor a loss term's option"
    assert any(o.scope is Scope.ENGINE for o in OPTIONS)
