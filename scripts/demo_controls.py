"""`make demo CONTROLS=1`: the controls of Gatys et al. 2017 through the real
server and the `stylize` CLI, drawn into one picture (docs/controls.png).

Four jobs on the sample landscape: two paintings with complementary masks
(the sky in one style, the land in the other: STYLE@MASK), then one painting
with each colour control (none, luminance, histogram). The picture shows the
content, the masks, the styles and the four results side by side, and says
so when the server's weights are random (its results are then not art).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from make_samples import ControlSamples
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

TILE_HEIGHT = 176
PAD = 10
LABEL_HEIGHT = 26
BACKGROUND = (250, 250, 247)
INK = (30, 30, 30)
WARNING_INK = (176, 24, 24)


@dataclass(frozen=True)
class DemoJob:
    """One CLI job of a picture demo: `stylize run INPUTS... FLAGS`."""

    name: str  # its key in the results, and its result file's name
    label: str
    inputs: tuple[str, ...]  # CONTENT STYLE[@MASK]...
    flags: tuple[str, ...] = ()


def control_jobs(samples: ControlSamples) -> list[DemoJob]:
    masked = (str(samples.content), f"{samples.style2}@{samples.sky}", f"{samples.style}@{samples.ground}")
    single = (str(samples.content), str(samples.style))
    return [
        DemoJob("masked", "two styles, masked", masked),
        *(
            DemoJob(f"color-{mode}", f"colour: {mode}", single, ("--color-control", mode))
            for mode in ("none", "luminance", "histogram")
        ),
    ]


def run_jobs(
    cli: Sequence[str],
    address: str,
    jobs: Sequence[DemoJob],
    out: Path,
    size: int,
    iterations: int,
    say: Callable[[str], None],
    *,
    prefix: str = "",
) -> dict[str, Path]:
    """Run each job with the CLI; the result file of each by its name
    (out/<prefix><name>.png). Raises RuntimeError naming the job when the CLI
    fails."""
    results = {}
    for job in jobs:
        result = out / f"{prefix}{job.name}.png"
        command = [
            *cli,
            "run",
            *job.inputs,
            "-o",
            str(result),
            "--server",
            address,
            "--size",
            str(size),
            "--iterations",
            str(iterations),
            *job.flags,
            "--quiet",
        ]
        say(f"{job.label}: {' '.join(command[len(cli) :])}")
        code = subprocess.call(command)
        if code != 0:
            raise RuntimeError(f"the stylize CLI failed on the {job.label!r} job (exit code {code})")
        results[job.name] = result
    return results


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size)
    except (TypeError, OSError):  # a Pillow without FreeType
        return ImageFont.load_default()


def _tile(path: Path) -> Image.Image:
    with Image.open(path) as img:
        rgb = img.convert("RGB")
    width = max(1, round(rgb.width * TILE_HEIGHT / rgb.height))
    return rgb.resize((width, TILE_HEIGHT), Image.Resampling.LANCZOS)


def compose(rows: list[list[tuple[str, Path]]], title: str, warning: str | None, path: Path) -> Path:
    """Labelled tiles, one row per list, a title above and the warning (if any) below."""
    tiles = [[(label, _tile(p)) for label, p in row] for row in rows]
    width = max(sum(t.width for _, t in row) + PAD * (len(row) + 1) for row in tiles)
    title_h, footer_h = 40, 34 if warning else 0
    height = title_h + len(tiles) * (TILE_HEIGHT + LABEL_HEIGHT + PAD) + PAD + footer_h
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((PAD, 10), title, fill=INK, font=_font(20))
    y = title_h
    label_font = _font(15)
    for row in tiles:
        x = PAD
        for label, tile in row:
            canvas.paste(tile, (x, y))
            draw.text((x + 2, y + TILE_HEIGHT + 5), label, fill=INK, font=label_font)
            x += tile.width + PAD
        y += TILE_HEIGHT + LABEL_HEIGHT + PAD
    if warning:
        draw.text((PAD, y + 4), warning, fill=WARNING_INK, font=_font(17))
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()  # the same words, machine-readable
    info.add_text("Title", title)
    info.add_text("Description", "; ".join(f"{label}: {p.name}" for row in rows for label, p in row))
    if warning:
        info.add_text("Warning", warning)
    canvas.save(path, format="PNG", optimize=True, pnginfo=info)
    return path


def draw_controls(
    samples: ControlSamples, results: dict[str, Path], path: Path, weights: str, random_weights: bool
) -> Path:
    rows = [
        [
            ("content", samples.content),
            ("mask: sky", samples.sky),
            ("mask: land", samples.ground),
            ("style A (sky)", samples.style2),
            ("style B (land)", samples.style),
            ("A@sky + B@land", results["masked"]),
        ],
        [
            ("style", samples.style),
            ("colour control: none", results["color-none"]),
            ("luminance", results["color-luminance"]),
            ("histogram", results["color-histogram"]),
        ],
    ]
    title = "stylize: spatial control (masks) and colour control (Gatys et al. 2017)"
    warning = None
    if random_weights:
        warning = f"Made with RANDOM weights ({weights}): the network is untrained, so these are not paintings."
    return compose(rows, title, warning, path)
