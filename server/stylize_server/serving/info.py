"""GetServerInfo: what this server runs and what it allows, answered from
memory on the event loop (no lock, nothing blocking)."""

from __future__ import annotations

import importlib.metadata
from typing import TYPE_CHECKING

from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.config import ServerConfig
from stylize_server.job.delivery import DeliveryOptions
from stylize_server.job.layout import Pooling
from stylize_server.job.options import JobOptions, resolve
from stylize_server.job.port import EnginePort
from stylize_server.wire import convert

if TYPE_CHECKING:
    from stylize_server.serving.calls import CallGate
    from stylize_server.serving.scheduler import Scheduler


def server_version() -> str:
    try:
        return importlib.metadata.version("stylize-grpc")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def server_info(
    config: ServerConfig, engine: EnginePort | None, scheduler: Scheduler | None, gate: CallGate
) -> pb.ServerInfo:
    limits = config.limits
    pooling = Pooling(config.pooling)
    info = pb.ServerInfo(
        version=server_version(),
        limits=pb.Limits(
            max_pixels=limits.max_pixels,
            max_side=limits.max_side,
            max_iterations=limits.max_iterations,
            max_styles=limits.max_styles,
            max_message_bytes=config.max_message_bytes,
            max_input_pixels=limits.max_input_pixels,
            max_request_pixels=limits.max_request_pixels,
            max_job_seconds=config.max_job_seconds,
            max_jobs_per_client=config.max_jobs_per_client,
            request_receive_seconds=config.request_receive_seconds,
            result_retention_seconds=config.result_retention_seconds,
            max_video_frames=config.max_video_frames,
        ),
        defaults=convert.resolved_to_proto(
            resolve(JobOptions(), pooling),
            DeliveryOptions(),
            precision=engine.model_info.precision if engine is not None else "float32",
        ),
        queue=pb.QueueInfo(
            max_concurrent_jobs=config.max_concurrent_jobs,
            capacity=config.queue_size,
            open_calls=gate.open,
            max_open_calls=gate.limit,
        ),
    )
    if engine is not None:
        model = engine.model_info
        info.model.CopyFrom(
            pb.ModelInfo(
                name=model.name,
                weights_source=str(model.weights_source),
                random_weights=bool(model.random_weights),
                default_pooling="POOLING_" + str(model.default_pooling).upper(),
                load_seconds=float(model.load_seconds),
                precision=model.precision,
                precision_reason=model.precision_reason,
                xla=model.xla,
            )
        )
        memory = engine.device_memory_bytes()
        info.device.CopyFrom(
            pb.DeviceInfo(kind=model.device_kind, name=model.device_name, memory_bytes=int(memory or 0))
        )
    if scheduler is not None:
        info.queue.depth = scheduler.depth
        info.queue.running = scheduler.running
        info.budget.CopyFrom(
            pb.Budget(
                device_memory_budget_bytes=scheduler.budget_bytes,
                reserved_bytes=scheduler.reserved_bytes,
                tile_size=config.tile_size,
            )
        )
    return info
