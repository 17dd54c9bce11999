"""Range checks shared by the job and delivery options: each raises
InvalidArgument naming the field and the range."""

from __future__ import annotations

import math

import numpy as np

from stylize_server.job.errors import InvalidArgument

# Requests carry float32: a bound like 1e-6 arrives as 9.9999997e-07, so the
# bounds get float32's rounding as slack.
_FLOAT32_EPS = float(np.finfo(np.float32).eps)


def check_finite(name: str, value: float, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgument(name, f"must be a finite number, got {value!r}")
    if not lo * (1 - _FLOAT32_EPS) <= value <= hi * (1 + _FLOAT32_EPS):
        raise InvalidArgument(name, f"must be in [{lo:g}, {hi:g}], got {value:g}")


def check_range(name: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise InvalidArgument(name, f"must be in [{lo}, {hi}], got {value}")
