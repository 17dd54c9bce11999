"""The three terms of the paper (content, style by Gram matrices, tv) as the
engine tests address them: a spec from layer lists, the targets from their
parts, and a style image's Grams or an image's feature maps through an
evaluator. The engine itself names no term; these helpers are the tests'."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from stylize_server.engine import terms
from stylize_server.engine.spec import LossSpec, Targets
from stylize_server.engine.tiling import Evaluator
from stylize_server.job.layout import Pooling, block_of
from stylize_server.job.precision import Precision

TERMS = terms.costs()  # every registered term's share of the cost model


def spec_of(
    content: Sequence[str],
    style: Sequence[str],
    pooling: Pooling = Pooling.AVG,
    precision: Precision = Precision.FLOAT32,
    guided: bool = False,
) -> LossSpec:
    terms = (("content", tuple(content)), ("style", tuple(style)), ("tv", ()))
    return LossSpec(terms=terms, pooling=pooling, precision=precision, guided=guided)


def make_targets(
    *,
    content: Sequence[tf.Tensor],
    style: Sequence[tf.Tensor],
    guides: Sequence[tf.Tensor],
    content_layer_weights: tf.Tensor,
    style_layer_weights: tf.Tensor,
    loss_weights: tf.Tensor,
) -> Targets:
    per_term = ((*content, content_layer_weights), (*style, *guides, style_layer_weights), ())
    return Targets(per_term=per_term, weights=loss_weights)


def style_targets(targets: Targets) -> tuple[tf.Tensor, ...]:
    """The style term's blended Grams (without guides and layer weights)."""
    style = targets.per_term[1]
    layers = int(style[-1].shape[0])
    return tuple(style[:layers])


def term_index(evaluator: Evaluator, name: str) -> int:
    return [type(t).name for t in evaluator.objective.terms].index(name)


def style_grams(evaluator: Evaluator, image: tf.Tensor) -> list[tf.Tensor]:
    """The style layers' Gram matrices FᵀF / (C·N) of `image`, through the
    evaluator's tiles."""
    index = term_index(evaluator, "style")
    layers = evaluator.objective.terms[index].layers
    height, width = int(image.shape[1]), int(image.shape[2])
    grams = []
    for name, sums in zip(layers, evaluator.image_sums(index, image)):
        k = 1 << (block_of(name) - 1)
        grams.append(sums[0] / float((height // k) * (width // k) * int(sums[0].shape[-1])))
    return grams


def content_features(evaluator: Evaluator, image: tf.Tensor) -> list[tf.Tensor]:
    index = term_index(evaluator, "content")
    return evaluator.features(evaluator.objective.terms[index].layers, image)
