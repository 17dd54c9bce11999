"""What a job compiles and runs, derived once from its plan (`JobSpec`: the
canonical options, the `LossSpec` that keys the compiled-step cache, the
terms' weights and each scale's tile layout and optimizer), and what the
objective takes per scale (`Targets`). How the network is cut into stages
(`Stage`) belongs to the objective that traces them (objective.py).

Everything downstream of the runner (the step cache, the targets, the
optimizers) reads a JobSpec and never resolves the options again: naming the
same layers in another order, or asking twice, compiles nothing new."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import tensorflow as tf

from stylize_server.engine import terms
from stylize_server.job.layout import Pooling, layer_index
from stylize_server.job.options import JobOptions, Layers, Optimizer
from stylize_server.job.precision import Precision
from stylize_server.job.types import Estimate, ScaleEstimate

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
    term order, each as its term lays them out) and the terms' weights, in
    the nesting of the traced functions' signatures (lists), so that every
    step passes them as they are (`args`)."""

    per_term: Sequence[Sequence[tf.Tensor]]
    weights: tf.Tensor  # [terms]

    def __post_init__(self) -> None:
        # Once per scale, not at every step: the signatures' lists, whatever sequences were given.
        object.__setattr__(self, "per_term", [list(t) for t in self.per_term])

    @property
    def args(self) -> tuple[Sequence[Sequence[tf.Tensor]], tf.Tensor]:
        return self.per_term, self.weights


@dataclasses.dataclass(frozen=True)
class TileLayout:
    """How a scale runs: the network cut after the blocks in `splits`, and the
    tile side (image pixels; 0 = whole) of each part, shallow first."""

    splits: tuple[int, ...] = ()
    tiles: tuple[int, ...] = (0,)

    @property
    def whole(self) -> bool:
        return not any(self.tiles)


WHOLE = TileLayout()


def layout_of(scale: ScaleEstimate) -> TileLayout:
    """How the cost model said to run a scale."""
    if scale.tile_size <= 0:
        return WHOLE
    if scale.split_block <= 0:
        return TileLayout((), (scale.tile_size,))
    return TileLayout((scale.split_block,), (scale.tile_size, scale.deep_tile_size))


def optimizer_key(kind: Optimizer, history: int) -> tuple[Optimizer, int]:
    """What a compiled optimizer depends on: its kind and, for L-BFGS only,
    its history (Adam's steps do not depend on it, so its key says 0)."""
    return kind, history if kind is Optimizer.LBFGS else 0


@dataclasses.dataclass(frozen=True)
class ScaleSteps:
    """What one scale runs on: its tile layout and its optimizer, keyed as the
    step cache keys it (`optimizer_key`: Adam's history is 0), so that equal
    keys share one compiled optimizer."""

    layout: TileLayout
    optimizer: Optimizer
    history: int

    @property
    def optimizer_key(self) -> tuple[Optimizer, int]:
        return self.optimizer, self.history


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """A job as the engine compiles and runs it (see the module docstring)."""

    options: JobOptions  # resolved, every term's layer list canonical
    loss: LossSpec
    weights: tuple[float, ...]  # each term's weight, in the loss's term order
    scales: tuple[ScaleSteps, ...] = ()  # in the estimate's order


def canonical_layers(layers: Layers) -> Layers:
    """Layers in network order, weights carried along: the order a request
    names them in never changes the loss or what is compiled."""
    return tuple(sorted(layers, key=lambda lw: layer_index(lw[0])))


def canonical(options: JobOptions) -> JobOptions:
    """Every term's layer list in network order."""
    for cls in terms.catalogue():
        if cls.layers_option is not None:
            layers = cls.layer_weights(options)
            if layers:
                options = options.with_value(cls.layers_option, canonical_layers(layers))
    return options


def job_spec(options: JobOptions, precision: Precision, guided: bool, estimate: Estimate | None = None) -> JobSpec:
    """The JobSpec of resolved options (and of the estimate's scales, where
    given: tests and benchmarks that build targets need none)."""
    options = canonical(options)
    assert options.pooling is not None
    active = terms.active(options)
    keys = tuple((cls.name, tuple(n for n, _ in cls.layer_weights(options))) for cls in active)
    loss = LossSpec(terms=keys, pooling=options.pooling, precision=precision, guided=guided)
    scales = tuple(
        ScaleSteps(layout_of(s), *optimizer_key(options.optimizer, s.lbfgs_history or options.lbfgs_history))
        for s in (estimate.scales if estimate is not None else ())
    )
    return JobSpec(options, loss, tuple(cls.weight(options) for cls in active), scales)
