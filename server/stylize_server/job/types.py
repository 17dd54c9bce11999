"""The values that cross the server's layers, without TensorFlow: what the
engine reports (`Progress`, `Result`, `Losses`), what the model is
(`ModelInfo`), and what the cost model expects a job to cost (`Estimate`).

The scheduler, the service and the proto mapping name these types; only the
engine makes them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stylize_api.losses import Losses
from stylize_api.schema import StopReason

__all__ = [
    "Estimate",
    "Losses",
    "ModelInfo",
    "Progress",
    "Result",
    "ScaleEstimate",
    "StopReason",
]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    weights_source: str
    random_weights: bool
    default_pooling: str  # "avg" or "max"
    load_seconds: float
    device_kind: str  # "GPU" or "CPU"
    device_name: str
    xla: bool
    precision: str = "float32"  # of the convolutions: "float32" or "bfloat16"
    precision_reason: str = ""
    device_memory_total: int | None = None  # bytes the device offers, where known


class Progress:
    """One iteration's report. `image` (H×W×3 uint8, colours already
    recombined as the job asks) is rendered on first access, from any thread,
    so a caller that wants no preview pays no device-to-host copy."""

    def __init__(
        self,
        iteration: int,
        total_iterations: int,
        losses: Losses,
        elapsed_seconds: float,
        scale_index: int,
        scale_size: int,
        render: Callable[[], np.ndarray],
    ) -> None:
        self.iteration = iteration
        self.total_iterations = total_iterations
        self.losses = losses
        self.elapsed_seconds = elapsed_seconds
        self.scale_index = scale_index
        self.scale_size = scale_size
        self._render = render

    @functools.cached_property
    def image(self) -> np.ndarray:
        return self._render()

    def __repr__(self) -> str:
        return (
            f"Progress({self.iteration}/{self.total_iterations}, total={self.losses.total:.4g}, "
            f"scale={self.scale_index}, {self.elapsed_seconds:.2f}s)"
        )


@dataclass(frozen=True)
class Result:
    """What a job made. `pixels` is the float RGB image (0..255, not rounded)
    at the output size; `image` is it as uint8. A job the server stopped early
    has `complete` False, its `stop_reason`, and the best image so far."""

    pixels: np.ndarray  # H×W×3 float32
    losses: Losses
    iterations: int
    iterations_requested: int
    compute_seconds: float
    complete: bool = True
    stop_reason: StopReason = StopReason.NONE

    @functools.cached_property
    def image(self) -> np.ndarray:
        rounded: np.ndarray = np.clip(np.rint(self.pixels), 0, 255).astype(np.uint8)
        return rounded

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


@dataclass(frozen=True)
class ScaleEstimate:
    """One scale of a job as the cost model sees it, and how it will run."""

    size: int  # longest side
    height: int
    width: int
    iterations: int
    style_pixels: int  # all style images at this scale
    device_memory_bytes: int
    flops_per_iteration: float
    seconds_per_iteration: float
    tile_size: int = 0  # 0: whole image at once
    tiles: int = 1
    lbfgs_history: int = 0  # L-BFGS pairs (0 for Adam)
    # Tiled: the network is cut after this block (0: not cut) and the part
    # after the cut runs in tiles of this side in image pixels (0: whole).
    split_block: int = 0
    deep_tile_size: int = 0

    @property
    def pixels(self) -> int:
        return self.height * self.width


@dataclass(frozen=True)
class Estimate:
    """A job's cost, from image headers and options alone."""

    input_pixels: int  # decoded pixels of every input image
    scales: tuple[ScaleEstimate, ...]
    device_memory_bytes: int  # the peak over the scales
    flops: float  # all iterations
    seconds: float  # all iterations

    @property
    def total_iterations(self) -> int:
        return sum(s.iterations for s in self.scales)

    @property
    def output_shape(self) -> tuple[int, int]:
        """(height, width) of the last scale: the output."""
        last = self.scales[-1]
        return last.height, last.width

    def seconds_left(self, scale_index: int, iterations_done_in_scale: int, measured_ratio: float = 1.0) -> float:
        """Seconds still to go, with the model's times scaled by `measured_ratio`
        (measured / estimated seconds per iteration so far)."""
        left = 0.0
        for index, scale in enumerate(self.scales):
            if index < scale_index:
                continue
            its = scale.iterations - (iterations_done_in_scale if index == scale_index else 0)
            left += max(0, its) * scale.seconds_per_iteration
        return left * measured_ratio
