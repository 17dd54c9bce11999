"""The engine as serving sees it: a typed port with exactly the members the
serving layer uses, and the hooks a running job calls back through.

Serving imports this module, never `stylize_server.engine`: the engine (and
TensorFlow with it) is loaded by the lifecycle's loader, and any object with
these members serves (the tests' fakes do).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from stylize_server.job.options import JobOptions
from stylize_server.job.plan import JobPlan, Planning
from stylize_server.job.types import ModelInfo, Progress, Result, StopReason


@dataclass
class RunHooks:
    """What a running job tells its caller, and how the caller stops it.

    on_progress:  every iteration (the caller decides which to forward)
    stop:         polled between iterations, tiles, style images and scales;
                  a StopReason stops the job, which then returns its best image
                  so far (the starting image if no iteration ran)
    on_iteration: (iteration, seconds) of every iteration
    on_phase:     the name of each piece of work before it starts ("content
                  targets", "style 2 of 4", "scale 1 of 3"), for logs and tests
    """

    on_progress: Callable[[Progress], None] | None = None
    stop: Callable[[], StopReason | None] | None = None
    on_iteration: Callable[[int, float], None] | None = None
    on_phase: Callable[[str], None] | None = None


class EnginePort(Planning, Protocol):
    """A resident model that runs planned jobs (engine.runner.Engine); what
    planning reads of it is `plan.Planning`."""

    @property
    def model_info(self) -> ModelInfo: ...

    def check_options(self, options: JobOptions) -> None:
        """Refuse options the loss terms do not own or accept (InvalidArgument)."""
        ...

    def run(self, plan: JobPlan, hooks: RunHooks | None = None) -> Result:
        """Run a plan whose inputs are decoded, on the calling thread."""
        ...

    def device_memory_bytes(self) -> int | None:
        """Bytes the device's allocator holds now (None on a CPU)."""
        ...

    def warm_up(self, sizes: tuple[int, ...] = (256,), iterations: int = 2) -> float:
        """Trace and run the default job's steps at `sizes`; the seconds it took."""
        ...
