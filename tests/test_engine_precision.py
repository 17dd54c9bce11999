"""Precision (issue 13): bfloat16 convolutions with float32 statistics, the
`auto` choice, and quality and determinism within a precision. Real
TensorFlow on the CPU, random weights, 64-128 px."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from stylize_server.engine import targets as job_targets
from stylize_server.engine.objective import LossSpec
from stylize_server.engine.regions import plan_regions
from stylize_server.engine.runner import Engine, RunHooks
from stylize_server.engine.spec import job_spec
from stylize_server.engine.tiling import WHOLE
from stylize_server.job.options import Init, Inputs, JobOptions, Optimizer, StyleSource, resolve
from stylize_server.job.precision import Measurement, Precision, decide
from stylize_server.job.types import Result
from tests.support.images import image_array


@pytest.fixture(scope="module")
def f32() -> Engine:
    return Engine(weights="random:0", precision="float32")


@pytest.fixture(scope="module")
def bf16() -> Engine:
    return Engine(weights="random:0", precision="bfloat16")


def _inputs(size: int) -> Inputs:
    return Inputs(image_array(size, size, seed=1), (StyleSource(image_array(size, size, seed=5)),))


def _run(engine: Engine, options: JobOptions, inputs: Inputs) -> Result:
    return engine.run(engine.plan(options, inputs), RunHooks())


def _score(engine: Engine, options: JobOptions, inputs: Inputs, pixels: np.ndarray) -> float:
    """The total loss of `pixels` under `engine`'s objective for this job."""
    job = job_spec(resolve(options), engine.precision, guided=False)
    evaluator = engine.compiled(job.loss).evaluator(WHOLE)
    regions = plan_regions(inputs.styles, job.options.unmasked_region, pixels.shape[:2])
    built = job_targets.build(evaluator, job, inputs.content, [s.image for s in inputs.styles], regions, lambda: False)
    assert built is not None
    return float(tf.reduce_sum(evaluator.terms(job_targets.batch(pixels), built)))


def _conv_dtypes(engine: Engine, spec: LossSpec) -> set[str]:
    step = engine.compiled(spec).optimizer(Optimizer.ADAM, 0)._step
    graph = step.get_concrete_function().graph
    return {op.get_attr("T").name for op in graph.get_operations() if op.type == "Conv2D"}


@pytest.mark.parametrize("optimizer", list(Optimizer))
def test_bfloat16_reaches_the_float32_loss_within_two_percent(f32: Engine, bf16: Engine, optimizer) -> None:
    options = JobOptions(size=128, iterations=60, optimizer=optimizer, multiscale=False)
    inputs = _inputs(128)
    full = _run(f32, options, inputs)
    half = _run(bf16, options, inputs)
    assert full.complete and half.complete
    # Both final images scored by the same float32 objective.
    reference = _score(f32, options, inputs, full.pixels)
    candidate = _score(f32, options, inputs, half.pixels)
    start = _score(f32, options, inputs, inputs.content.astype(np.float32))
    assert reference < start / 3  # the runs did optimize
    assert abs(candidate - reference) / reference < 0.02, (candidate, reference)


def test_a_forced_precision_is_honoured_down_to_the_convolutions(f32: Engine, bf16: Engine) -> None:
    assert f32.model_info.precision == "float32" and bf16.model_info.precision == "bfloat16"
    assert "configured" in f32.model_info.precision_reason
    options = JobOptions(size=32, iterations=1, optimizer=Optimizer.ADAM, multiscale=False)
    for engine, dtype in ((f32, "float32"), (bf16, "bfloat16")):
        _run(engine, options, _inputs(32))
        spec = job_spec(resolve(options), engine.precision, guided=False).loss
        assert spec in engine.step_cache
        assert _conv_dtypes(engine, spec) == {dtype}


def test_auto_measures_picks_one_precision_and_reports_why() -> None:
    engine = Engine(weights="random:0")  # precision="auto" is the default
    info = engine.model_info
    assert info.precision in ("float32", "bfloat16")
    assert engine.precision is Precision(info.precision)
    assert info.precision_reason.startswith(f"auto: {info.precision}")
    assert "float32" in info.precision_reason and "bfloat16" in info.precision_reason and "ms" in info.precision_reason
    result = _run(engine, JobOptions(size=32, iterations=2, multiscale=False), _inputs(32))
    assert result.complete and np.isfinite(result.losses.total)


def test_the_auto_rule() -> None:
    fast = decide(Measurement(0.47, 100.0), Measurement(0.26, 100.1))
    assert fast.precision is Precision.BFLOAT16 and "1.81x" in fast.reason
    slow = decide(Measurement(0.47, 100.0), Measurement(0.40, 100.0))
    assert slow.precision is Precision.FLOAT32 and "not 1.3x faster" in slow.reason
    wrong = decide(Measurement(0.47, 100.0), Measurement(0.10, 130.0))
    assert wrong.precision is Precision.FLOAT32 and "disagrees" in wrong.reason
    broken = decide(Measurement(0.47, 100.0), Measurement(0.10, float("nan")))
    assert broken.precision is Precision.FLOAT32


@pytest.mark.parametrize("which", ["float32", "bfloat16"])
def test_same_seed_same_precision_same_bytes(f32: Engine, bf16: Engine, which: str) -> None:
    engine = f32 if which == "float32" else bf16
    options = JobOptions(size=64, iterations=8, init=Init.NOISE, seed=11, multiscale=False)
    first = _run(engine, options, _inputs(64))
    again = _run(engine, options, _inputs(64))
    assert first.image.tobytes() == again.image.tobytes()
    assert first.pixels.tobytes() == again.pixels.tobytes()
