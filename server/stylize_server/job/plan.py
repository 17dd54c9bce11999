"""A job as admission leaves it, and as the engine runs it: resolved options,
the decoded images (already shrunk to what the job uses), and the cost
model's estimate, whose scales say each scale's size, iterations, tiling and
L-BFGS history. Resolved and planned once, so the `started` frame and the
engine use the same plan."""

from __future__ import annotations

from dataclasses import dataclass

from stylize_server.job.options import Inputs, JobOptions
from stylize_server.job.types import Estimate, ScaleEstimate


@dataclass(frozen=True)
class JobPlan:
    options: JobOptions  # resolved: no None left
    inputs: Inputs
    estimate: Estimate

    @property
    def scales(self) -> tuple[ScaleEstimate, ...]:
        return self.estimate.scales

    @property
    def total_iterations(self) -> int:
        return self.estimate.total_iterations

    @property
    def output_shape(self) -> tuple[int, int]:
        return self.estimate.output_shape
