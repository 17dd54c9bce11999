"""Masked jobs stay within their memory estimate (issue 17, item 3): the
estimate is what admission charges against the budget, so a job that uses
more than it breaks the budget's guarantee. Before the guided Gram looped
over regions, 8 masks at 256 px used 2.45x the estimate (early layers
2.98x).

A sparse grid that still covers each option both ways: masks 4 and 8, early
(relu1_1..relu2_2) and late (relu1_1..relu5_1) style layers, float32 and
bfloat16, whole and tiled, 256 and 512 px. Each case runs in its own
process (tests/support/maskmem.py: peak RSS rise of a real job, history
full), two processes at a time; in one process a case would reuse memory an
earlier one freed, and read low.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.server import ROOT

# Two cases, one in each of two processes that run at once, cover every option
# both ways. Measured on the 2-core build machine, MiB used / estimated:
# 699/871 for the first; the second is a small tiled job, whose estimate is
# mostly the profile's fixed 64 MiB a job.
CASES = (
    "512:8:early:float32:whole",  # the widest maps, the most regions, the larger size: the worst case
    "256:4:late:bfloat16:tiled",
)


def measure(case: str) -> dict:
    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=os.pathsep.join([str(ROOT / "server"), str(ROOT / "client"), str(ROOT)]),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.maskmem", case],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=900,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1])


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_masked_jobs_use_at_most_their_estimate() -> None:
    with ThreadPoolExecutor(2) as pool:
        rows = list(pool.map(measure, CASES))
    table = "\n".join(
        f"{r['case']:>28}: {r['used_bytes'] / 2**20:7.0f} MiB used, {r['estimated_bytes'] / 2**20:7.0f} MiB "
        f"estimated, {r['ratio']:.2f}x"
        for r in rows
    )
    print(table)
    assert [r["case"] for r in rows] == list(CASES)
    for r in rows:
        assert r["ratio"] <= 1.0, table
        # The measurement sees the job: a peak of nothing would pass anything.
        assert r["ratio"] >= 0.25, table
