"""The objective of one loss specification, compiled: the sum of its terms
(engine/terms), the network split into parts ("stages" of whole VGG blocks),
and for each part the traced functions that the whole-image step and the
exact tiled evaluation (tiling.py) call.

A stage runs blocks b0..b1 on a tile of its input map (the image for b0 = 1,
else the pooled map that block b0 starts from) and takes the values of its
slots (term t's layer j, where the layer lies in the stage) on the tile's
*interior* only, so that every feature position counts once however the map
is cut:

  forward   each slot's sums over the interior (Term.tile_sums); the
            interior of the pooled map the next stage reads
  global    from every slot's totals: each term's value and multipliers
            (Term.reduce), and the terms on the whole image (Term.pixel)
  backward  the same stage again under a tape; the vector-Jacobian product
            of its interior features (cotangents from the multipliers,
            Term.cotangent) and of its pooled output (the next stage's input
            gradient) with the tile
  final     forward, global and backward fused for a last stage run whole:
            the whole-image step is this with one stage

Tile positions: `origin` is where the tile's input starts in its stage's
input map, `box` its interior (y0, y1, x0, x1) relative to the tile; both in
the stage input's positions and multiples of the coarsest pooling inside the
stage, so at a layer of relative stride k the interior is box // k.

Every signature has None for height, width and regions: no image size and no
number of masks ever retraces a function.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from stylize_server.engine import terms as catalogue
from stylize_server.engine.spec import LossSpec, Slot, Targets
from stylize_server.engine.terms.base import Term, View
from stylize_server.engine.vgg import VGG19Features
from stylize_server.job.layout import BLOCK_CHANNELS, BLOCK_SIZES, INPUT_CHANNELS, block_of

IMAGE = tf.TensorSpec([1, None, None, 3], tf.float32)
BOX = tf.TensorSpec([4], tf.int32)
ORIGIN = tf.TensorSpec([2], tf.int32)

TensorList = list[tf.Tensor]
Nested = list[TensorList]  # one list of tensors per slot (sums, multipliers) or per term (targets)

__all__ = ["IMAGE", "LossSpec", "Objective", "Stage", "Targets", "stages_for"]


@dataclasses.dataclass(frozen=True)
class Stage:
    """Blocks first..last of the network, the spec's slots whose layers lie
    among them and those of the stages before it (indices into spec.slots,
    in spec order), and whether it hands the pooled map on to a next stage."""

    first_block: int
    last_block: int
    slots: tuple[int, ...]
    emit_next: bool
    earlier: tuple[int, ...] = ()

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
        earlier = tuple(i for i, s in enumerate(slots) if block_of(s.layer) < first)
        stages.append(Stage(first, last, inside, emit_next=last != deepest, earlier=earlier))
        first = last + 1
    return tuple(stages)


class Objective:
    """The compiled loss of one LossSpec (see the module docstring)."""

    def __init__(self, vgg: VGG19Features, spec: LossSpec, xla: bool = False) -> None:
        self.vgg = vgg
        self.spec = spec
        self.xla = xla
        self.terms: tuple[Term, ...] = tuple(
            catalogue.by_name(name)(layers, spec.guided) for name, layers in spec.terms
        )
        self.names = tuple(name for name, _ in spec.terms)
        self.slots: tuple[Slot, ...] = spec.slots
        self.target_specs = (
            [term.target_specs() for term in self.terms],
            tf.TensorSpec([len(self.terms)], tf.float32),
        )
        self.whole = stages_for(spec, ())[0]
        self._functions: dict[tuple[str, Stage | None, object], Callable[..., Any]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ slots

    def _sum_specs(self, indices: Sequence[int]) -> list[list[tf.TensorSpec]]:
        return [self.terms[self.slots[i].term].sum_specs(self.slots[i].index) for i in indices]

    def _mult_specs(self, indices: Sequence[int]) -> list[list[tf.TensorSpec]]:
        return [self.terms[self.slots[i].term].mult_specs(self.slots[i].index) for i in indices]

    def placeholder_targets(self, height: int, width: int, weights: Sequence[float] | None = None) -> Targets:
        """Zero targets for a height × width image (timing, tracing)."""
        w = weights if weights is not None else [1.0] * len(self.terms)
        per_term = [term.placeholder_targets(height, width) for term in self.terms]
        return Targets(per_term, tf.constant(list(w), tf.float32))

    # --------------------------------------------------------- signatures

    def _input_spec(self, stage: Stage) -> tf.TensorSpec:
        if stage.first_block == 1:
            return IMAGE
        return tf.TensorSpec([1, None, None, stage.in_channels], self.spec.dtype)

    def _next_spec(self, stage: Stage) -> tf.TensorSpec:
        return tf.TensorSpec([1, None, None, BLOCK_CHANNELS[stage.last_block - 1]], tf.float32)

    def function(self, kind: str, stage: Stage | None = None, what: object = None) -> Callable[..., Any]:
        """The traced function `kind` (forward, backward, final, global,
        features, image_sums) of `stage`, compiled on first use; `what` is the
        layers (a tuple) of `features` and the term (an index) of `image_sums`."""
        key = (kind, stage, what)
        with self._lock:  # jobs on several threads may ask for it at once: trace it once
            if key not in self._functions:
                self._functions[key] = self._compile(kind, stage, what)
            return self._functions[key]

    def _compile(self, kind: str, stage: Stage | None, what: object) -> Callable[..., Any]:
        targets = list(self.target_specs)
        if kind == "global":
            signature = [self._sum_specs(range(len(self.slots))), IMAGE, *targets]
            return self._trace(self._global_fn, signature)
        assert stage is not None
        x = self._input_spec(stage)
        earlier = stage.earlier
        bodies: dict[str, tuple[Callable[..., Any], list[Any]]] = {
            "forward": (bind(self._forward_fn, stage), [x, ORIGIN, BOX, *targets]),
            "backward": (
                bind(self._backward_fn, stage),
                [x, ORIGIN, BOX, self._mult_specs(stage.slots), self._next_spec(stage), *targets],
            ),
            "final": (bind(self._final_fn, stage), [x, IMAGE, self._sum_specs(earlier), *targets]),
            "features": (bind(self._features_fn, stage, what), [x, ORIGIN, BOX]),
            "image_sums": (bind(self._image_sums_fn, stage, what), [x, ORIGIN, BOX]),
        }
        body, signature = bodies[kind]
        return self._trace(body, signature)

    def _trace(self, body: Callable[..., Any], signature: list[Any]) -> Callable[..., Any]:
        return tf.function(body, input_signature=signature, jit_compile=self.xla)  # type: ignore[no-any-return]

    # ------------------------------------------------------------- bodies

    def _run(self, stage: Stage, x: tf.Tensor, layers: Sequence[str]) -> tuple[dict[str, tf.Tensor], Any]:
        return self.vgg.stage(
            x, stage.first_block, stage.last_block, layers, self.spec.pooling, self.spec.dtype, stage.emit_next
        )

    @staticmethod
    def _interior(t: tf.Tensor, box: tf.Tensor, k: int) -> tf.Tensor:
        return t[:, box[0] // k : box[1] // k, box[2] // k : box[3] // k, :]

    def _interiors(self, stage: Stage, feats: dict[str, tf.Tensor], box: tf.Tensor) -> dict[str, tf.Tensor]:
        return {n: self._interior(f, box, stage.stride(n)) for n, f in feats.items()}

    def _stage_sums(
        self, stage: Stage, interiors: dict[str, tf.Tensor], origin: tf.Tensor, box: tf.Tensor, per_term: Nested
    ) -> Nested:
        """Each of the stage's slots' sums over the interior."""
        out = []
        for i in stage.slots:
            s = self.slots[i]
            view = View(origin, box, stage.stride(s.layer))
            out.append(self.terms[s.term].tile_sums(s.index, interiors[s.layer], view, per_term[s.term]))
        return out

    def _cotangents(
        self,
        stage: Stage,
        interiors: dict[str, tf.Tensor],
        origin: tf.Tensor,
        box: tf.Tensor,
        per_term: Nested,
        slots: Sequence[int],
        mults: Sequence[TensorList],
    ) -> dict[str, tf.Tensor]:
        """The loss's gradient w.r.t. each interior feature map of the stage."""
        cots: dict[str, tf.Tensor] = {}
        for i, m in zip(slots, mults):
            s = self.slots[i]
            view = View(origin, box, stage.stride(s.layer))
            cot = self.terms[s.term].cotangent(s.index, interiors[s.layer], view, per_term[s.term], m)
            if cot is not None:
                cots[s.layer] = cots[s.layer] + cot if s.layer in cots else cot
        return cots

    def _global(
        self, sums: Sequence[TensorList], x_img: tf.Tensor, per_term: Nested, weights: tf.Tensor
    ) -> tuple[tf.Tensor, Nested, tf.Tensor]:
        """-> (the weighted terms [n], multipliers per slot, the gradient of
        the pixel terms w.r.t. the image)."""
        image_hw = tf.shape(x_img)[1:3]
        values: TensorList = []
        mults: Nested = []
        pixel_grad = tf.zeros_like(x_img)
        start = 0
        for t, term in enumerate(self.terms):
            count = len(term.layers)
            value, term_mults = term.reduce(sums[start : start + count], per_term[t], image_hw, weights[t])
            start += count
            mults.extend(term_mults)
            if term.on_pixels:
                on_pixels, grad = term.pixel(x_img, per_term[t], weights[t])
                value, pixel_grad = value + on_pixels, pixel_grad + grad
            values.append(value)
        return tf.stack(values), mults, pixel_grad

    def _global_fn(self, sums: Nested, x_img: tf.Tensor, per_term: Nested, weights: tf.Tensor) -> Any:
        return self._global(sums, x_img, per_term, weights)

    def _forward_fn(
        self, stage: Stage, x: tf.Tensor, origin: tf.Tensor, box: tf.Tensor, per_term: Nested, weights: tf.Tensor
    ) -> Any:
        feats, nxt = self._run(stage, x, self.spec.layers)
        sums = self._stage_sums(stage, self._interiors(stage, feats, box), origin, box, per_term)
        out = self._interior(nxt, box, stage.next_stride) if stage.emit_next else tf.zeros([0], self.spec.dtype)
        return sums, out

    def _backward_fn(
        self,
        stage: Stage,
        x: tf.Tensor,
        origin: tf.Tensor,
        box: tf.Tensor,
        mults: Nested,
        d_next: tf.Tensor,
        per_term: Nested,
        weights: tf.Tensor,
    ) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x)
            feats, nxt = self._run(stage, x, self.spec.layers)
            interiors = self._interiors(stage, feats, box)
            nxt_int = self._interior(nxt, box, stage.next_stride) if stage.emit_next else None
        cots = self._cotangents(stage, interiors, origin, box, per_term, stage.slots, mults)
        outs, grads = [interiors[n] for n in cots], list(cots.values())
        if nxt_int is not None:
            outs.append(nxt_int)
            grads.append(tf.cast(d_next, nxt_int.dtype))
        if not outs:
            return tf.zeros_like(x, tf.float32)
        return tf.cast(tape.gradient(outs, x, output_gradients=grads), tf.float32)

    def _final(
        self, stage: Stage, x: tf.Tensor, x_img: tf.Tensor, prev: Sequence[TensorList], per_term: Nested, weights: Any
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, Nested]:
        """-> (terms [n], gradient w.r.t. x (float32), the pixel terms'
        gradient w.r.t. x_img, multipliers of the earlier stages' slots)."""
        origin = tf.zeros([2], tf.int32)
        box = tf.stack([0, tf.shape(x)[1], 0, tf.shape(x)[2]])
        with tf.GradientTape() as tape:
            tape.watch(x)
            feats, _ = self._run(stage, x, self.spec.layers)
        own = self._stage_sums(stage, feats, origin, box, per_term)
        earlier = stage.earlier
        by_slot = dict(zip(earlier, prev)) | dict(zip(stage.slots, own))
        values, mults, pixel_grad = self._global([by_slot[i] for i in range(len(self.slots))], x_img, per_term, weights)
        cots = self._cotangents(stage, feats, origin, box, per_term, stage.slots, [mults[i] for i in stage.slots])
        if cots:
            outs = [feats[n] for n in cots]
            grad = tf.cast(tape.gradient(outs, x, output_gradients=list(cots.values())), tf.float32)
        else:
            grad = tf.zeros_like(x, tf.float32)
        return values, grad, pixel_grad, [mults[i] for i in earlier]

    def _final_fn(
        self, stage: Stage, x: tf.Tensor, x_img: tf.Tensor, prev: Nested, per_term: Nested, weights: tf.Tensor
    ) -> Any:
        return self._final(stage, x, x_img, prev, per_term, weights)

    def _features_fn(
        self, stage: Stage, layers: tuple[str, ...], x: tf.Tensor, origin: tf.Tensor, box: tf.Tensor
    ) -> Any:
        mine = [n for n in layers if stage.first_block <= block_of(n) <= stage.last_block]
        feats, nxt = self._run(stage, x, mine)
        out = [self._interior(feats[n], box, stage.stride(n)) for n in mine]
        return out, self._interior(nxt, box, stage.next_stride) if stage.emit_next else tf.zeros([0])

    def _image_sums_fn(self, stage: Stage, term: int, x: tf.Tensor, origin: tf.Tensor, box: tf.Tensor) -> Any:
        owner = self.terms[term]
        mine = [(j, n) for j, n in enumerate(owner.layers) if stage.first_block <= block_of(n) <= stage.last_block]
        feats, nxt = self._run(stage, x, [n for _, n in mine])
        sums = [owner.image_sums(j, self._interior(feats[n], box, stage.stride(n))) for j, n in mine]
        return sums, self._interior(nxt, box, stage.next_stride) if stage.emit_next else tf.zeros([0])

    # ------------------------------------------------ the whole-image step

    def value_and_grad(self, x: tf.Tensor, targets: Sequence[Any]) -> tuple[tf.Tensor, tf.Tensor]:
        """(terms [n], gradient) of the whole image; traced inside the fused
        optimizer steps."""
        per_term, weights = targets
        values, grad, pixel_grad, _ = self._final(self.whole, x, x, [], per_term, weights)
        return values, grad + pixel_grad


def bind(fn: Callable[..., Any], *bound: Any) -> Callable[..., Any]:
    """`fn` with its leading arguments bound, as a plain function
    (tf.function needs a signature it can read)."""

    def bound_fn(*args: Any) -> Any:
        return fn(*bound, *args)

    stage = bound[0]
    bound_fn.__name__ = f"{getattr(fn, '__name__', 'fn')}_b{stage.first_block}_{stage.last_block}"
    return bound_fn


# The number of blocks, for callers that cut the network.
BLOCKS = len(BLOCK_SIZES)
