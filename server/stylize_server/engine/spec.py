"""What a compiled objective depends on (`LossSpec`, the compiled-step
cache's key), what it takes per scale (`Targets`), and how the network is cut
into stages for tiling (`Stage`, `stages_for`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import tensorflow as tf

from stylize_server.job.layout import BLOCK_CHANNELS, INPUT_CHANNELS, Pooling, block_of, layer_index
from stylize_server.job.precision import Precision

TermKey = tuple[str, tuple[str, ...]]  # a term's name and the layers it reads (network order)


@dataclasses.dataclass(frozen=True)
class Slot:
    """Layer j of term t: one place where a stage accumulates sums."""

    term: int
    index: int
    layer: str


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """What a traced objective depends on; everything else is a tensor input.
    Layer lists are canonical (network order), so the order a request names
    them in never compiles anything new; weights are tensors, never part of it."""

    terms: tuple[TermKey, ...]
    pooling: Pooling
    precision: Precision = Precision.FLOAT32
    guided: bool = False  # terms per mask region; the unguided path is the fast one

    @property
    def dtype(self) -> tf.DType:
        return tf.bfloat16 if self.precision is Precision.BFLOAT16 else tf.float32

    @property
    def slots(self) -> tuple[Slot, ...]:
        """Every (term, layer) pair, term by term: the objective's order of sums."""
        return tuple(Slot(t, j, layer) for t, (_, layers) in enumerate(self.terms) for j, layer in enumerate(layers))

    @property
    def layers(self) -> tuple[str, ...]:
        """Every layer some term reads, in network order."""
        return tuple(sorted({s.layer for s in self.slots}, key=layer_index))


@dataclasses.dataclass(frozen=True)
class Targets:
    """Per-scale inputs of the objective: each term's targets (in the spec's
    term order, each as its term lays them out) and the terms' weights."""

    per_term: tuple[tuple[tf.Tensor, ...], ...]
    weights: tf.Tensor  # [terms]

    def args(self) -> tuple[list[list[tf.Tensor]], tf.Tensor]:
        return [list(t) for t in self.per_term], self.weights


@dataclasses.dataclass(frozen=True)
class Stage:
    """Blocks first..last of the network, the spec's slots whose layers lie
    among them (indices into spec.slots), and whether it hands the pooled map
    on to a next stage."""

    first_block: int
    last_block: int
    slots: tuple[int, ...]
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


def stages_for(spec: LossSpec, splits: Sequence[int]) -> tuple[Stage, ...]:
    """The spec's network cut after each block in `splits` (those before its
    deepest block); one stage when `splits` is empty."""
    deepest = max((block_of(n) for n in spec.layers), default=1)
    ends = sorted({s for s in splits if 1 <= s < deepest}) + [deepest]
    stages, first = [], 1
    slots = spec.slots
    for last in ends:
        inside = tuple(i for i, s in enumerate(slots) if first <= block_of(s.layer) <= last)
        stages.append(Stage(first, last, inside, emit_next=last != deepest))
        first = last + 1
    return tuple(stages)
