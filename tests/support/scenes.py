"""Synthetic video scenes whose motion is known exactly (numpy only), for the
flow and temporal tests and the video benchmark.

    frames, motion = pan(64, 48, count=4, step=2)     # the camera pans right
    frames, motion = moving_square(64, 48, count=4)   # a square over a still background

`motion[t]` is the true backward flow of frame t (t -> t−1, H×W×2 float32;
zeros for frame 0): the pixel (x, y) of frame t was at (x + u, y + v) in t−1.
"""

from __future__ import annotations

import numpy as np

from tests.support.images import image_array


def pan(width: int, height: int, count: int, step: int = 2, seed: int = 3) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A wide textured picture seen through a window moving `step` px right per frame."""
    wide = image_array(width + step * count + 1, height, seed=seed)
    frames = [np.ascontiguousarray(wide[:, t * step : t * step + width]) for t in range(count)]
    # frame t at x shows wide[x + t·step], which frame t−1 showed at x + step
    motion = [np.zeros((height, width, 2), np.float32)]
    for _ in range(1, count):
        flow = np.zeros((height, width, 2), np.float32)
        flow[..., 0] = step
        motion.append(flow)
    return frames, motion


def moving_square(
    width: int, height: int, count: int, side: int = 16, step: int = 3, seed: int = 4
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A textured square moving `step` px right per frame over a still textured background."""
    background = image_array(width, height, seed=seed)
    patch = image_array(side, side, seed=seed + 1)
    y0 = (height - side) // 2
    frames, motion = [], []
    for t in range(count):
        frame = background.copy()
        x0 = 2 + t * step
        frame[y0 : y0 + side, x0 : x0 + side] = patch
        frames.append(frame)
        flow = np.zeros((height, width, 2), np.float32)
        if t:
            flow[y0 : y0 + side, x0 : x0 + side, 0] = -step
        motion.append(flow)
    return frames, motion


def square_box(width: int, height: int, t: int, side: int = 16, step: int = 3) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the moving square in frame t."""
    y0 = (height - side) // 2
    x0 = 2 + t * step
    return y0, y0 + side, x0, x0 + side
