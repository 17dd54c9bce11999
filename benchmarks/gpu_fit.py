"""The measured profile from gpu-check's measurements (gpu_check.py): what
`profiles.Profile` figures make the cost model match them. TensorFlow-free.

* time: both rates scaled by one factor, the median of estimated over
  measured seconds per iteration (whole image, XLA off: what a server runs by
  default). Whole-image work grows with the pixels in multiply-adds and in
  activation values alike, so these runs fix the two rates' common scale and
  not their ratio, which stays the built-in one.
* memory: estimated = keep x activations (at keep 1) + image-sized vectors +
  base, so the measured peaks over the vectors fix `keep` and `base_bytes` by
  a line through the sizes (one size: `base_bytes` stays). A MARGIN on top,
  so that admission errs on the safe side, and never below any measurement.
* `tile_seconds`: not measured (no tiled run), the built-in one stays.

`write_profile` writes them in the file `--device-profile` reads (profiles.py).
"""

from __future__ import annotations

import datetime
import json
import math
import pathlib
import statistics
from collections.abc import Iterable
from typing import Any

from stylize_server.job import profiles

MIB = 1 << 20
MARGIN = 1.1  # on `keep`: estimates a tenth above the measured peaks
KEEP_STEP = 0.05
BASE_STEP = 16 * MIB
RATES = ("gmacs_per_second", "gvalues_per_second")


def fit(rows: list[dict[str, Any]], figures: dict[str, Any], bounds: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """`rows`: one precision's measured rows (XLA off, status ok); `figures`:
    the profile they were estimated with; `bounds`: profiles.FIGURES. Returns
    the fitted figures and, per row, measured over the fitted estimate."""
    if not rows:
        raise ValueError("no measurement to fit")
    speed = statistics.median(r["estimated_seconds_per_iteration"] / r["seconds_per_iteration"] for r in rows)
    out = {name: figures[name] for name in bounds}
    for name in RATES:
        out[name] = figures[name] * speed
    keep, base = _memory(rows, float(figures["base_bytes"]))
    out["keep"], out["base_bytes"] = keep, base
    for name, (low, high) in bounds.items():
        out[name] = min(max(out[name], low), high)
    out["base_bytes"] = int(out["base_bytes"])
    residuals = [
        {
            "size": r["size"],
            "seconds": r["seconds_per_iteration"] / (r["estimated_seconds_per_iteration"] / speed),
            "memory": r["peak_bytes"] / _memory_estimate(r, out["keep"], out["base_bytes"]),
        }
        for r in rows
    ]
    return {"figures": out, "speed_factor": speed, "residuals": residuals}


def _memory(rows: list[dict[str, Any]], base: float) -> tuple[float, int]:
    """(keep, base_bytes) with the margin: the least-squares line through
    (activations, peak - vectors); `base` when one size or the line's
    intercept is negative (then `keep` through the worst point)."""
    points = [(float(r["activation_bytes_at_keep_1"]), float(r["peak_bytes"] - r["vector_bytes"])) for r in rows]
    xs = [x for x, _ in points]
    if len(set(xs)) > 1:
        mean_x, mean_y = statistics.fmean(xs), statistics.fmean(y for _, y in points)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x in xs)
        intercept = mean_y - slope * mean_x
        if intercept >= 0 and slope > 0:
            base = intercept
    keep = max((y - base) / x for x, y in points)
    keep = math.ceil(keep * MARGIN / KEEP_STEP) * KEEP_STEP
    base_bytes = math.ceil(max(base, 0.0) / BASE_STEP) * BASE_STEP
    # Never below a measurement (the line may pass under the largest one).
    keep = max([keep] + [math.ceil((y - base_bytes) / x / KEEP_STEP) * KEEP_STEP for x, y in points])
    return keep, base_bytes


def _memory_estimate(row: dict[str, Any], keep: float, base: int) -> float:
    optimization = keep * row["activation_bytes_at_keep_1"] + row["vector_bytes"]
    return float(max(optimization, row["style_bytes"]) + base)


def fit_profiles(rows: list[dict[str, Any]], precisions: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per precision measured with XLA off: its fit."""
    fits = {}
    for precision in precisions:
        mine = [r for r in rows if r["precision"] == precision and not r["xla"] and r["status"] == "ok"]
        if mine:
            fits[precision] = fit(mine, mine[0]["profile"], profiles.FIGURES)
    return fits


def write_profile(path: pathlib.Path, device: dict[str, Any], fits: dict[str, dict[str, Any]]) -> None:
    found = [profiles.Profile(device["kind"], p, **f["figures"]) for p, f in fits.items()]
    doc = profiles.profile_document(
        {k: device[k] for k in ("kind", "name", "tensorflow", "cuda", "tf32", "memory_bytes")},
        found,
        written_by="make gpu-check",
        written_at=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    path.write_text(json.dumps(doc, indent=2) + "\n")
    profiles.load_file(path)  # what the server will read: never leave a file it would refuse
