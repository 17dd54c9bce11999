"""Bounded compiled steps and stoppable phases (issue 9, items 5 and 6), at
the engine level: the LRU and what it frees, canonical layer lists, and a
stop honoured in every phase before and between iterations."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from stylize_server.engine.runner import Engine, RunHooks
from stylize_server.engine.spec import job_spec
from stylize_server.job.options import Inputs, JobOptions, StyleSource, resolve
from stylize_server.job.types import Result, StopReason
from tests.support.images import image_array


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(weights="random:0", precision="float32", max_compiled=2)


def small(styles: int = 1, size: int = 32, **options) -> tuple[JobOptions, Inputs]:
    content = image_array(size, size, seed=1)
    sources = tuple(StyleSource(image_array(size, size, seed=10 + i)) for i in range(styles))
    return JobOptions(size=size, **{"iterations": 2, "multiscale": False, **options}), Inputs(content, sources)


def run(engine: Engine, job: tuple[JobOptions, Inputs], **hooks) -> Result:
    return engine.run(engine.plan(*job), RunHooks(**hooks))


def spec_of(engine: Engine, options: JobOptions):
    return job_spec(resolve(options), engine.precision, guided=False).loss


def test_layer_order_never_changes_the_loss_or_what_is_compiled(engine: Engine) -> None:
    forward = (("relu1_1", 1.0), ("relu2_1", 2.0), ("relu3_1", 0.5))
    backward = tuple(reversed(forward))
    first = run(engine, small(style_layers=forward, content_layers=(("relu3_2", 1.0), ("relu2_2", 3.0))))
    size_after_first = len(engine.step_cache)
    second = run(engine, small(style_layers=backward, content_layers=(("relu2_2", 3.0), ("relu3_2", 1.0))))
    assert len(engine.step_cache) == size_after_first  # the same entry: nothing new compiled
    assert first.pixels.tobytes() == second.pixels.tobytes()  # weights travel with their layers
    assert first.losses == second.losses


def test_the_cache_is_bounded_and_an_evicted_entry_is_freed(engine: Engine) -> None:
    lists = [(("relu1_1", 1.0),), (("relu2_1", 1.0),), (("relu1_2", 1.0),), (("relu2_2", 1.0),)]
    options = [small(style_layers=layers)[0] for layers in lists]
    run(engine, small(style_layers=lists[0]))
    first = engine.compiled(spec_of(engine, options[0]))
    watched = [weakref.ref(first), weakref.ref(first.objective)]
    step = first.optimizer(options[0].optimizer, options[0].lbfgs_history)
    watched.append(weakref.ref(step))
    del first, step
    for layers in lists[1:]:
        run(engine, small(style_layers=layers))
        assert len(engine.step_cache) <= 2
    assert spec_of(engine, options[0]) not in engine.step_cache
    assert engine.step_cache.evictions >= 2
    gc.collect()
    assert [w() for w in watched] == [None, None, None]  # nothing holds the evicted functions


def test_a_stop_during_the_style_pass_is_honoured_within_one_style_pass(engine: Engine) -> None:
    phases: list[str] = []
    polls_after_style_began = [0]

    def on_phase(name: str) -> None:
        phases.append(name)

    def stop() -> StopReason | None:
        # Asked for while the first style image is being processed (its tile
        # check), not before its pass begins.
        if "style 1 of 4" in phases:
            polls_after_style_began[0] += 1
            if polls_after_style_began[0] >= 2:
                return StopReason.DEADLINE
        return None

    options, inputs = small(styles=4, size=64, iterations=50, style_scale=2.0)
    result = run(engine, (options, inputs), on_phase=on_phase, stop=stop)
    assert "style 1 of 4" in phases and "style 2 of 4" not in phases
    assert not result.complete and result.stop_reason is StopReason.DEADLINE and result.iterations == 0
    np.testing.assert_array_equal(result.image, inputs.content)  # the starting image


def test_a_stop_around_the_content_targets_returns_the_starting_image(engine: Engine) -> None:
    phases: list[str] = []
    options, inputs = small(iterations=50)
    result = run(
        engine,
        (options, inputs),
        on_phase=phases.append,
        stop=lambda: StopReason.CLIENT if "content targets" in phases else None,
    )
    assert phases[-1] == "content targets" and result.iterations == 0 and not result.complete
    np.testing.assert_array_equal(result.image, inputs.content)


def test_a_stop_between_scales_keeps_the_coarse_result_at_full_size(engine: Engine) -> None:
    phases: list[str] = []
    options, inputs = small(size=64, iterations=12, multiscale=True, multiscale_min_size=32)
    result = run(
        engine,
        (options, inputs),
        on_phase=phases.append,
        stop=lambda: StopReason.TIME_LIMIT if "scale 2 of 2" in phases else None,
    )
    assert result.stop_reason is StopReason.TIME_LIMIT and not result.complete
    assert result.iterations == 8  # the first scale's share, 2:1
    assert result.image.shape == (64, 64, 3)
    assert not np.array_equal(result.image, inputs.content)
