"""The exact tiled objective (issue 12; after Galerne et al., "Scaling
Painting Style Transfer", arXiv 2212.13459): the loss and gradient of the
whole image, computed with memory bounded by a tile.

The network is cut into stages (objective.py), e.g. blocks 1-3 | blocks 4-5.
Each stage runs on tiles of its input map: interiors that partition the map
on the coarsest pooling grid, each with a halo of at least the reach of the
deepest layer the stage computes (layout.stage_reach), so that every interior
feature is the whole image's. One evaluation:

1. forward, stage by stage: accumulate each layer's Gram sums and content
   error sums over the interiors; assemble the next stage's input from the
   interiors of the pooled output (1/64 of the pixels after block 3);
2. the loss from the totals, and its gradient w.r.t. the sums (global);
3. backward, last stage first: each tile again under a tape, and the
   vector-Jacobian product of its interior features (cotangents from step 2)
   and of its pooled output (the next stage's input gradient) with the tile;
   tile gradients overlap in the halos and are summed.

A last stage run whole fuses 1-3 for itself and keeps its tape: the deep,
low-resolution blocks cost no recomputation. The whole image is the case of
one stage run whole, which the optimizers fuse further with their update.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from stylize_server.engine.objective import Objective, Stage, Targets, stages_for
from stylize_server.engine.spec import WHOLE, TileLayout
from stylize_server.job.layout import ALIGN, BLOCK_CHANNELS, block_of, last_conv, layer_index, stage_reach

ShouldStop = Callable[[], bool]

__all__ = ["WHOLE", "Evaluator", "Stopped", "Tile", "TileLayout", "tile_grid"]


@dataclasses.dataclass(frozen=True)
class Tile:
    """One tile of a stage's input map, in that map's positions: the interior
    it owns and the extent (interior plus halo, clipped to the map) it reads."""

    row: int
    col: int
    interior: tuple[int, int, int, int]  # y0, y1, x0, x1
    extent: tuple[int, int, int, int]

    @property
    def origin(self) -> tf.Tensor:
        return tf.constant([self.extent[0], self.extent[2]], tf.int32)

    @property
    def box(self) -> tf.Tensor:
        y0, y1, x0, x1 = self.interior
        return tf.constant([y0 - self.extent[0], y1 - self.extent[0], x0 - self.extent[2], x1 - self.extent[2]])

    def read(self, t: tf.Tensor) -> tf.Tensor:
        e = self.extent
        return t[:, e[0] : e[1], e[2] : e[3], :]


def stage_halo(stage: Stage, deepest_wanted: str) -> int:
    """Halo of a stage's tiles, in its input's positions, on its pooling grid."""
    deepest = last_conv(stage.last_block) if stage.emit_next else deepest_wanted
    align = stage_align(stage)
    return -(-stage_reach(deepest, stage.first_block) // align) * align


def stage_align(stage: Stage) -> int:
    """The coarsest pooling grid (16 image pixels) in the stage input's positions."""
    return max(1, ALIGN >> (stage.first_block - 1))


def tile_grid(height: int, width: int, tile: int, halo: int) -> list[Tile]:
    """Tiles of interior side `tile` (0: one tile) over a height x width map."""
    if tile <= 0 or tile >= max(height, width):
        return [Tile(0, 0, (0, height, 0, width), (0, height, 0, width))]
    tiles = []
    for r, y0 in enumerate(range(0, height, tile)):
        for c, x0 in enumerate(range(0, width, tile)):
            y1, x1 = min(height, y0 + tile), min(width, x0 + tile)
            extent = (max(0, y0 - halo), min(height, y1 + halo), max(0, x0 - halo), min(width, x1 + halo))
            tiles.append(Tile(r, c, (y0, y1, x0, x1), extent))
    return tiles


def _assemble(pieces: dict[tuple[int, int], tf.Tensor]) -> tf.Tensor:
    rows = sorted({r for r, _ in pieces})
    cols = sorted({c for _, c in pieces})
    return tf.concat([tf.concat([pieces[(r, c)] for c in cols], axis=2) for r in rows], axis=1)


def _add(total: list[list[tf.Tensor]] | None, parts: Sequence[Sequence[tf.Tensor]]) -> list[list[tf.Tensor]]:
    """Slot by slot, tensor by tensor: the running totals plus a tile's sums."""
    if total is None:
        return [list(p) for p in parts]
    return [[a + b for a, b in zip(ta, pa)] for ta, pa in zip(total, parts)]


class Stopped(Exception):
    """A stop was requested between tiles."""


class Evaluator:
    """The objective of one spec at one scale, whole or tiled."""

    def __init__(self, objective: Objective, layout: TileLayout) -> None:
        self.objective = objective
        self.layout = layout
        spec = objective.spec
        self.stages = stages_for(spec, layout.splits)
        sizes = list(layout.tiles) + [layout.tiles[-1]] * (len(self.stages) - len(layout.tiles))
        deepest = max(spec.layers, key=layer_index)
        self._plan: list[tuple[Stage, int, int]] = []  # stage, tile side and halo in its input's positions
        for stage, size in zip(self.stages, sizes):
            unit = 1 << (stage.first_block - 1)
            align = stage_align(stage)
            side = 0 if size <= 0 else max(align, size // unit // align * align)
            self._plan.append((stage, side, stage_halo(stage, deepest)))

    # ------------------------------------------------------------ helpers

    def _tiles(self, index: int, x: tf.Tensor) -> list[Tile]:
        _, side, halo = self._plan[index]
        return tile_grid(int(x.shape[1]), int(x.shape[2]), side, halo)

    @staticmethod
    def _check(should_stop: ShouldStop | None) -> None:
        if should_stop is not None and should_stop():
            raise Stopped

    def _forward(
        self, index: int, x: tf.Tensor, args: tuple[Any, ...], should_stop: ShouldStop | None
    ) -> tuple[dict[int, list[tf.Tensor]], tf.Tensor | None]:
        """The stage's slots' sums over its tiles, and the next stage's input."""
        stage = self._plan[index][0]
        fn = self.objective.function("forward", stage)
        total: list[list[tf.Tensor]] | None = None
        pieces: dict[tuple[int, int], tf.Tensor] = {}
        for tile in self._tiles(index, x):
            self._check(should_stop)
            sums, nxt = fn(tile.read(x), tile.origin, tile.box, *args)
            total = _add(total, sums)
            pieces[(tile.row, tile.col)] = nxt
        return dict(zip(stage.slots, total or [])), _assemble(pieces) if stage.emit_next else None

    def _backward(
        self,
        index: int,
        x: tf.Tensor,
        mults: Sequence[Sequence[tf.Tensor]],
        d_next: tf.Tensor | None,
        args: tuple[Any, ...],
        should_stop: ShouldStop | None,
    ) -> tf.Tensor:
        stage = self._plan[index][0]
        fn = self.objective.function("backward", stage)
        tiles = self._tiles(index, x)
        nested = [list(m) for m in mults]
        if len(tiles) == 1:
            self._check(should_stop)
            t = tiles[0]
            return fn(x, t.origin, t.box, nested, self._next_part(stage, t, d_next), *args)
        total = tf.Variable(tf.zeros(x.shape, tf.float32), trainable=False)
        for tile in tiles:
            self._check(should_stop)
            d = self._next_part(stage, tile, d_next)
            g = fn(tile.read(x), tile.origin, tile.box, nested, d, *args)
            e = tile.extent
            window = total[:, e[0] : e[1], e[2] : e[3], :]
            total[:, e[0] : e[1], e[2] : e[3], :].assign(window + g)
        return tf.convert_to_tensor(total)

    def _next_part(self, stage: Stage, tile: Tile, d_next: tf.Tensor | None) -> tf.Tensor:
        if d_next is None:
            return tf.zeros([1, 0, 0, BLOCK_CHANNELS[stage.last_block - 1]], tf.float32)
        k = stage.next_stride
        y0, y1, x0, x1 = tile.interior
        return d_next[:, y0 // k : y1 // k, x0 // k : x1 // k, :]

    # --------------------------------------------------------- evaluation

    def value_and_grad(
        self, x: tf.Tensor, targets: Targets, should_stop: ShouldStop | None = None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """(terms [n], gradient) at `x`; raises Stopped between tiles."""
        args = targets.args
        objective = self.objective
        maps: list[tf.Tensor] = [x]
        sums: dict[int, list[tf.Tensor]] = {}
        for index in range(len(self._plan) - 1):
            found, nxt = self._forward(index, maps[-1], args, should_stop)
            sums.update(found)
            assert nxt is not None
            maps.append(nxt)
        last = self._plan[-1][0]
        self._check(should_stop)
        mults: dict[int, list[tf.Tensor]] = {}
        if len(self._tiles(len(self._plan) - 1, maps[-1])) == 1:
            earlier = last.earlier
            values, grad, pixel_grad, prev = objective.function("final", last)(
                maps[-1], x, [sums[i] for i in earlier], *args
            )
            mults.update(zip(earlier, prev))
        else:
            found, _ = self._forward(len(self._plan) - 1, maps[-1], args, should_stop)
            sums.update(found)
            everything = [sums[i] for i in range(len(objective.slots))]
            values, all_mults, pixel_grad = objective.function("global")(everything, x, *args)
            mults.update(enumerate(all_mults))
            grad = self._backward(
                len(self._plan) - 1, maps[-1], [mults[i] for i in last.slots], None, args, should_stop
            )
        for index in reversed(range(len(self._plan) - 1)):
            stage = self._plan[index][0]
            grad = self._backward(index, maps[index], [mults[i] for i in stage.slots], grad, args, should_stop)
        return values, grad + pixel_grad

    def terms(self, x: tf.Tensor, targets: Targets) -> tf.Tensor:
        """The weighted terms [n] at `x` (forward only)."""
        args = targets.args
        maps: list[tf.Tensor] = [x]
        sums: dict[int, list[tf.Tensor]] = {}
        for index in range(len(self._plan)):
            found, nxt = self._forward(index, maps[-1], args, None)
            sums.update(found)
            if nxt is not None:
                maps.append(nxt)
        everything = [sums[i] for i in range(len(self.objective.slots))]
        values, _, _ = self.objective.function("global")(everything, x, *args)
        return values

    def features(
        self, layers: Sequence[str], image: tf.Tensor, should_stop: ShouldStop | None = None
    ) -> list[tf.Tensor]:
        """The feature maps of `layers` for `image`, assembled from tiles, in
        the order of `layers`."""
        wanted = tuple(layers)
        found: dict[str, tf.Tensor] = {}
        x = image
        deepest = max((block_of(n) for n in wanted), default=0)
        for index, (stage, _, _) in enumerate(self._plan):
            fn = self.objective.function("features", stage, wanted)
            pieces: dict[tuple[int, int], list[tf.Tensor]] = {}
            nexts: dict[tuple[int, int], tf.Tensor] = {}
            for tile in self._tiles(index, x):
                self._check(should_stop)
                feats, nxt = fn(tile.read(x), tile.origin, tile.box)
                pieces[(tile.row, tile.col)] = feats
                nexts[(tile.row, tile.col)] = nxt
            mine = [n for n in wanted if stage.first_block <= block_of(n) <= stage.last_block]
            for j, name in enumerate(mine):
                found[name] = _assemble({k: v[j] for k, v in pieces.items()})
            if not stage.emit_next or stage.last_block >= deepest:
                break
            x = _assemble(nexts)
        return [found[n] for n in wanted]

    def image_sums(self, term: int, image: tf.Tensor, should_stop: ShouldStop | None = None) -> list[list[tf.Tensor]]:
        """Term `term`'s `image_sums` of `image` per layer of the term, summed
        over tiles (forward only)."""
        out: list[list[tf.Tensor]] = []
        x = image
        for index, (stage, _, _) in enumerate(self._plan):
            fn = self.objective.function("image_sums", stage, term)
            total: list[list[tf.Tensor]] | None = None
            nexts: dict[tuple[int, int], tf.Tensor] = {}
            for tile in self._tiles(index, x):
                self._check(should_stop)
                sums, nxt = fn(tile.read(x), tile.origin, tile.box)
                total = _add(total, sums)
                nexts[(tile.row, tile.col)] = nxt
            out.extend(total or [])
            if not stage.emit_next:
                break
            x = _assemble(nexts)
        return out
