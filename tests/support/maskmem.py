"""Peak memory of masked jobs against the cost model's estimate (issue 17,
item 3), measured in one process over several configurations:

    python -m tests.support.maskmem CASE [CASE ...]
    CASE = side:regions:layers:precision:run, e.g. 256:8:early:float32:tiled
           layers: late (the default style layers, relu1_1..relu5_1) or early
                   (relu1_1, relu1_2, relu2_1, relu2_2: the widest maps)
           run:    whole, or tiled (tiles of side/2, cut after block 3)

Prints one JSON line per case: the peak RSS rise over the run of a job
(targets and L-BFGS steps, history full) and the estimate it was admitted
with. Each case first runs once at a small size, so that its functions are
traced before the baseline; the peak is then reset (/proc/self/clear_refs)
after the freed heap is handed back (malloc_trim), so that one process
measures each case as a fresh one would. On a GPU the figure is TensorFlow's
peak device memory instead.
"""

from __future__ import annotations

import ctypes
import gc
import json
import sys
from dataclasses import dataclass
from typing import Any

EARLY = ("relu1_1", "relu1_2", "relu2_1", "relu2_2")
HISTORY = 3  # filled by the measured job's iterations
ITERATIONS = HISTORY + 1


@dataclass(frozen=True)
class Case:
    side: int
    regions: int
    layers: str
    precision: str
    run: str

    @classmethod
    def parse(cls, text: str) -> Case:
        side, regions, layers, precision, run = text.split(":")
        return cls(int(side), int(regions), layers, precision, run)

    def __str__(self) -> str:
        return f"{self.side}:{self.regions}:{self.layers}:{self.precision}:{self.run}"


def _status_kib(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(key)


def _settle() -> int:
    """Hand freed heap back to the system, reset the peak; the RSS now."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")
    return _status_kib("VmRSS") * 1024


def _inputs(side: int, regions: int) -> Any:
    """A side x side content and `regions` styles on vertical stripes."""
    import numpy as np

    from stylize_server.job.options import Inputs, StyleSource

    rng = np.random.default_rng(regions)
    content = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    styles = []
    for r in range(regions):
        mask = np.zeros((side, side), np.float32)
        mask[:, r * side // regions : (r + 1) * side // regions] = 1.0
        style = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        styles.append(StyleSource(style, mask=mask))
    return Inputs(content, tuple(styles))


def plan(engine: Any, case: Case, side: int) -> Any:
    """The case's job at `side`, with the estimate of the case's tiling."""
    from stylize_server.engine import regions
    from stylize_server.job import cost, tilings
    from stylize_server.job.geometry import Scale
    from stylize_server.job.options import JobOptions, resolve
    from stylize_server.job.plan import JobPlan
    from stylize_server.job.types import Estimate

    inputs = _inputs(side, case.regions)
    layers = tuple((n, 1.0) for n in EARLY) if case.layers == "early" else JobOptions().style_layers
    options = resolve(
        JobOptions(size=side, iterations=ITERATIONS, multiscale=False, lbfgs_history=HISTORY, style_layers=layers),
        engine.default_pooling,
    )
    count = regions.count_regions(inputs.styles, options.unmasked_region)
    tiling = tilings.Tiling(side // 2, 3, 0) if case.run == "tiled" else tilings.Tiling()
    scale = cost.scale_estimate(
        options, inputs.shapes, Scale(side, ITERATIONS), count, engine.profile, tiling, HISTORY, engine.term_costs
    )
    assert bool(scale.tile_size) == (case.run == "tiled"), scale
    return JobPlan(options, Estimate(inputs.shapes.pixels, (scale,), scale.device_memory_bytes, 0.0, 0.0), inputs)


def measure(engine: Any, case: Case) -> dict[str, Any]:
    import tensorflow as tf

    gpu = bool(tf.config.list_physical_devices("GPU"))
    engine.run(plan(engine, case, 128))  # trace this case's functions
    base = _settle()
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    job = plan(engine, case, case.side)
    result = engine.run(job)
    assert result.iterations == ITERATIONS, result.iterations
    used = int(tf.config.experimental.get_memory_info("GPU:0")["peak"]) if gpu else _status_kib("VmHWM") * 1024 - base
    estimated = job.scales[0].device_memory_bytes
    return {"case": str(case), "used_bytes": used, "estimated_bytes": estimated, "ratio": used / estimated}


def main(argv: list[str]) -> None:
    from stylize_server.engine import Engine

    cases = [Case.parse(a) for a in argv]
    engines: dict[str, Any] = {}
    for case in cases:
        if case.precision not in engines:
            engines[case.precision] = Engine(weights="random:0", precision=case.precision)
        print(json.dumps(measure(engines[case.precision], case)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
