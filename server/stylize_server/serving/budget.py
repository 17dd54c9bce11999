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
from typing import Any

GIB = 1 << 30
CPU_MEMORY_BUDGET = 8 * GIB
GPU_FRACTION = 0.9

log = logging.getLogger("stylize.server")


@dataclass(frozen=True)
class Budget:
    bytes: int
    source: str  # how it was decided, for the log


def gpu_total_memory() -> int | None:
    """The first GPU's memory as TensorFlow's allocator sees it, or None."""
    try:
        from tensorflow.python.client import device_lib

        for device in device_lib.list_local_devices():
            if device.device_type == "GPU" and device.memory_limit:
                return int(device.memory_limit)
    except Exception:  # no TensorFlow, no GPU, or a driver that will not say
        log.debug("could not read the GPU's memory", exc_info=True)
    return None


def decide(configured: int, model_info: Any) -> Budget:
    """The budget: as configured, else from the device."""
    if configured > 0:
        return Budget(configured, "--device-memory-budget")
    if getattr(model_info, "device_kind", "CPU") == "GPU":
        total = getattr(model_info, "device_memory_total", None) or gpu_total_memory()
        if total:
            return Budget(int(total * GPU_FRACTION), f"{GPU_FRACTION:.0%} of the GPU's {total / GIB:.1f} GiB")
        log.warning("the GPU's memory is unknown; using the CPU default budget: set --device-memory-budget")
    return Budget(CPU_MEMORY_BUDGET, f"the default for a CPU, {CPU_MEMORY_BUDGET / GIB:.0f} GiB")
