"""A StylizeVideo header on the wire -> the video's values (job/video.py)."""

from __future__ import annotations

import hashlib

from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.job.options import InputShapes
from stylize_server.job.plan import JobPlan, Settings, plan_job
from stylize_server.job.port import EnginePort
from stylize_server.job.video import DEFAULT_TEMPORAL_WEIGHT, VideoOptions
from stylize_server.wire import admission


def header_fingerprint(header: pb.VideoHeader) -> str:
    """What makes two calls the same video (a resume needs the same)."""
    same = pb.VideoHeader()
    same.CopyFrom(header)
    same.first_frame, same.frame_count = 0, 0
    same.options.progress_interval, same.options.preview_max_side = 0, 0
    return hashlib.sha256(same.SerializeToString(deterministic=True)).hexdigest()


def video_options(header: pb.VideoHeader) -> VideoOptions:
    return VideoOptions(
        temporal_weight=header.temporal_weight if header.HasField("temporal_weight") else DEFAULT_TEMPORAL_WEIGHT,
        frame_iterations=header.frame_iterations if header.HasField("frame_iterations") else None,
        frame_count=header.frame_count,
        first_frame=header.first_frame,
        early_stop=header.early_stop if header.HasField("early_stop") else 0.0,
    )


def frame_request(header: pb.VideoHeader, frame: pb.VideoFrame) -> pb.StylizeRequest:
    """The Stylize request of one frame: the header's options and styles, the frame as its content."""
    request = pb.StylizeRequest()
    request.CopyFrom(header.options)
    request.content.data = frame.image.data
    return request


Plans = tuple[tuple[JobPlan, JobPlan], tuple[InputShapes, InputShapes]]


def plan_frames(
    head: admission.RequestHead,
    wanted: VideoOptions,
    engine: EnginePort,
    budget_bytes: int,
    cfg: Settings,
) -> Plans:
    """The plans (and input shapes) of the first frame and of every later
    one, each planned and checked as a Stylize job would be (plan_job)."""
    plans, shapes_of = [], []
    for later in (False, True):
        options = wanted.frame_options(head.options, later)
        shapes = wanted.later_shapes(head.shapes) if later else head.shapes
        accept_partial = head.delivery.accept_partial
        plans.append(plan_job(options, shapes, accept_partial, head.regions, engine, budget_bytes, cfg))
        shapes_of.append(shapes)
    return (plans[0], plans[1]), (shapes_of[0], shapes_of[1])
