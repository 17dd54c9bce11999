"""Memory over time: jobs of mixed sizes, aspect ratios, optimizers, output
formats and previews, one after another.

The warm-up runs one job of every (size, aspect ratio, optimizer) the run
will use, so that one-time, per-shape costs (compiled kernels, allocator
pools) are paid before the baseline is taken. After it, the server's resident
memory may grow by less than a small bound over all the jobs.

Per-shape costs are real, though: the full run then sends jobs of shapes
never seen before and reports the growth per new shape (a figure, not a
check), because clients choose their image sizes freely.
"""

from __future__ import annotations

import contextlib
import itertools
import pathlib
import threading

from stylize_api.v1 import stylize_pb2 as pb
from tests.support.images import encode

from .harness import (
    Profile,
    ScenarioResult,
    ServerProc,
    image_bytes,
    make_request,
    result_problems,
    rng_for,
    scenario,
    spawn_server,
    stylize,
)

FORMATS = (pb.OUTPUT_FORMAT_PNG, pb.OUTPUT_FORMAT_JPEG, pb.OUTPUT_FORMAT_WEBP)
OPTIMIZERS = (pb.OPTIMIZER_LBFGS, pb.OPTIMIZER_ADAM)
ASPECTS = (1.0, 4 / 3, 3 / 4)


def _content(size: int, aspect: float) -> tuple[int, int]:
    """(width, height) of a content image whose longest side is `size`."""
    if aspect >= 1:
        return size, max(16, round(size / aspect))
    return max(16, round(size * aspect)), size


def _job(index: int, size: int, aspect: float, optimizer: int) -> pb.StylizeRequest:
    rng = rng_for("memory", index)
    return make_request(
        size=size,
        iterations=rng.randint(2, 6),
        content=_content(size, aspect),
        style=(rng.choice((32, 48, 64)), rng.choice((32, 48, 64))),
        seed=index % 7,
        optimizer=optimizer,
        output_format=rng.choice(FORMATS),
        preview_max_side=rng.choice((0, 0, 32)),
        progress_interval=rng.choice((1, 2, 5)),
        request_id=f"memory-{index}",
    )


def run_memory(server: ServerProc, profile: Profile) -> ScenarioResult:
    with scenario("memory over time") as res:
        stub = server.stub()
        problems: list[str] = []
        shapes = list(itertools.product(profile.memory_sizes, ASPECTS, OPTIMIZERS))

        def run(index: int, request: pb.StylizeRequest) -> None:
            problems.extend(f"job {index}: {p}" for p in result_problems(stylize(stub, request, timeout=120), request))

        for i, (size, aspect, optimizer) in enumerate(shapes):
            run(i, _job(i, size, aspect, optimizer))
        warm_rss = server.rss_mb()
        rss: list[float] = []
        rng = rng_for("memory-order")
        for i in range(profile.memory_jobs):
            size, aspect, optimizer = rng.choice(shapes)
            run(len(shapes) + i, _job(len(shapes) + i, size, aspect, optimizer))
            rss.append(server.rss_mb())
        growth = rss[-1] - warm_rss
        half = rss[len(rss) // 2]
        res.figures.update(
            jobs=profile.memory_jobs,
            warmup_jobs=len(shapes),
            rss_after_warmup_mb=round(warm_rss, 1),
            rss_end_mb=round(rss[-1], 1),
            rss_max_mb=round(max(rss), 1),
            rss_growth_mb=round(growth, 1),
            rss_growth_second_half_mb=round(rss[-1] - half, 1),
        )
        res.check("every job whole", not problems, "; ".join(problems[:5]))
        res.check(
            f"RSS growth after warm-up < {profile.memory_rss_bound_mb:g} MiB",
            growth < profile.memory_rss_bound_mb,
            f"{warm_rss:.1f} -> {rss[-1]:.1f} MiB (max {max(rss):.1f})",
        )
        if profile.memory_novel_shapes:
            before = server.rss_mb()
            for k in range(profile.memory_novel_shapes):
                # Content 40..139 px wide at size 64: a new output shape every job.
                request = make_request(
                    size=64, iterations=2, content=(40 + k, 64 + (k % 3)), seed=k, request_id=f"novel-{k}"
                )
                run(10_000 + k, request)
            after = server.rss_mb()
            res.figures.update(
                novel_shape_jobs=profile.memory_novel_shapes,
                rss_growth_novel_shapes_mb=round(after - before, 1),
                rss_per_novel_shape_kb=round((after - before) * 1024 / profile.memory_novel_shapes, 1),
            )
            res.check("novel-shape jobs whole", not problems, "; ".join(problems[:5]))
    return res


MASK_BUDGET_MIB = 640
MASK_REGIONS = 8
MASK_SIZE = 256


def _stripe_mask(index: int, count: int, side: int) -> bytes:
    """A greyscale PNG: white on the index-th of `count` vertical stripes."""
    import numpy as np

    mask = np.zeros((side, side), np.uint8)
    mask[:, index * side // count : (index + 1) * side // count] = 255
    return encode(mask)


def _masked_request(side: int, regions: int, iterations: int, seed: int) -> pb.StylizeRequest:
    request = make_request(size=side, iterations=iterations, content=(side, side), seed=seed)
    del request.styles[:]
    for r in range(regions):
        request.styles.append(
            pb.StyleImage(
                image=pb.Image(data=image_bytes(64, 64, seed=seed + 100 + r)),
                mask=pb.Image(data=_stripe_mask(r, regions, side)),
            )
        )
    return request


def run_masked_budget(profile: Profile) -> ScenarioResult:
    """Two 8-region masked jobs admitted together under a 640 MiB budget
    (issue 17, item 3): their peak RSS rise stays within the budget, which
    admission charged their estimates against. Before the guided Gram looped
    over regions, the pair used 839 MB (1.31x the budget)."""
    with scenario("masks under a budget") as res:
        args = ["--device-memory-budget", f"{MASK_BUDGET_MIB}MiB", "--max-concurrent-jobs", "2", "--max-styles"]
        with spawn_server(*args, str(MASK_REGIONS), ready_timeout=600) as server:
            # Trace the guided step (any size, any number of regions: one trace).
            warm = stylize(server.stub(), _masked_request(64, 2, 2, seed=1), timeout=300)
            with contextlib.suppress(OSError):  # VmHWM starts afresh (Linux >= 4.0)
                pathlib.Path(f"/proc/{server.pid}/clear_refs").write_text("5")
            before = server.rss_mb()
            outcomes: list = [None, None]

            def one(i: int) -> None:
                request = _masked_request(MASK_SIZE, MASK_REGIONS, 6, seed=10 + i)
                outcomes[i] = (request, stylize(server.stub(), request, timeout=600))

            threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            peak = server.peak_rss_mb() - before
        problems = [p for request, outcome in outcomes for p in result_problems(outcome, request)]
        estimates = [o.started.estimate.device_memory_bytes / 2**20 for _, o in outcomes if o.started is not None]
        res.figures.update(
            regions=MASK_REGIONS,
            size=MASK_SIZE,
            budget_mb=MASK_BUDGET_MIB,
            estimates_mb=[round(e, 1) for e in estimates],
            peak_rss_growth_mb=round(peak, 1),
            peak_over_budget=round(peak / MASK_BUDGET_MIB, 2),
        )
        res.check("the warm-up job whole", warm.ok, f"{warm.code.name}: {warm.details}")
        res.check("both masked jobs whole", not problems, "; ".join(problems[:4]))
        res.check(
            "peak RSS growth within the budget",
            peak <= MASK_BUDGET_MIB,
            f"{peak:.0f} MiB against {MASK_BUDGET_MIB} MiB",
        )
    return res
