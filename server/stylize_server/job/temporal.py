"""What the temporal term of a video frame matches (engine/terms/temporal.py):
the previous stylized frame warped into this one by the optical flow, and
where that warp is reliable. Made by job/flow.py; a plain value here so that
the options (job/options.py, `Inputs.temporal`) need no OpenCV."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Temporal:
    warped: np.ndarray  # H×W×3 float32, 0..255
    reliability: np.ndarray  # H×W float32, 0..1

    @property
    def nbytes(self) -> int:
        return self.warped.nbytes + self.reliability.nbytes
