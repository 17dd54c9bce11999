"""What the style statistics terms (gram.py, meancov.py) share: the style
images at a scale, each once with the regions that use it; the regions'
guides per style layer; a layer's guides under a tile's interior; and a
layer's count of positions. Each term computes its own statistics from them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf

from stylize_server.engine import prepare
from stylize_server.engine import regions as job_regions
from stylize_server.engine.terms.base import TargetContext, View
from stylize_server.job import layout
from stylize_server.job.options import style_shape

# (region index, the style's weight in that region)
Uses = list[tuple[int, float]]


def style_images(ctx: TargetContext) -> Iterator[tuple[np.ndarray, Uses] | None]:
    """Each style image the regions use, once, resized for the scale, with
    every (region, weight) that uses it. Yields None when a stop came between
    two images: the caller returns without targets."""
    wanted = sorted({i for r in ctx.regions for i, _ in r.styles})
    for count, index in enumerate(wanted):
        if ctx.phase(f"style {count + 1} of {len(wanted)}"):
            yield None
            return
        style = ctx.styles[index]
        shaped = prepare.resize(style, style_shape(style.shape[:2], ctx.shape, ctx.options.style_scale))
        uses = [
            (r, weight) for r, region in enumerate(ctx.regions) for member, weight in region.styles if member == index
        ]
        yield shaped, uses


def region_guides(ctx: TargetContext, layers: Sequence[str]) -> list[tf.Tensor]:
    """Per style layer, the regions' guides at its resolution [R, h, w]."""
    planes = job_regions.guides_at_scale(ctx.regions, ctx.shape)
    return [tf.constant(g) for g in job_regions.guides_per_layer(planes, layers)]


def guide_rows(guides: tf.Tensor, view: View) -> tf.Tensor:
    """A layer's guides under the tile's interior, as [R, positions]."""
    g = view.crop(guides, spatial_first=True)
    return tf.reshape(g, [tf.shape(g)[0], -1])


def positions(name: str, height: int, width: int) -> int:
    """Feature positions of layer `name` on a height x width image."""
    k = layout.stride(name)
    return (height // k) * (width // k)
