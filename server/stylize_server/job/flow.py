"""Optical flow between two content frames, its reliability, and the warp of
the previous stylized frame into the current one (Ruder, Dosovitskiy & Brox,
"Artistic style transfer for videos", GCPR 2016, section 3). TF-free: numpy
and OpenCV's DIS optical flow (a kept library; no home-made flow).

Conventions: frames are H×W×3 uint8 RGB at the optimization's resolution.
`backward[y, x]` is the flow from frame t to frame t−1: the pixel (x, y) of
frame t was at (x + u, y + v) in frame t−1, so the previous output warped into
frame t is prev(p + backward(p)). `forward` is the flow from t−1 to t.

Reliability is 1, except 0 where
  * the forward and backward flows disagree (a disocclusion: what frame t shows
    was hidden in frame t−1): |b + f(p+b)|² > 0.01 (|b|² + |f(p+b)|²) + 0.5
  * motion boundaries: |∇b_u|² + |∇b_v|² > 0.01 |b|² + 0.002
  * p + b(p) falls outside frame t−1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from stylize_server.job.temporal import Temporal

# DIS's "medium" preset: about 3 ms per 256² pair on one core, sub-pixel accurate on pans.
_PRESET = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM


@dataclass(frozen=True)
class Flow:
    """The flows between frames t−1 and t and the reliability of the backward one."""

    backward: np.ndarray  # H×W×2 float32, t -> t−1
    forward: np.ndarray  # H×W×2 float32, t−1 -> t
    reliability: np.ndarray  # H×W float32, 0 or 1
    seconds: float  # how long computing it took

    @property
    def nbytes(self) -> int:
        return self.backward.nbytes + self.forward.nbytes + self.reliability.nbytes


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(frame, np.uint8), cv2.COLOR_RGB2GRAY)


def dis(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """DIS flow from `first` to `second` (H×W×3 uint8 RGB): H×W×2 float32."""
    engine = cv2.DISOpticalFlow_create(_PRESET)  # type: ignore[attr-defined]  # absent from the stubs
    flow = engine.calc(_gray(first), _gray(second), None)
    return np.asarray(flow, np.float32)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs, ys


def sample(image: np.ndarray, flow: np.ndarray, border: np.ndarray | None = None) -> np.ndarray:
    """image(p + flow(p)), bilinear; outside the image: `border`'s pixel
    (when given) else the nearest edge pixel."""
    h, w = flow.shape[:2]
    xs, ys = _grid(h, w)
    map_x, map_y = xs + flow[..., 0], ys + flow[..., 1]
    src = np.ascontiguousarray(image, np.float32)
    out = cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if border is not None:
        outside = (map_x < 0) | (map_x > w - 1) | (map_y < 0) | (map_y > h - 1)
        out[outside] = np.asarray(border, np.float32)[outside]
    return np.asarray(out, np.float32)


def reliability(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """1 where the backward flow can be trusted, 0 at disocclusions, motion
    boundaries and where it leaves the frame (see the module's docstring)."""
    h, w = backward.shape[:2]
    f_at = sample(forward, backward)  # f(p + b(p))
    disagree = np.sum((backward + f_at) ** 2, axis=-1)
    magnitude = np.sum(backward**2, axis=-1) + np.sum(f_at**2, axis=-1)
    occluded = disagree > 0.01 * magnitude + 0.5
    du = np.gradient(backward[..., 0])
    dv = np.gradient(backward[..., 1])
    gradient = du[0] ** 2 + du[1] ** 2 + dv[0] ** 2 + dv[1] ** 2
    boundary = gradient > 0.01 * np.sum(backward**2, axis=-1) + 0.002
    xs, ys = _grid(h, w)
    tx, ty = xs + backward[..., 0], ys + backward[..., 1]
    outside = (tx < 0) | (tx > w - 1) | (ty < 0) | (ty > h - 1)
    return np.where(occluded | boundary | outside, 0.0, 1.0).astype(np.float32)


def between(previous: np.ndarray, current: np.ndarray) -> Flow:
    """The flows between two content frames of the same shape, and reliability."""
    if previous.shape != current.shape:
        raise ValueError(f"frames of different shapes: {previous.shape} and {current.shape}")
    start = time.perf_counter()
    backward = dis(current, previous)
    forward = dis(previous, current)
    trust = reliability(backward, forward)
    return Flow(backward, forward, trust, time.perf_counter() - start)


def warp(previous_output: np.ndarray, flow: Flow) -> Temporal:
    """The previous stylized frame (H×W×3, 0..255) warped into the current frame."""
    warped = sample(previous_output, flow.backward)
    return Temporal(np.clip(warped, 0.0, 255.0).astype(np.float32), flow.reliability)


def start_image(temporal: Temporal, content: np.ndarray) -> np.ndarray:
    """Ruder's start for frame t: the warped previous output where it is
    reliable, the content frame elsewhere (H×W×3 uint8)."""
    trust = temporal.reliability[..., None]
    mixed = trust * temporal.warped + (1.0 - trust) * np.asarray(content, np.float32)
    return np.asarray(np.clip(np.rint(mixed), 0, 255), np.uint8)
