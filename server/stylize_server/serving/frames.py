"""The `started` and `progress` frames of a job (the result's are in
`output`): what the stream tells its client about the job, built from the
job's admission plan, the engine's report and the cost model."""

from __future__ import annotations

import numpy as np

from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.job import images, timing
from stylize_server.job.types import ModelInfo, Progress
from stylize_server.serving.jobs import Job
from stylize_server.wire import convert


def blend_weights(job: Job) -> list[float]:
    """Each style's blend weight, normalized within its region."""
    weights = list(job.head.shapes.weights)
    regions = job.style_regions or tuple(0 for _ in weights)
    totals: dict[int, float] = {}
    for region, weight in zip(regions, weights):
        totals[region] = totals.get(region, 0.0) + weight
    return [w / totals[r] if totals[r] > 0 else 0.0 for r, w in zip(regions, weights)]


def started_frame(job: Job, model: ModelInfo | None, queue_wait: float, reattached: bool) -> pb.StylizeResponse:
    height, width = job.output_shape
    options = convert.resolved_to_proto(
        job.options,
        job.delivery,
        scales=[(s.size, s.iterations) for s in job.estimate.scales],
        blend_weights=blend_weights(job),
        regions=len(set(job.style_regions)) or 1,
        precision=model.precision if model is not None else "float32",
    )
    return pb.StylizeResponse(
        started=pb.Started(
            request_id=job.request_id,
            width=width,
            height=height,
            options=options,
            queue_wait_seconds=queue_wait,
            estimate=convert.estimate_to_proto(job.estimate),
            random_weights=bool(model is not None and model.random_weights),
            reattached=reattached,
        )
    )


def eta(job: Job, progress: Progress) -> float:
    """Seconds left: the cost model's remaining work, scaled by this job's
    measured speed against the model's prediction so far (so a scale that
    costs four times the last one is predicted as such)."""
    scales = job.estimate.scales
    index = min(progress.scale_index, len(scales) - 1)
    done_before = sum(s.iterations for s in scales[:index])
    in_scale = max(0, progress.iteration - done_before)
    predicted = sum(s.iterations * s.seconds_per_iteration for s in scales[:index])
    predicted += in_scale * scales[index].seconds_per_iteration
    return timing.eta_seconds(job.estimate, index, in_scale, progress.elapsed_seconds, predicted)


def progress_frame(job: Job, progress: Progress, preview_side: int) -> pb.StylizeResponse:
    """A progress frame with its ETA and, when `preview_side`, a PNG preview.
    Renders the image: run it on a worker thread, never on the event loop."""
    preview: np.ndarray | None = images.shrink(progress.image, preview_side) if preview_side else None
    png = images.encode(preview, "png") if preview is not None else None
    return pb.StylizeResponse(progress=convert.progress_to_proto(progress, eta(job, progress), preview, png))
