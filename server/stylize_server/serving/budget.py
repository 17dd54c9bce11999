"""The device-memory budget that admission spends: the jobs holding a slot
may together have estimates of at most this many bytes.

`--device-memory-budget` sets it. Left at 0, it is 90% of the GPU's memory as
TensorFlow reports it (the rest covers the resident weights, cuDNN workspaces
and the allocator's fragmentation), or CPU_MEMORY_BUDGET on a CPU, where the
"device" is the process's own memory: 8 GiB fits the usual 12-16 GiB CPU pod
beside the ~1.5 GiB the server itself takes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from stylize_server.job.types import ModelInfo

GIB = 1 << 30
CPU_MEMORY_BUDGET = 8 * GIB
GPU_FRACTION = 0.9

log = logging.getLogger("stylize.server")


@dataclass(frozen=True)
class Budget:
    bytes: int
    source: str  # how it was decided, for the log


def decide(configured: int, model_info: ModelInfo) -> Budget:
    """The budget: as configured, else from the device (the engine reads the
    GPU's memory into ModelInfo; serving never asks TensorFlow itself)."""
    if configured > 0:
        return Budget(configured, "--device-memory-budget")
    if model_info.device_kind == "GPU":
        total = model_info.device_memory_total
        if total:
            return Budget(int(total * GPU_FRACTION), f"{GPU_FRACTION:.0%} of the GPU's {total / GIB:.1f} GiB")
        log.warning("the GPU's memory is unknown; using the CPU default budget: set --device-memory-budget")
    return Budget(CPU_MEMORY_BUDGET, f"the default for a CPU, {CPU_MEMORY_BUDGET / GIB:.0f} GiB")
