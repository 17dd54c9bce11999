"""Spatial control (Gatys et al. 2017, sec. 4) without TensorFlow: which
styles apply where, and each region's guide at every layer's resolution.

* Styles with the same mask (equal decoded arrays, compared by bytes) share a
  region and blend there, their weights normalized within the region.
* The styles without a mask form one region whose guide is
  clip(1 - Σ masks, 0, 1): where no mask covers the image, the unmasked styles
  apply (`unmasked_region = styles`). With no mask at all that guide is all
  ones, the plain loss. With `unmasked_region = content` the uncovered part
  gets no style term (validation refuses unmasked styles in that mode).
* A region with no style of positive weight, or with no area, is dropped.

Guides follow the network to each layer by the paper's simple downsampling:
the same 2x2 average pooling (VALID, stride 2) the network applies, once per
block. Every boundary pixel stays under some style term (the eroded "inside"
variant would take conv4/conv5 coverage away from small regions at
256-512 px), and a tile's slice of a downsampled guide is exactly the
whole-image guide there, so masks are exact under tiling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stylize_server.job.layout import block_of
from stylize_server.job.options import InputShapes, StyleSource, UnmaskedRegion


@dataclass(frozen=True)
class Region:
    """Where a group of styles applies. `guide` is H×W float32 in 0..1 at the
    output size, or None for everywhere; `styles` are (style index, blend
    weight normalized within the region), positive weights only."""

    guide: np.ndarray | None
    styles: tuple[tuple[int, float], ...]


def _key(mask: np.ndarray) -> tuple[tuple[int, ...], str, bytes]:
    return mask.shape, str(mask.dtype), mask.tobytes()


def _normalized(members: list[tuple[int, float]]) -> tuple[tuple[int, float], ...]:
    positive = [(i, w) for i, w in members if w > 0]
    total = sum(w for _, w in positive)
    return tuple((i, w / total) for i, w in positive)


def plan_regions(styles: Sequence[StyleSource], unmasked: UnmaskedRegion, shape: tuple[int, int]) -> tuple[Region, ...]:
    """The job's regions, masks resized to `shape` (the output's H, W).
    No mask at all: one region with guide None (the unguided loss)."""
    from stylize_server.job.images import resize_float

    if all(s.mask is None for s in styles):
        return (Region(None, _normalized([(i, float(s.weight)) for i, s in enumerate(styles)])),)
    groups: dict[tuple[tuple[int, ...], str, bytes], tuple[np.ndarray, list[tuple[int, float]]]] = {}
    unmasked_styles: list[tuple[int, float]] = []
    for i, style in enumerate(styles):
        if style.mask is None:
            unmasked_styles.append((i, float(style.weight)))
            continue
        key = _key(style.mask)
        if key not in groups:
            guide = np.clip(resize_float(style.mask.astype(np.float32), shape), 0.0, 1.0)
            groups[key] = (guide, [])
        groups[key][1].append((i, float(style.weight)))
    regions = [Region(guide, _normalized(members)) for guide, members in groups.values()]
    if unmasked is UnmaskedRegion.STYLES and unmasked_styles:
        covered = np.sum([guide for guide, _ in groups.values()], axis=0)
        rest = np.clip(1.0 - covered, 0.0, 1.0).astype(np.float32)
        regions.append(Region(rest, _normalized(unmasked_styles)))
    return tuple(r for r in regions if r.styles and (r.guide is None or float(r.guide.max()) > 0.0))


def count_regions(styles: Sequence[StyleSource], unmasked: UnmaskedRegion) -> int:
    """How many regions the decoded masks make (before empty ones are
    dropped): distinct masks, plus the unmasked styles' region."""
    masks = {_key(s.mask) for s in styles if s.mask is not None}
    if not masks:
        return 1
    rest = unmasked is UnmaskedRegion.STYLES and any(s.mask is None for s in styles)
    return len(masks) + int(rest)


def region_count(shapes: InputShapes, unmasked: UnmaskedRegion) -> int:
    """An upper bound of the regions from the headers alone (masks not yet
    decoded, so equal masks cannot be told apart): what the cost model uses."""
    masked = sum(1 for m in shapes.masks if m is not None)
    if masked == 0:
        return 1
    rest = 1 if unmasked is UnmaskedRegion.STYLES and masked < len(shapes.masks) else 0
    return masked + rest


def pool_guide(guide: np.ndarray) -> np.ndarray:
    """One 2x2 average pooling of stride 2, VALID, as the network's: the
    last row/column of an odd side is dropped, as there."""
    h, w = guide.shape[-2] // 2, guide.shape[-1] // 2
    g = guide[..., : 2 * h, : 2 * w].astype(np.float32)
    return 0.25 * (g[..., 0::2, 0::2] + g[..., 1::2, 0::2] + g[..., 0::2, 1::2] + g[..., 1::2, 1::2])


def guides_at_scale(regions: Sequence[Region], shape: tuple[int, int]) -> np.ndarray:
    """[R, H, W] float32 guides at one scale's image size (H, W)."""
    from stylize_server.job.images import resize_float

    planes = [
        np.ones(shape, np.float32) if r.guide is None else np.clip(resize_float(r.guide, shape), 0.0, 1.0)
        for r in regions
    ]
    if not planes:
        return np.zeros((0, *shape), np.float32)
    return np.stack(planes).astype(np.float32)


def guides_per_layer(guides: np.ndarray, layers: Sequence[str]) -> list[np.ndarray]:
    """The [R, H, W] image-resolution guides downsampled to each layer's
    block: [R, h_l, w_l] per layer, in order."""
    by_block = [guides.astype(np.float32)]
    for _ in range(max((block_of(n) for n in layers), default=1) - 1):
        by_block.append(pool_guide(by_block[-1]))
    return [by_block[block_of(n) - 1] for n in layers]
