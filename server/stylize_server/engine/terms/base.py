"""What a loss term is: one component that declares, in one place, its name,
its weight option, the layers it reads, the targets it needs, the per-tile
sums it accumulates, its value and gradient from those sums, and its share of
the cost model. The objective (objective.py), the tiled evaluator
(tiling.py), the optimizers, the progress frames, the client and the CLI
iterate over terms; none of them names one.

A term that reads feature maps is evaluated in three steps, which is what
keeps it exact under tiling (see tiling.py):

  tile_sums  per layer and tile: sums over the tile's *interior* positions
             (every feature position counts once however the map is cut)
  reduce     once, from the totals: the term's value and, per layer, the
             "multipliers" its gradient needs (the gradient w.r.t. the sums)
  cotangent  per layer and tile: dL/dF at the interior positions, from the
             multipliers, pushed back through the network by the caller

A term on the image's pixels (`pixel`) sees the whole image at once (the
image is never tiled, only the network is). Everything a term computes is
float32 whatever precision the network runs in.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import tensorflow as tf

from stylize_server.engine import regions as region_plan
from stylize_server.job import layout
from stylize_server.job.options import JobOptions, Layers
from stylize_server.job.temporal import Temporal

TensorList = list[tf.Tensor]


@dataclass(frozen=True)
class View:
    """Where a tile's interior lies: `origin` (the tile's first position in
    its stage's input map), `box` (its interior, relative to the tile) and the
    layer's stride relative to that map. Terms whose targets are whole maps
    (content features, guides) read their part under the interior with it."""

    origin: tf.Tensor
    box: tf.Tensor
    stride: int

    def crop(self, whole: tf.Tensor, spatial_first: bool = False) -> tf.Tensor:
        """The part of `whole` ([1, h, w, C], or [R, h, w] with spatial_first)
        at the layer's resolution under the tile's interior."""
        k, o, b = self.stride, self.origin, self.box
        y0, y1 = (o[0] + b[0]) // k, (o[0] + b[1]) // k
        x0, x1 = (o[1] + b[2]) // k, (o[1] + b[3]) // k
        return whole[:, y0:y1, x0:x1] if spatial_first else whole[:, y0:y1, x0:x1, :]


class TargetContext(Protocol):
    """What a term may use to build its targets at one scale (targets.py)."""

    options: JobOptions
    shape: tuple[int, int]  # the scale's (height, width)
    content: np.ndarray  # the content at the scale (H×W×3)
    styles: Sequence[np.ndarray]  # the colour-controlled style images, full size
    regions: Sequence[region_plan.Region]
    guided: bool
    temporal: Temporal | None  # a video frame's warped previous output, else None

    def phase(self, name: str) -> bool:
        """Announce a piece of work; True when a stop was asked for."""
        ...

    def features(self, layers: Sequence[str], image: np.ndarray) -> TensorList:
        """The float32 feature maps [1, h, w, C] of `layers` for `image`, in tiles."""
        ...

    def image_sums(self, term: Term, image: np.ndarray) -> list[TensorList]:
        """`term.image_sums` of `image`, per layer of the term, summed over tiles."""
        ...


class Term(abc.ABC):
    """One loss term of a compiled objective, bound to its layers (canonical,
    network order) and to whether the job has mask regions (`guided`)."""

    name: ClassVar[str]  # its key in Losses.terms on the wire
    weight_option: ClassVar[str]  # the option that weights it (JobOptions field or term option)
    layers_option: ClassVar[str | None] = None  # the option listing its (layer, weight) pairs
    option_defaults: ClassVar[Mapping[str, object]] = {}  # the term options it owns

    def __init__(self, layers: tuple[str, ...], guided: bool) -> None:
        self.layers = layers
        self.guided = guided

    # ----------------------------------------------------- from the options

    @classmethod
    def active(cls, options: JobOptions) -> bool:
        """Whether a job with these options has this term."""
        return True

    @classmethod
    def check(cls, options: JobOptions) -> None:
        """Refuse this term's options where out of range (InvalidArgument
        naming the option and the range); called before a job is planned.
        Most terms own no option to check."""
        return None

    @classmethod
    def weight(cls, options: JobOptions) -> float:
        return float(options.value(cls.weight_option, cls.option_defaults))  # type: ignore[arg-type]

    @classmethod
    def layer_weights(cls, options: JobOptions) -> Layers:
        if cls.layers_option is None:
            return ()
        found = options.value(cls.layers_option, cls.option_defaults)
        return found if isinstance(found, tuple) else ()

    # ---------------------------------------------------- compiled signatures

    @abc.abstractmethod
    def target_specs(self) -> list[tf.TensorSpec]:
        """The term's per-scale targets, in the order `targets` returns them."""

    def sum_specs(self, j: int) -> list[tf.TensorSpec]:
        """What layer j accumulates per tile (none for a pixel term)."""
        return []

    def mult_specs(self, j: int) -> list[tf.TensorSpec]:
        """The multipliers `reduce` hands layer j's cotangent."""
        return []

    # ------------------------------------------------------ compiled bodies

    def tile_sums(self, j: int, features: tf.Tensor, view: View, targets: Sequence[tf.Tensor]) -> TensorList:
        """Layer j's sums over the interior `features` [1, h, w, C]."""
        return []

    def reduce(
        self, sums: Sequence[Sequence[tf.Tensor]], targets: Sequence[tf.Tensor], image_hw: tf.Tensor, weight: tf.Tensor
    ) -> tuple[tf.Tensor, list[TensorList]]:
        """(weighted value, multipliers per layer) from the totals of every layer."""
        return tf.constant(0.0, tf.float32), [[] for _ in self.layers]

    def cotangent(
        self, j: int, features: tf.Tensor, view: View, targets: Sequence[tf.Tensor], mults: Sequence[tf.Tensor]
    ) -> tf.Tensor | None:
        """dL/dF for layer j's interior `features`; None when it adds nothing."""
        return None

    def pixel(self, image: tf.Tensor, targets: Sequence[tf.Tensor], weight: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(weighted value, gradient) of a term on the whole [1, H, W, 3] image."""
        return tf.constant(0.0, tf.float32), tf.zeros_like(image)

    @property
    def on_pixels(self) -> bool:
        """Whether `pixel` contributes (the objective skips it otherwise)."""
        return type(self).pixel is not Term.pixel

    def image_sums(self, j: int, features: tf.Tensor) -> TensorList:
        """Layer j's sums of an unguided image (a style image's statistics),
        for terms whose targets are statistics of other images."""
        raise NotImplementedError(f"{self.name} takes no image statistics")

    # ------------------------------------------------------------- host side

    @abc.abstractmethod
    def targets(self, ctx: TargetContext) -> tuple[tf.Tensor, ...] | None:
        """The term's targets at the context's scale; None when a stop was
        asked for meanwhile."""

    def placeholder_targets(self, height: int, width: int) -> tuple[tf.Tensor, ...]:
        """Zero targets of the right shapes for an image of height × width
        (timing and tracing without a job)."""
        out = []
        for spec in self.target_specs():
            shape = [1 if d is None else d for d in spec.shape.as_list()]
            out.append(tf.zeros(shape, spec.dtype))
        return tuple(out)

    # ------------------------------------------------------------ cost model

    @classmethod
    def state_values_per_pixel(cls, options: JobOptions, regions: int) -> float:
        """Image-sized values the term keeps during a job (targets, guides),
        per output pixel, in float32: its share of the cost model's memory."""
        return 0.0

    @classmethod
    def macs_per_pixel(cls, options: JobOptions, regions: int) -> float:
        """Multiply-adds per output pixel and iteration beyond the network's
        own passes: its share of the cost model's time."""
        return 0.0

    @classmethod
    def working_values_per_pixel(cls, options: JobOptions, regions: int, first_block: int, last_block: int) -> float:
        """float32 values per pixel of a piece in flight that the term holds
        at its layers in blocks first..last: each layer's map (float32 in
        every precision) and its cotangent's working set. By default, the
        maps of its layers there."""
        layers = {n for n, _ in cls.layer_weights(options)}
        return sum(layer_values_per_pixel(n) for n in layers if first_block <= layout.block_of(n) <= last_block)

    @classmethod
    def fixed_values(cls, options: JobOptions, regions: int) -> float:
        """float32 values the term keeps whatever the image's size (its [C, C] matrices)."""
        return 0.0

    @classmethod
    def fixed_macs(cls, options: JobOptions, regions: int) -> float:
        """Multiply-adds per iteration whatever the image's size (work on its [C, C] matrices)."""
        return 0.0


def layer_values_per_pixel(name: str) -> float:
    """Values of layer `name`'s feature map per image pixel."""
    return layout.channels(name) / layout.stride(name) ** 2


def weights_tensor(layers: Layers) -> tf.Tensor:
    return tf.constant([w for _, w in layers], tf.float32)


Factory = Callable[[tuple[str, ...], bool], Term]
