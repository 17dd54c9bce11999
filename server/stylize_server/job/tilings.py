"""How one scale may run, for the cost model (cost.py): the whole image at
once, or the network cut after block 2 or 3 with the part before the cut in
tiles of T px (halo: the reach of that part's deepest layer) and the part
after it whole or in tiles of its own (engine/tiling.py runs them). A
`Run` is one scale laid out one way: its parts, each with VGG-19's figures
for its blocks (layout.py) and the pixels each of its pieces covers, and the
largest piece of each style's pass, so that pricing it is arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

from stylize_server.job import layout
from stylize_server.job.geometry import ScaleShape
from stylize_server.job.types import ScaleEstimate

# Tiles tried from the largest down when the whole image does not fit; all
# multiples of the pooling grid.
TILE_SIZES = (1024, 768, 512, 384, 256, 192, 128)
# Where the network may be cut: after block 2 (the deep part holds 202 of the
# 610 activation values per pixel to relu5_1, but carries 74% of the work, run
# once) or after block 3 (74 values per pixel, 38% of the work).
SPLITS = (3, 2)


@dataclass(frozen=True)
class Tiling:
    """How one scale runs: tiles of `tile` px (0: the whole image); cut after
    block `split` (0: not cut), the part after the cut in tiles of `deep_tile` px (0: whole)."""

    tile: int = 0
    split: int = 0
    deep_tile: int = 0


@dataclass(frozen=True)
class Part:
    """A run of blocks as the cost model sees it: its figures per pixel of
    the image, and the pixels each piece in flight covers (one piece when
    whole; each tile with its halo, clipped to the image)."""

    first_block: int
    last_block: int
    deepest: str  # the deepest layer it computes
    tile: int  # px; 0 = whole
    halo: int  # px: its stage halo on the pooling grid
    macs_per_pixel: float  # the forward pass's multiply-adds
    values_per_pixel: float  # the activation values its backward pass keeps
    emitted_per_pixel: float  # the pooled map it hands to the next part (0.0 for the last)
    pieces: tuple[int, ...]


@dataclass(frozen=True)
class Run:
    """One scale run one way: the tiling as it applies at this size (a tile
    as large as the image is the whole image), its parts, its tiles (rows x
    columns of the first part's), the values per pixel of the map handed
    between the parts when cut (0.0 uncut) and, per style, the pixels of the
    largest piece of its forward pass (in the same tiles when the scale is tiled)."""

    tiling: Tiling
    parts: tuple[Part, ...]
    tiles: int
    between_per_pixel: float
    style_pieces: tuple[int, ...]


def run(scale: ScaleShape, deepest: str, tiling: Tiling) -> Run:
    height, width = scale.height, scale.width
    if tiling.tile and tiling.tile >= max(height, width):
        tiling = Tiling()
    if tiling.deep_tile and tiling.deep_tile >= max(height, width):
        tiling = Tiling(tiling.tile, tiling.split, 0)
    rows, cols = tile_grid(height, width, tiling.tile) if tiling.tile else (1, 1)
    halo = layout.halo(deepest) if tiling.tile else 0
    between = layout.pooled_values_per_pixel(tiling.split) if tiling.tile and tiling.split else 0.0
    styles = tuple(max(extents(h, w, tiling.tile, halo)) for h, w in scale.styles)
    return Run(tiling, tuple(parts(deepest, tiling, height, width)), rows * cols, between, styles)


def parts(deepest: str, tiling: Tiling, height: int, width: int) -> list[Part]:
    """The parts of an image of `height` x `width` run with `tiling`."""
    last = layout.block_of(deepest)
    if tiling.tile <= 0:
        return [_part(1, deepest, 0, False, height, width)]
    if not tiling.split or tiling.split >= last:
        return [_part(1, deepest, tiling.tile, False, height, width)]
    cut = layout.last_conv(tiling.split).replace("conv", "relu")
    return [
        _part(1, cut, tiling.tile, True, height, width),
        _part(tiling.split + 1, deepest, tiling.deep_tile, False, height, width),
    ]


def _part(first_block: int, deepest: str, tile: int, emits_next: bool, height: int, width: int) -> Part:
    last = layout.block_of(deepest)
    unit = 1 << (first_block - 1)
    align = max(1, layout.ALIGN >> (first_block - 1))
    reach = layout.stage_reach(deepest, first_block)
    halo = -(-reach // align) * align * unit
    return Part(
        first_block=first_block,
        last_block=last,
        deepest=deepest,
        tile=tile,
        halo=halo,
        macs_per_pixel=layout.conv_macs_per_pixel(deepest, first_block),
        values_per_pixel=layout.activation_values_per_pixel(deepest, first_block),
        emitted_per_pixel=layout.pooled_values_per_pixel(last) if emits_next else 0.0,
        pieces=tuple(extents(height, width, tile, halo)),
    )


def tile_grid(height: int, width: int, tile: int) -> tuple[int, int]:
    """(rows, columns) of tiles of interior side `tile`."""
    return -(-height // tile), -(-width // tile)


def extents(height: int, width: int, tile: int, halo: int) -> list[int]:
    """Pixels each tile covers, halo included (clipped to the image)."""
    if tile <= 0 or tile >= max(height, width):
        return [height * width]
    rows, cols = tile_grid(height, width, tile)
    sides_y = [min(height, (r + 1) * tile + halo) - max(0, r * tile - halo) for r in range(rows)]
    sides_x = [min(width, (c + 1) * tile + halo) - max(0, c * tile - halo) for c in range(cols)]
    return [y * x for y in sides_y for x in sides_x]


def tilings(deepest: str, tile_setting: int) -> list[Tiling]:
    """The ways a scale may run: whole (unless tiles are forced), then each
    tile size cut after block 3 or 2 (the part after the cut whole or tiled)
    and uncut."""
    if tile_setting == 0:
        return [Tiling()]
    sizes = [tile_setting] if tile_setting > 0 else list(TILE_SIZES)
    out = [] if tile_setting > 0 else [Tiling()]
    last = layout.block_of(deepest)
    for tile in sizes:
        for split in SPLITS:
            if split < last:
                out += [Tiling(tile, split, 0), Tiling(tile, split, tile)]
        out.append(Tiling(tile))
    return out


def describe(scale: ScaleEstimate) -> str:
    """How a scale runs, for logs: "whole" or "tiles 512 px, cut after block 3 (rest whole)"."""
    if not scale.tile_size:
        return "whole"
    text = f"{scale.tiles} tiles of {scale.tile_size} px"
    if scale.split_block:
        rest = f"tiles of {scale.deep_tile_size} px" if scale.deep_tile_size else "whole"
        text += f", cut after block {scale.split_block} (rest {rest})"
    return text
