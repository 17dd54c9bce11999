"""What the loss side of a job adds to its peak memory beyond the network's
activations (issue 17, item 3): the float32 maps of its loss layers, the
guided Gram's working set, and the masks' guides and per-region Grams.
TF-free; cost.py adds these to the optimization's peak.

* Loss maps. Every loss layer's feature map is float32 (vgg.py) and its
  cotangent is a map of the same size, held until the backward pass. The
  profile's `keep` was fitted with the default layers, so it covers their
  maps; what a job's layers add beyond those is counted here (the early
  layers are the widest: relu1_x holds 64 values per pixel, relu5_1 2).
* Guided Grams (losses.guided_gram_sums, guided_style_cotangent) loop over
  the regions, one region at a time: where the unguided gradient holds F M,
  the guided one holds the accumulator, one region's F M_r, its T_r²-weighted
  copy and the accumulator's next value at once: three more maps of the
  widest style layer, whatever the number of regions.
* Per region: its guide at the output size (the decoded mask resized, the
  scale's plane, and the plane's float32 copy before it is pooled), the
  guide at each style layer's resolution (a tensor per layer), and its
  [C, C] Grams at every style layer (the target, the sums and the
  multiplier are held at once).

Measured (tests/support/maskmem.py, CPU, peak RSS rise of the job): before
the loop, 8 regions at 256 px used 2.45x the estimate (early layers 2.98x);
see the masks memory table in the benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterable

from .layout import block_of, channels, stride
from .options import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, JobOptions

VALUE_BYTES = 4  # the loss side is float32 in both precisions
REGION_PLANES = 3.0  # output-size guides per region: the mask resized, the scale's plane, its float32 copy
GUIDED_MAPS = 3.0  # the guided loop's working set, in maps of the widest style layer
GRAM_COPIES = 3.0  # per region and style layer: target, sums, multiplier
FITTED = tuple(n for n, _ in DEFAULT_CONTENT_LAYERS + DEFAULT_STYLE_LAYERS)


def values_per_pixel(name: str) -> float:
    """Values of layer `name`'s feature map per input pixel."""
    return channels(name) / stride(name) ** 2


def _maps(layers: Iterable[str], first_block: int, last_block: int) -> float:
    return sum(values_per_pixel(n) for n in set(layers) if first_block <= block_of(n) <= last_block)


def loss_values_per_pixel(options: JobOptions, guided: bool, first_block: int, last_block: int) -> float:
    """float32 values per input pixel that the loss layers in blocks
    first_block..last_block hold beyond what `keep` covers (see the module
    docstring)."""
    style = [n for n, _ in options.style_layers]
    mine = _maps(style + [n for n, _ in options.content_layers], first_block, last_block)
    extra = max(0.0, mine - _maps(FITTED, first_block, last_block))
    if guided:
        extra += GUIDED_MAPS * max(
            (values_per_pixel(n) for n in style if first_block <= block_of(n) <= last_block), default=0.0
        )
    return extra


def region_bytes(height: int, width: int, options: JobOptions, regions: int, guided: bool) -> int:
    """The regions' guides and Grams (0 for an unguided job)."""
    if not guided:
        return 0
    style = [n for n, _ in options.style_layers]
    planes = REGION_PLANES + sum(1.0 / stride(n) ** 2 for n in style)
    grams = GRAM_COPIES * sum(channels(n) ** 2 for n in style)
    return int(max(1, regions) * (height * width * planes + grams) * VALUE_BYTES)
