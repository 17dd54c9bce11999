"""Video (issue 19): temporal consistency, speed and memory of StylizeVideo.

1. warping error: the mean |out_t − warp(out_{t−1})| over reliable pixels,
   warped by the TRUE motion of synthetic scenes (a pan; a square moving over
   a still background), with the temporal term (its default weight) against
   --temporal-weight 0 (every frame alone, still starting from the warped
   previous frame: Ruder's "init only"), and against frames that start from
   their own content. Same options, same engine, in one process.
2. speed at 256 px through a real server and client: seconds of the first
   frame and of the later ones (frames per minute), and the share of the
   optical flow's time that ran while the previous frame was optimized.
3. server RSS over a long video at 128 px (in-process server, few
   iterations): RSS after frame 10 and at the end.

    python -m benchmarks.video_bench [--frames-rss 300] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import emit, rss_bytes, run_worker


def warping_error(outputs: list[np.ndarray], motion: list[np.ndarray]) -> float:
    """Mean absolute difference to the previous output warped by the true motion, over reliable pixels."""
    from stylize_server.job import flow

    errors = []
    for t in range(1, len(outputs)):
        backward = motion[t]
        trust = flow.reliability(backward, -backward if backward.any() else backward)
        warped = flow.sample(outputs[t - 1], backward)
        diff = np.abs(outputs[t] - warped).mean(axis=-1)
        errors.append(float(diff[trust > 0].mean()))
    return float(np.mean(errors))


def run_frames(engine: Any, frames: list[np.ndarray], style: np.ndarray, weight: float, warm: bool, its: int) -> Any:
    from stylize_server.job import flow
    from stylize_server.job.options import Init, JobOptions, StyleSource
    from stylize_server.job.video import frame_inputs

    base = JobOptions(size=max(frames[0].shape[:2]), iterations=its, multiscale=False)
    base = base.with_value("temporal_weight", weight)
    outputs: list[np.ndarray] = []
    previous = None
    for t, content in enumerate(frames):
        found = flow.between(frames[t - 1], content) if t and warm else None
        inputs = frame_inputs(content, (StyleSource(style),), previous if warm else None, found)
        # A warm frame after the first runs half the iterations from its warped start (the server's
        # default); "alone" frames run them all from the content, as the server's temporal_weight 0.
        later = inputs.temporal is not None
        options = base.replace(iterations=its // 2, init=Init.IMAGE) if later else base
        result = engine.run(engine.plan(options, inputs))
        previous = result.pixels
        outputs.append(result.pixels)
    return outputs


def flicker(outputs: list[np.ndarray], motion: list[np.ndarray], gain: float = 8.0) -> list[np.ndarray]:
    """|out_t − warp(out_{t−1})| by the true motion, × gain, as grey images (black for frame 0)."""
    from stylize_server.job import flow

    maps = [np.zeros_like(outputs[0])]
    for t in range(1, len(outputs)):
        diff = np.abs(outputs[t] - flow.sample(outputs[t - 1], motion[t])).mean(axis=-1, keepdims=True)
        maps.append(np.repeat(np.clip(diff * gain, 0, 255), 3, axis=-1))
    return maps


def figure(path: str, rows: dict[str, list[np.ndarray]], frames: int = 4) -> None:
    """A grid: one row per label, the first frames left to right."""
    from PIL import Image, ImageDraw

    h, w = rows["content"][0].shape[:2]
    pad, label_w = 4, 150
    lines = list(rows)
    canvas = Image.new("RGB", (label_w + frames * (w + pad), len(lines) * (h + pad) + 24), "white")
    draw = ImageDraw.Draw(canvas)
    for r, name in enumerate(lines):
        draw.text((4, r * (h + pad) + h // 2 - 6), name, fill="black")
        for t in range(frames):
            tile = np.clip(rows[name][t], 0, 255).astype(np.uint8)
            canvas.paste(Image.fromarray(tile), (label_w + t * (w + pad), r * (h + pad)))
    note = "RANDOM VGG-19 weights: textures, not paintings; the flicker is what to compare"
    draw.text((4, len(lines) * (h + pad) + 6), note, fill="red")
    canvas.save(path)


def animation(path: str, left: list[np.ndarray], right: list[np.ndarray], fps: float = 4.0) -> None:
    """An animated GIF: every frame alone (left) beside the same frame with the temporal term (right)."""
    from PIL import Image

    tiles = [
        Image.fromarray(
            np.concatenate([a, np.full((a.shape[0], 4, 3), 255.0), b], axis=1).clip(0, 255).astype(np.uint8)
        )
        for a, b in zip(left, right)
    ]
    tiles[0].save(path, save_all=True, append_images=tiles[1:], duration=int(1000 / fps), loop=0)


def worker_consistency(size: int, weights: str, count: int, iterations: int, figure_path: str = "") -> dict[str, Any]:
    from stylize_server.engine.runner import Engine
    from tests.support.images import image_array
    from tests.support.scenes import moving_square, pan

    engine = Engine(weights=weights, precision="float32")
    style = image_array(size, size, seed=11)
    scenes = {
        "pan": pan(size, size * 3 // 4, count=count, step=3),
        "square": moving_square(size, size * 3 // 4, count=count, side=size // 4, step=3),
    }
    rows = []
    for name, (frames, motion) in scenes.items():
        row: dict[str, Any] = {"scene": name}
        pictures: dict[str, list[np.ndarray]] = {"content": [f.astype(np.float32) for f in frames]}
        for label, weight, warm in (("temporal", 1000.0, True), ("init_only", 0.0, True), ("alone", 0.0, False)):
            outputs = run_frames(engine, frames, style, weight, warm, iterations)
            row[label] = warping_error(outputs, motion)
            pictures[label] = outputs
        if figure_path and name == "pan":
            shown = {k: pictures[k] for k in ("content", "alone", "temporal")}
            shown["alone: flicker x8"] = flicker(pictures["alone"], motion)
            shown["temporal: flicker x8"] = flicker(pictures["temporal"], motion)
            figure(figure_path, shown)
            animation(str(Path(figure_path).with_suffix(".gif")), pictures["alone"], pictures["temporal"])
        row["temporal_over_alone"] = row["temporal"] / row["alone"]
        row["temporal_over_init_only"] = row["temporal"] / row["init_only"]
        rows.append(row)
    return {"size": size, "frames": count, "iterations": iterations, "rows": rows}


def _serve(frames: list[np.ndarray], size: int, iterations: int, every: int = 0) -> dict[str, Any]:
    """Stylize `frames` through an in-process server and the sync client."""
    from stylize import StyleTransferClient, VideoFrame, VideoSummary
    from tests.support.images import image_array
    from tests.support.server import running_server

    style = image_array(size, size, seed=11)
    times, rss = [], []
    summary: Any = None
    server = running_server(max_job_seconds=3600.0, max_pixels=512 * 512, max_video_frames=100000)
    with server as srv, StyleTransferClient(srv.address) as client:
        last = time.monotonic()
        events = client.stylize_video(
            frames, style, size=size, iterations=iterations, multiscale=False, progress_interval=1000
        )
        for event in events:
            if isinstance(event, VideoFrame):
                now = time.monotonic()
                times.append(now - last)
                last = now
                if every and (event.index + 1) % every == 0:
                    rss.append((event.index + 1, rss_bytes()))
            elif isinstance(event, VideoSummary):
                summary = event
    return {"times": times, "rss": rss, "summary": summary}


def worker_speed(size: int, count: int, iterations: int) -> dict[str, Any]:
    from tests.support.scenes import pan

    frames, _ = pan(size, size * 3 // 4, count=count, step=4)
    out = _serve(frames, size, iterations)
    s = out["summary"]
    times = out["times"]
    later = float(np.mean(times[1:]))
    return {
        "size": size,
        "frames": count,
        "iterations": iterations,
        "frame_iterations": iterations // 2,
        "first_frame_seconds": times[0],
        "later_frame_seconds": later,
        "frames_per_minute_later": 60.0 / later,
        "flow_seconds": s.flow_seconds,
        "flow_hidden_seconds": s.flow_hidden_seconds,
        "flow_hidden_share": s.flow_hidden_seconds / s.flow_seconds if s.flow_seconds else 0.0,
        "flow_seconds_per_frame": s.flow_seconds / max(1, count - 1),
    }


def worker_rss(size: int, count: int, iterations: int) -> dict[str, Any]:
    from tests.support.scenes import pan

    frames, _ = pan(size, size * 3 // 4, count=count, step=1)
    out = _serve(frames, size, iterations, every=10)
    rss = out["rss"]
    after_10 = next(r for i, r in rss if i == 10)
    return {
        "size": size,
        "frames": count,
        "iterations": iterations,
        "rss_after_10_mib": after_10 / 2**20,
        "rss_end_mib": rss[-1][1] / 2**20,
        "rss_max_mib": max(r for _, r in rss) / 2**20,
        "growth_after_10_mib": (max(r for _, r in rss) - after_10) / 2**20,
        "series": [(i, r / 2**20) for i, r in rss],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs="+")
    parser.add_argument("--weights", default="random:0")
    parser.add_argument("--size", type=int, default=96, help="consistency scenes' size")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--speed-iterations", type=int, default=20)
    parser.add_argument("--speed-frames", type=int, default=6)
    parser.add_argument("--frames-rss", type=int, default=300)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--figure", default="", help="write the pan's first frames (alone vs temporal) here")
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        if kind == "consistency":
            emit(worker_consistency(int(rest[0]), rest[1], int(rest[2]), int(rest[3]), *rest[4:]))
        elif kind == "speed":
            emit(worker_speed(int(rest[0]), int(rest[1]), int(rest[2])))
        elif kind == "rss":
            emit(worker_rss(int(rest[0]), int(rest[1]), int(rest[2])))
        return
    report: dict[str, Any] = {}
    sizes = [str(args.size), args.weights, str(args.frames), str(args.iterations), args.figure]
    c = run_worker("video_bench", ["consistency", *sizes])
    report["consistency"] = c
    print(f"\nwarping error at {c['size']} px, {c['frames']} frames, {c['iterations']} iterations (later: half)")
    print(f"{'scene':>8} {'temporal':>9} {'init only':>10} {'alone':>8} {'temporal/alone':>15}")
    for row in c["rows"]:
        print(
            f"{row['scene']:>8} {row['temporal']:9.2f} {row['init_only']:10.2f} {row['alone']:8.2f}"
            f" {row['temporal_over_alone']:15.2f}"
        )
    s = run_worker("video_bench", ["speed", "256", str(args.speed_frames), str(args.speed_iterations)])
    report["speed"] = s
    print(f"\nStylizeVideo at 256 px, {s['iterations']} iterations (later frames {s['frame_iterations']}):")
    print(
        f"  first frame {s['first_frame_seconds']:.1f} s, later {s['later_frame_seconds']:.1f} s"
        f" ({s['frames_per_minute_later']:.1f} frames/min); flow {s['flow_seconds_per_frame'] * 1000:.0f} ms/frame,"
        f" {s['flow_hidden_share']:.0%} hidden"
    )
    r = run_worker("video_bench", ["rss", "128", str(args.frames_rss), "4"], timeout=7200)
    report["rss"] = r
    print(
        f"\nserver RSS over {r['frames']} frames at 128 px: {r['rss_after_10_mib']:.0f} MiB after 10,"
        f" max {r['rss_max_mib']:.0f} MiB, end {r['rss_end_mib']:.0f} MiB (growth {r['growth_after_10_mib']:+.0f} MiB)"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "video.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
