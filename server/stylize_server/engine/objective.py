"""The objective of one loss specification, compiled: the network split into
parts ("stages" of whole VGG blocks), and for each part the traced functions
that the whole-image step and the exact tiled evaluation (tiling.py) call.

A stage runs blocks b0..b1 on a tile of its input map (the image for b0 = 1,
else the pooled map that block b0 starts from) and takes its loss layers'
values on the tile's *interior* only, so that every feature position counts
once however the map is cut (see losses.py for why sums make this exact):

  forward   interior Gram sums and content error sums; the interior of the
            pooled map the next stage reads
  global    the loss from the totals: the terms, each style layer's
            cotangent multiplier M and each content layer's coefficient c
  backward  the same stage again under a tape; the vector-Jacobian product
            of its interior features (cotangents from M and c) and of its
            pooled output (the next stage's input gradient) with the tile
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

import threading
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from stylize_server.engine import losses
from stylize_server.engine.spec import LossSpec, Stage, Targets, gram_shape, stages_for
from stylize_server.engine.vgg import VGG19Features
from stylize_server.job.layout import BLOCK_CHANNELS, BLOCK_SIZES, block_of, channels

IMAGE = tf.TensorSpec([1, None, None, 3], tf.float32)
BOX = tf.TensorSpec([4], tf.int32)
ORIGIN = tf.TensorSpec([2], tf.int32)
SCALAR = tf.TensorSpec([], tf.float32)

TensorList = list[tf.Tensor]
Args = Sequence[Any]  # Targets.args(): content, style, guides lists; layer and loss weights

__all__ = ["IMAGE", "LossSpec", "Objective", "Stage", "Targets", "stages_for"]


class Objective:
    """The compiled loss of one LossSpec (see the module docstring)."""

    def __init__(self, vgg: VGG19Features, spec: LossSpec, xla: bool = False) -> None:
        self.vgg = vgg
        self.spec = spec
        self.xla = xla
        nc, ns = len(spec.content_layers), len(spec.style_layers)
        self.target_specs = (
            [tf.TensorSpec([1, None, None, channels(n)], tf.float32) for n in spec.content_layers],
            [tf.TensorSpec(gram_shape(channels(n), spec.guided), tf.float32) for n in spec.style_layers],
            [tf.TensorSpec([None, None, None], tf.float32) for _ in spec.style_layers] if spec.guided else [],
            tf.TensorSpec([nc], tf.float32),
            tf.TensorSpec([ns], tf.float32),
            tf.TensorSpec([3], tf.float32),
        )
        self.whole = stages_for(spec, ())[0]
        self._functions: dict[tuple[str, Stage | None], Callable[..., Any]] = {}
        self._lock = threading.Lock()

    # --------------------------------------------------------- signatures

    def _input_spec(self, stage: Stage) -> tf.TensorSpec:
        if stage.first_block == 1:
            return IMAGE
        return tf.TensorSpec([1, None, None, stage.in_channels], self.spec.dtype)

    def _style_sum_specs(self, indices: Sequence[int]) -> list[tf.TensorSpec]:
        return [self.target_specs[1][i] for i in indices]

    def _next_spec(self, stage: Stage) -> tf.TensorSpec:
        return tf.TensorSpec([1, None, None, BLOCK_CHANNELS[stage.last_block - 1]], tf.float32)

    def function(self, kind: str, stage: Stage | None = None) -> Callable[..., Any]:
        """The traced function `kind` (forward, backward, final, global,
        features, grams) of `stage`, compiled on first use."""
        key = (kind, stage)
        with self._lock:  # jobs on several threads may ask for it at once: trace it once
            if key not in self._functions:
                self._functions[key] = self._compile(kind, stage)
            return self._functions[key]

    def _compile(self, kind: str, stage: Stage | None) -> Callable[..., Any]:
        targets = list(self.target_specs)
        ns, nc = len(self.spec.style_layers), len(self.spec.content_layers)
        if kind == "global":
            signature = [self._style_sum_specs(range(ns)), [SCALAR] * nc, IMAGE, *targets]
            return self._trace(self._global_fn, signature)
        assert stage is not None
        x = self._input_spec(stage)
        earlier_style = [i for i in range(ns) if i < min(stage.style, default=ns)]
        earlier_content = [i for i in range(nc) if i < min(stage.content, default=nc)]
        bodies: dict[str, tuple[Callable[..., Any], list[Any]]] = {
            "forward": (functools_partial(self._forward_fn, stage), [x, ORIGIN, BOX, *targets]),
            "backward": (
                functools_partial(self._backward_fn, stage),
                [
                    x,
                    ORIGIN,
                    BOX,
                    self._style_sum_specs(stage.style),
                    [SCALAR] * len(stage.content),
                    self._next_spec(stage),
                    *targets,
                ],
            ),
            "final": (
                functools_partial(self._final_fn, stage),
                [x, IMAGE, self._style_sum_specs(earlier_style), [SCALAR] * len(earlier_content), *targets],
            ),
            "features": (functools_partial(self._features_fn, stage), [x, ORIGIN, BOX]),
            "grams": (functools_partial(self._grams_fn, stage), [x, ORIGIN, BOX]),
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

    @staticmethod
    def _global_slice(t: tf.Tensor, origin: tf.Tensor, box: tf.Tensor, k: int, spatial_first: bool) -> tf.Tensor:
        """The part of a whole-map target `t` (at relative stride k) under
        the tile's interior."""
        y0, y1 = (origin[0] + box[0]) // k, (origin[0] + box[1]) // k
        x0, x1 = (origin[1] + box[2]) // k, (origin[1] + box[3]) // k
        return t[:, y0:y1, x0:x1] if spatial_first else t[:, y0:y1, x0:x1, :]

    def _interiors(self, stage: Stage, feats: dict[str, tf.Tensor], box: tf.Tensor) -> dict[str, tf.Tensor]:
        return {n: self._interior(f, box, stage.stride(n)) for n, f in feats.items()}

    def _guide(self, guides: TensorList, i: int, stage: Stage, origin: tf.Tensor, box: tf.Tensor) -> tf.Tensor:
        """Style layer i's guides under the interior, as [R, positions]."""
        g = self._global_slice(guides[i], origin, box, stage.stride(self.spec.style_layers[i]), spatial_first=True)
        return tf.reshape(g, [tf.shape(g)[0], -1])

    def _content_target(self, targets: Args, i: int, stage: Stage, origin: tf.Tensor, box: tf.Tensor) -> tf.Tensor:
        k = stage.stride(self.spec.content_layers[i])
        return self._global_slice(targets[0][i], origin, box, k, spatial_first=False)

    def _stage_sums(
        self, stage: Stage, interiors: dict[str, tf.Tensor], origin: tf.Tensor, box: tf.Tensor, targets: Args
    ) -> tuple[TensorList, TensorList]:
        """Gram sums and content error sums of the stage's layers over the interior."""
        style_sums = []
        for i in stage.style:
            flat = losses.flatten(interiors[self.spec.style_layers[i]])
            guides = self._guide(targets[2], i, stage, origin, box) if self.spec.guided else None
            style_sums.append(losses.gram_sums(flat, guides))
        content_sums = [
            losses.squared_error_sum(
                interiors[self.spec.content_layers[i]], self._content_target(targets, i, stage, origin, box)
            )
            for i in stage.content
        ]
        return style_sums, content_sums

    def _cotangents(
        self,
        stage: Stage,
        interiors: dict[str, tf.Tensor],
        origin: tf.Tensor,
        box: tf.Tensor,
        targets: Args,
        mults: Sequence[tf.Tensor],
        coefs: Sequence[tf.Tensor],
    ) -> dict[str, tf.Tensor]:
        """The loss's gradient w.r.t. each interior feature map of the stage."""
        cots: dict[str, tf.Tensor] = {}
        for m, i in zip(mults, stage.style):
            name = self.spec.style_layers[i]
            f = interiors[name]
            guides = self._guide(targets[2], i, stage, origin, box) if self.spec.guided else None
            cot = tf.reshape(losses.style_cotangent(losses.flatten(f), m, guides), tf.shape(f))
            cots[name] = cots[name] + cot if name in cots else cot
        for c, i in zip(coefs, stage.content):
            name = self.spec.content_layers[i]
            cot = c * (interiors[name] - self._content_target(targets, i, stage, origin, box))
            cots[name] = cots[name] + cot if name in cots else cot
        return cots

    def _global(
        self, style_sums: Sequence[tf.Tensor], content_sums: Sequence[tf.Tensor], x_img: tf.Tensor, targets: Args
    ) -> tuple[tf.Tensor, TensorList, TensorList, tf.Tensor]:
        content_t, style_t, guides, cw, sw, weights = targets
        height, width = tf.shape(x_img)[1], tf.shape(x_img)[2]
        zero = tf.constant(0.0, tf.float32)
        style, mults = zero, []
        for i, name in enumerate(self.spec.style_layers):
            k = 2 ** (block_of(name) - 1)
            if self.spec.guided:
                counts = losses.guide_counts(guides[i])
            else:
                counts = tf.cast((height // k) * (width // k), tf.float32)
            loss, m = losses.style_of_sums(style_sums[i], counts, style_t[i], weights[1] * sw[i])
            style += loss
            mults.append(m)
        content, coefs = zero, []
        for i in range(len(self.spec.content_layers)):
            loss, c = losses.content_of_sums(
                content_sums[i], tf.cast(tf.size(content_t[i]), tf.float32), weights[0] * cw[i]
            )
            content += loss
            coefs.append(c)
        tv, tv_grad = losses.tv_loss_and_grad(x_img)
        return tf.stack([content, style, weights[2] * tv]), mults, coefs, weights[2] * tv_grad

    def _global_fn(self, style_sums: TensorList, content_sums: TensorList, x_img: tf.Tensor, *targets: Any) -> Any:
        return self._global(style_sums, content_sums, x_img, targets)

    def _forward_fn(self, stage: Stage, x: tf.Tensor, origin: tf.Tensor, box: tf.Tensor, *targets: Any) -> Any:
        feats, nxt = self._run(stage, x, self.spec.layers)
        style_sums, content_sums = self._stage_sums(stage, self._interiors(stage, feats, box), origin, box, targets)
        out = self._interior(nxt, box, stage.next_stride) if stage.emit_next else tf.zeros([0], self.spec.dtype)
        return style_sums, content_sums, out

    def _backward_fn(
        self,
        stage: Stage,
        x: tf.Tensor,
        origin: tf.Tensor,
        box: tf.Tensor,
        mults: TensorList,
        coefs: TensorList,
        d_next: tf.Tensor,
        *targets: Any,
    ) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x)
            feats, nxt = self._run(stage, x, self.spec.layers)
            interiors = self._interiors(stage, feats, box)
            nxt_int = self._interior(nxt, box, stage.next_stride) if stage.emit_next else None
        cots = self._cotangents(stage, interiors, origin, box, targets, mults, coefs)
        outs, grads = [interiors[n] for n in cots], list(cots.values())
        if nxt_int is not None:
            outs.append(nxt_int)
            grads.append(tf.cast(d_next, nxt_int.dtype))
        return tf.cast(tape.gradient(outs, x, output_gradients=grads), tf.float32)

    def _final(
        self,
        stage: Stage,
        x: tf.Tensor,
        x_img: tf.Tensor,
        prev_style: Sequence[tf.Tensor],
        prev_content: Sequence[tf.Tensor],
        targets: Args,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, TensorList, TensorList]:
        """-> (terms [3], gradient w.r.t. x (float32), tv gradient w.r.t. x_img,
        multipliers and coefficients of the earlier stages' layers)."""
        origin = tf.zeros([2], tf.int32)
        box = tf.stack([0, tf.shape(x)[1], 0, tf.shape(x)[2]])
        with tf.GradientTape() as tape:
            tape.watch(x)
            feats, _ = self._run(stage, x, self.spec.layers)
        style_sums, content_sums = self._stage_sums(stage, feats, origin, box, targets)
        terms, mults, coefs, tv_grad = self._global(
            list(prev_style) + style_sums, list(prev_content) + content_sums, x_img, targets
        )
        k_style, k_content = len(prev_style), len(prev_content)
        cots = self._cotangents(stage, feats, origin, box, targets, mults[k_style:], coefs[k_content:])
        outs = [feats[n] for n in cots]
        grad = tf.cast(tape.gradient(outs, x, output_gradients=list(cots.values())), tf.float32)
        return terms, grad, tv_grad, mults[:k_style], coefs[:k_content]

    def _final_fn(
        self,
        stage: Stage,
        x: tf.Tensor,
        x_img: tf.Tensor,
        prev_style: TensorList,
        prev_content: TensorList,
        *targets: Any,
    ) -> Any:
        return self._final(stage, x, x_img, prev_style, prev_content, targets)

    def _features_fn(self, stage: Stage, x: tf.Tensor, origin: tf.Tensor, box: tf.Tensor) -> Any:
        layers = [self.spec.content_layers[i] for i in stage.content]
        feats, nxt = self._run(stage, x, layers)
        out = [self._interior(feats[n], box, stage.stride(n)) for n in layers]
        return out, self._interior(nxt, box, stage.next_stride) if stage.emit_next else tf.zeros([0])

    def _grams_fn(self, stage: Stage, x: tf.Tensor, origin: tf.Tensor, box: tf.Tensor) -> Any:
        layers = [self.spec.style_layers[i] for i in stage.style]
        feats, nxt = self._run(stage, x, layers)
        sums = [losses.gram_sums(losses.flatten(self._interior(feats[n], box, stage.stride(n)))) for n in layers]
        return sums, self._interior(nxt, box, stage.next_stride) if stage.emit_next else tf.zeros([0])

    # ------------------------------------------------ the whole-image step

    def value_and_grad(self, x: tf.Tensor, targets: Sequence[Any]) -> tuple[tf.Tensor, tf.Tensor]:
        """(terms [3], gradient) of the whole image; traced inside the fused
        optimizer steps."""
        terms, grad, tv_grad, _, _ = self._final(self.whole, x, x, [], [], targets)
        return terms, grad + tv_grad


def functools_partial(fn: Callable[..., Any], stage: Stage) -> Callable[..., Any]:
    """`fn` with its stage bound, as a plain function (tf.function needs a
    signature it can read)."""

    def bound(*args: Any) -> Any:
        return fn(stage, *args)

    bound.__name__ = f"{getattr(fn, '__name__', 'fn')}_b{stage.first_block}_{stage.last_block}"
    return bound


# The number of blocks, for callers that cut the network.
BLOCKS = len(BLOCK_SIZES)
