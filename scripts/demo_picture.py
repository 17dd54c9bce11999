"""The picture of one `make demo` run (docs/demo.png is one): content, style,
three preview frames and the result in a row, labelled with the iterations
they show, and a title that states the size, the iteration budget and the
weights the run used, so that the picture cannot claim a run it did not come
from. With random weights it says so in red, and in the PNG's text chunks.

Also marks the demo's result.png with the same facts (PNG text chunks), so the
file itself says when it was made by an untrained network.
"""

from __future__ import annotations

import re
from pathlib import Path

from demo_controls import compose
from PIL import Image, PngImagePlugin

# Frames shown between the style and the result: these fractions of the run.
FRACTIONS = (1 / 30, 1 / 10, 1 / 3)
FRAME_NAME = re.compile(r"frame_(\d+)\.png$")


def run_title(size: int, iterations: int, weights: str) -> str:
    return f"stylize demo: {size} px, {iterations} iterations, weights {weights}"


def random_warning(weights: str) -> str:
    return f"Made with RANDOM weights ({weights}): the network is untrained, so this is not a painting."


def pick_frames(frames: list[Path], iterations: int) -> list[tuple[int, Path]]:
    """The saved frames nearest to FRACTIONS of the run, in order, each at most
    once; the last iteration's frame is left out (the result shows it)."""
    numbered = sorted(
        (int(m.group(1)), path)
        for path in frames
        if (m := FRAME_NAME.search(path.name)) and int(m.group(1)) < iterations
    )
    chosen: list[tuple[int, Path]] = []
    for fraction in FRACTIONS:
        left = [item for item in numbered if item not in chosen]
        if left:
            chosen.append(min(left, key=lambda item: abs(item[0] - fraction * iterations)))
    return sorted(chosen)


def draw_demo(
    content: Path,
    style: Path,
    frames: list[Path],
    result: Path,
    path: Path,
    *,
    size: int,
    iterations: int,
    weights: str,
    random_weights: bool,
) -> Path:
    """Compose the strip into `path` (PNG, with Title, Description and, for
    random weights, Warning text chunks)."""
    row = [("content", content), ("style", style)]
    row += [(f"iteration {i}", frame) for i, frame in pick_frames(frames, iterations)]
    row.append((f"result, {iterations} iterations", result))
    warning = random_warning(weights) if random_weights else None
    return compose([row], run_title(size, iterations, weights), warning, path)


def mark_result(result: Path, *, size: int, iterations: int, weights: str, random_weights: bool) -> None:
    """Add the run's facts to result.png's text chunks (pixels unchanged)."""
    with Image.open(result) as img:
        pixels, text = img.copy(), dict(getattr(img, "text", {}))
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    info.add_text("Description", run_title(size, iterations, weights))
    if random_weights:
        info.add_text("Warning", random_warning(weights))
    pixels.save(result, format="PNG", pnginfo=info)
