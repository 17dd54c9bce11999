"""The precision VGG-19's convolutions run in, and how `auto` chooses it.

Only the convolutions and their activations change precision. Gram matrices,
the content, style and TV terms, the loss, the pixels and all optimizer state
stay float32: the features are cast to float32 before any statistic is taken.
float16 is not offered: Gram matrices of VGG features overflow its range
(ProGamerGov/neural-style-pt #97); bfloat16 has float32's exponent.

`auto` is decided by measurement at start-up (`choose`): one objective
evaluation (forward and input gradient, default layers) at 256 px in each
precision, timed after a tracing run, interleaved, best of a few. bfloat16 is
picked when it is at least `SPEEDUP_NEEDED` times faster and its loss agrees
with float32's within `AGREEMENT`: a CPU without fast bfloat16 kernels (no
AMX or AVX512-BF16) or a GPU without bfloat16 tensor cores stays on float32 by
itself. TF-free: the engine supplies the measurement.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

SPEEDUP_NEEDED = 1.3
AGREEMENT = 0.01  # relative difference of the two losses
MEASURE_SIZE = 256


class Precision(str, enum.Enum):
    AUTO = "auto"
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"

    @property
    def value_bytes(self) -> int:
        """Bytes of one activation value."""
        return 2 if self is Precision.BFLOAT16 else 4


@dataclass(frozen=True)
class Measurement:
    """One precision's best step time and the loss it computed."""

    seconds: float
    loss: float


@dataclass(frozen=True)
class Choice:
    precision: Precision
    reason: str


def choose(requested: Precision | str, measure: Callable[[], tuple[Measurement, Measurement]]) -> Choice:
    """The precision to run in: `requested` as is, or for `auto` the result of
    measuring both, float32 then bfloat16 (see the module docstring)."""
    requested = Precision(requested)
    if requested is not Precision.AUTO:
        return Choice(requested, f"{requested.value}, as configured")
    started = time.perf_counter()
    f32, bf16 = measure()
    choice = decide(f32, bf16)
    log.info("precision %s chosen in %.1fs: %s", choice.precision.value, time.perf_counter() - started, choice.reason)
    return choice


def decide(f32: Measurement, bf16: Measurement) -> Choice:
    """`auto`'s rule on two measurements (separate from `choose` for tests)."""
    speedup = f32.seconds / bf16.seconds if bf16.seconds > 0 else 0.0
    scale = max(abs(f32.loss), 1e-30)
    disagreement = abs(bf16.loss - f32.loss) / scale
    figures = (
        f"one step at {MEASURE_SIZE} px: float32 {f32.seconds * 1e3:.0f} ms, bfloat16 {bf16.seconds * 1e3:.0f} ms "
        f"({speedup:.2f}x), losses differ by {disagreement * 100:.3f}%"
    )
    if not (disagreement <= AGREEMENT):  # also catches NaN
        return Choice(Precision.FLOAT32, f"auto: float32, bfloat16's loss disagrees ({figures})")
    if speedup >= SPEEDUP_NEEDED:
        return Choice(Precision.BFLOAT16, f"auto: bfloat16, at least {SPEEDUP_NEEDED}x faster ({figures})")
    return Choice(Precision.FLOAT32, f"auto: float32, bfloat16 is not {SPEEDUP_NEEDED}x faster here ({figures})")
