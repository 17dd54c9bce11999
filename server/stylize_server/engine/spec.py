"""What a compiled objective depends on (`LossSpec`, the compiled-step
cache's key), what it takes per scale (`Targets`), and how the network is cut
into stages for tiling (`Stage`, `stages_for`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from stylize_server.job.layout import BLOCK_CHANNELS, INPUT_CHANNELS, Pooling, block_of, needed_layers
from stylize_server.job.precision import Precision


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """What a traced objective depends on; everything else is a tensor input.
    Layer lists are canonical (network order, see canonical_layers), so the
    order a request names them in never compiles anything new."""

    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    pooling: Pooling
    precision: Precision = Precision.FLOAT32
    guided: bool = False  # style terms per region (masks); the unguided path is the fast one

    @property
    def dtype(self) -> tf.DType:
        return tf.bfloat16 if self.precision is Precision.BFLOAT16 else tf.float32

    @property
    def layers(self) -> tuple[str, ...]:
        return needed_layers(self.content_layers, self.style_layers)


@dataclasses.dataclass(frozen=True)
class Targets:
    """Per-scale inputs of the objective, in the spec's layer order."""

    content: tuple[tf.Tensor, ...]  # [1, h, w, C] feature maps, one per content layer
    style: tuple[tf.Tensor, ...]  # [C, C] blended Gram matrices, or [R, C, C] per region (guided)
    guides: tuple[tf.Tensor, ...]  # guided: [R, h, w] per style layer at its resolution; else ()
    content_layer_weights: tf.Tensor  # [n_content]
    style_layer_weights: tf.Tensor  # [n_style]
    loss_weights: tf.Tensor  # [3]: content, style, tv

    def args(self) -> tuple[Any, ...]:
        return (
            list(self.content),
            list(self.style),
            list(self.guides),
            self.content_layer_weights,
            self.style_layer_weights,
            self.loss_weights,
        )


@dataclasses.dataclass(frozen=True)
class Stage:
    """Blocks first..last of the network, the spec's loss layers among them
    (indices into its content/style lists), and whether it hands the pooled
    map on to a next stage."""

    first_block: int
    last_block: int
    content: tuple[int, ...]
    style: tuple[int, ...]
    emit_next: bool

    def stride(self, layer: str) -> int:
        """Positions of this stage's input per position of `layer`."""
        return 1 << (block_of(layer) - self.first_block)

    @property
    def next_stride(self) -> int:
        return 1 << (self.last_block - self.first_block + 1)

    @property
    def in_channels(self) -> int:
        return INPUT_CHANNELS if self.first_block == 1 else BLOCK_CHANNELS[self.first_block - 2]


def gram_shape(c: int, guided: bool) -> list[int | None]:
    return [None, c, c] if guided else [c, c]


def stages_for(spec: LossSpec, splits: Sequence[int]) -> tuple[Stage, ...]:
    """The spec's network cut after each block in `splits` (those before its
    deepest block); one stage when `splits` is empty."""
    deepest = max(block_of(n) for n in spec.layers)
    ends = sorted({s for s in splits if 1 <= s < deepest}) + [deepest]
    stages, first = [], 1
    for last in ends:
        stages.append(
            Stage(
                first,
                last,
                tuple(i for i, n in enumerate(spec.content_layers) if first <= block_of(n) <= last),
                tuple(i for i, n in enumerate(spec.style_layers) if first <= block_of(n) <= last),
                emit_next=last != deepest,
            )
        )
        first = last + 1
    return tuple(stages)
