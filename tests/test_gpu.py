"""The GPU path (issue 16, item 7): what only a GPU can show. Without a GPU
every test here skips, saying so; `make gpu-check` runs them (`pytest -m
gpu`) and fails when any of them skips. Random weights, 64-128 px.

* memory growth: TensorFlow takes GPU memory as jobs need it, not all of it
  at start, and the budget is 90% of what the GPU has;
* bfloat16: the convolutions run on the GPU in bfloat16 and a job converges;
* the precision measurement (`auto`) on the GPU: both precisions, losses
  that agree, a decision with its figures;
* a short job through a real server on 127.0.0.1, on the GPU.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from stylize_api.v1 import stylize_pb2 as pb
from tests.support.images import image_array

GPUS = tf.config.list_physical_devices("GPU")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not GPUS, reason="needs an NVIDIA GPU that TensorFlow sees (none here); `make gpu-check` runs these on one"
    ),
]


@pytest.fixture(scope="module")
def gpu_engine():
    # The first thing in this process to touch the GPU: the Engine turns memory growth on first.
    from stylize_server.engine import Engine

    return Engine(weights="random:0", precision="float32")


def test_memory_growth_keeps_the_engine_small_on_the_gpu(gpu_engine) -> None:
    from stylize_server.serving import budget

    assert all(tf.config.experimental.get_memory_growth(gpu) for gpu in GPUS)
    total = budget.gpu_total_memory()
    assert total and total > 1 << 30
    in_use = gpu_engine.device_memory_bytes()
    assert in_use is not None and 0 < in_use < total // 4, (in_use, total)  # growth: not the whole GPU
    decided = budget.decide(0, gpu_engine.model_info)
    assert decided.bytes == int(total * budget.GPU_FRACTION) and "GPU" in decided.source


def test_bfloat16_runs_on_the_gpu_and_a_job_converges() -> None:
    from stylize_server.engine import Engine, RunHooks
    from stylize_server.job.layout import needed_layers
    from stylize_server.job.options import Inputs, JobOptions, StyleSource

    engine = Engine(weights="random:0", precision="bfloat16")
    assert engine.model_info.device_kind == "GPU" and engine.precision.value == "bfloat16"
    layers = needed_layers(["relu4_2"], ["relu1_1", "relu5_1"])
    image = tf.constant(image_array(64, 64, seed=3)[None].astype(np.float32))
    features = engine.vgg(image, layers, engine.default_pooling, tf.bfloat16)
    for name, value in features.items():  # handed on as float32, computed in bfloat16 on the device
        assert "GPU" in value.device, (name, value.device)
        assert np.array_equal(tf.cast(tf.cast(value, tf.bfloat16), tf.float32).numpy(), value.numpy()), name
    totals: list[float] = []
    inputs = Inputs(image_array(96, 96, seed=1), (StyleSource(image_array(96, 96, seed=2)),))
    result = engine.run(
        engine.plan(JobOptions(size=96, iterations=20, multiscale=False), inputs),
        RunHooks(on_progress=lambda p: totals.append(p.losses.total)),
    )
    assert result.complete and result.iterations == 20
    assert np.isfinite(result.pixels).all() and all(math.isfinite(t) for t in totals)
    assert totals[-1] < 0.5 * totals[0], totals  # L-BFGS halves a random-weights loss in 20 steps


def test_the_precision_measurement_on_the_gpu(gpu_engine) -> None:
    from stylize_server.engine.device import measure_precisions
    from stylize_server.job.layout import Pooling
    from stylize_server.job.precision import Precision, decide

    f32, bf16 = measure_precisions(gpu_engine.vgg, Pooling.AVG, xla=False)
    for m in (f32, bf16):
        assert m.seconds > 0 and math.isfinite(m.loss) and m.loss > 0, m
    assert abs(bf16.loss - f32.loss) / f32.loss < 0.02, (f32, bf16)  # the same objective, to bfloat16's precision
    choice = decide(f32, bf16)
    assert choice.precision in (Precision.FLOAT32, Precision.BFLOAT16)
    assert f"float32 {f32.seconds * 1e3:.0f} ms" in choice.reason, choice.reason


def test_a_short_job_through_a_server_on_the_gpu(gpu_engine) -> None:
    from stylize_server.serving import budget
    from tests.support.server import running_server, small_request

    with running_server(engine=gpu_engine, max_pixels=128 * 128) as srv:
        stub = srv.stub()
        info = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=30)
        frames = list(stub.Stylize(small_request(size=128, iterations=5), timeout=120))
    assert info.device.kind == "GPU" and info.device.memory_bytes > 0
    gpu_budget = int((budget.gpu_total_memory() or 0) * budget.GPU_FRACTION)
    assert info.budget.device_memory_budget_bytes == gpu_budget  # the GPU's, not the CPU's default
    kinds = [f.WhichOneof("frame") for f in frames]
    assert kinds[0] == "started" and kinds[-1] == "result", kinds
    result = frames[-1].result
    assert result.complete and result.iterations == 5 and result.width == 128, result
