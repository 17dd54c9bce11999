#!/usr/bin/env python3
"""Draw the demo's samples: a synthetic landscape (content) and a swirling
brush-stroke painting (style), with numpy and Pillow only; with --controls
also a second painting in warm colours and the landscape's sky and ground
masks, for the spatial-control demo.

All are procedural and seeded, so the same command writes byte-identical PNGs
on every machine and the demo needs no download beyond the model weights.

    python scripts/make_samples.py OUTDIR [--size 512] [--controls]
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Drawn at this multiple of the output size, then downsampled: anti-aliasing
# for free, since ImageDraw itself draws hard edges.
SUPERSAMPLE = 2

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class SamplePaths:
    content: Path
    style: Path


@dataclass(frozen=True)
class ControlSamples:
    """The spatial-control set: the landscape, two paintings, and the masks of
    its sky and of everything below the mountains' ridge (white = that region)."""

    content: Path
    style: Path
    style2: Path
    sky: Path
    ground: Path


NIGHT = {
    "blues": [(18, 40, 98), (32, 70, 150), (64, 110, 190), (110, 150, 210), (20, 90, 120)],
    "lights": [(242, 202, 64), (250, 228, 120), (236, 236, 206), (214, 160, 50)],
    "ground": ((24, 48, 110), (14, 28, 60)),
}
EMBERS = {
    "blues": [(120, 30, 24), (168, 64, 30), (196, 110, 42), (92, 40, 52), (150, 84, 60)],
    "lights": [(250, 214, 120), (255, 240, 190), (232, 180, 90), (210, 226, 200)],
    "ground": ((110, 40, 30), (60, 22, 28)),
}


def _ridge(rng: np.random.Generator, width: int, base: float, amplitude: float, waves: int) -> np.ndarray:
    """Heights (pixels from the top) of a hill line: a sum of random sines."""
    x = np.linspace(0.0, 1.0, width)
    y = np.full(width, base)
    for k in range(1, waves + 1):
        y += amplitude / k * np.sin(2 * math.pi * (k * x * rng.uniform(0.6, 1.4) + rng.uniform(0, 1)))
    return y


def _fill_below(
    canvas: np.ndarray, ridge: np.ndarray, top: RGB, bottom: RGB, rng: np.random.Generator, grain: float
) -> None:
    """Paint everything under a ridge with a vertical gradient and some texture."""
    h, w, _ = canvas.shape
    rows = np.arange(h)[:, None]
    mask = rows >= ridge[None, :]
    t = np.clip((rows - ridge[None, :]) / max(1.0, h - ridge.min()), 0.0, 1.0)[..., None]
    colour = (1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32)
    # Streaks a little longer horizontally than vertically read as grass/rock.
    noise = rng.normal(0.0, grain, (h // 2 + 1, w // 6 + 1)).astype(np.float32)
    noise = np.kron(noise, np.ones((2, 6), np.float32))[:h, :w, None]
    canvas[mask] = (colour + noise)[mask]


def make_content(size: int = 512, seed: int = 7) -> Image.Image:
    """A landscape: sky gradient, sun, clouds, mountains, hills, a house, a tree."""
    return _landscape(size, seed)[0]


def make_sky_mask(size: int = 512, seed: int = 7) -> Image.Image:
    """The landscape's sky (above the mountains' ridge) in white, the rest black."""
    return _landscape(size, seed)[1]


def _landscape(size: int, seed: int) -> tuple[Image.Image, Image.Image]:
    rng = np.random.default_rng(seed)
    w, h = size * SUPERSAMPLE, (size * 3 // 4) * SUPERSAMPLE
    horizon = 0.55 * h

    rows = np.arange(h, dtype=np.float32)[:, None, None]
    t = np.clip(rows / horizon, 0, 1)
    sky = (1 - t) * np.array([38, 84, 168], np.float32) + t * np.array([250, 212, 168], np.float32)
    canvas = np.broadcast_to(sky, (h, w, 3)).copy()

    sun_x, sun_y, sun_r = 0.76 * w, 0.22 * h, 0.055 * w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dist = np.hypot(xx - sun_x, yy - sun_y)
    glow = np.exp(-((dist / (4 * sun_r)) ** 2))[..., None]
    canvas = canvas * (1 - 0.55 * glow) + np.array([255, 236, 170], np.float32) * 0.55 * glow
    canvas[dist < sun_r] = (255, 238, 140)

    # Mountains, far hills, near meadow: each a ridge filled with a gradient.
    mountains = _ridge(rng, w, 0.42 * h, 0.09 * h, 5)
    sky_mask = Image.fromarray(((np.arange(h)[:, None] < mountains[None, :]) * 255).astype(np.uint8))
    _fill_below(canvas, mountains, (118, 128, 172), (92, 112, 150), rng, 3.0)
    _fill_below(canvas, _ridge(rng, w, 0.56 * h, 0.04 * h, 3), (78, 138, 74), (52, 104, 58), rng, 6.0)
    _fill_below(canvas, _ridge(rng, w, 0.74 * h, 0.02 * h, 2), (112, 170, 72), (66, 128, 48), rng, 10.0)

    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))

    clouds = Image.new("L", (w, h), 0)
    cloud_draw = ImageDraw.Draw(clouds)
    for cx, cy in ((0.18, 0.14), (0.45, 0.08), (0.58, 0.26)):
        for _ in range(7):
            ox, oy = rng.normal(0, 0.035 * w), rng.normal(0, 0.012 * h)
            rx, ry = rng.uniform(0.03, 0.06) * w, rng.uniform(0.02, 0.035) * h
            x0, y0 = cx * w + ox, cy * h + oy
            cloud_draw.ellipse((x0 - rx, y0 - ry, x0 + rx, y0 + ry), fill=210)
    clouds = clouds.filter(ImageFilter.GaussianBlur(radius=0.008 * w))
    image.paste(Image.new("RGB", (w, h), (252, 250, 246)), mask=clouds)

    draw = ImageDraw.Draw(image)
    # The house sits on the near meadow, left of centre.
    hx, hy, hw, hh = 0.22 * w, 0.70 * h, 0.20 * w, 0.15 * h
    draw.rectangle((hx + 0.13 * hw, hy - 0.95 * hh, hx + 0.25 * hw, hy - 0.45 * hh), fill=(120, 62, 48))  # chimney
    draw.polygon(
        [(hx - 0.08 * hw, hy - 0.42 * hh), (hx + 0.5 * hw, hy - 1.05 * hh), (hx + 1.08 * hw, hy - 0.42 * hh)],
        fill=(168, 52, 42),
    )  # roof
    draw.rectangle((hx, hy - 0.45 * hh, hx + hw, hy + 0.55 * hh), fill=(232, 214, 178))  # walls
    draw.rectangle((hx + 0.42 * hw, hy + 0.05 * hh, hx + 0.58 * hw, hy + 0.55 * hh), fill=(104, 62, 34))  # door
    for wx in (0.10, 0.70):
        x0, y0, x1, y1 = hx + wx * hw, hy - 0.25 * hh, hx + (wx + 0.2) * hw, hy + 0.05 * hh
        draw.rectangle((x0, y0, x1, y1), fill=(150, 200, 235), outline=(90, 60, 40), width=SUPERSAMPLE * 2)
        draw.line(((x0 + x1) / 2, y0, (x0 + x1) / 2, y1), fill=(90, 60, 40), width=SUPERSAMPLE * 2)
        draw.line((x0, (y0 + y1) / 2, x1, (y0 + y1) / 2), fill=(90, 60, 40), width=SUPERSAMPLE * 2)
    # A path from the door down to the bottom edge.
    door_x = hx + 0.5 * hw
    draw.polygon(
        [
            (door_x - 0.06 * hw, hy + 0.55 * hh),
            (door_x + 0.06 * hw, hy + 0.55 * hh),
            (door_x + 0.5 * hw, h),
            (door_x - 0.2 * hw, h),
        ],
        fill=(206, 184, 136),
    )
    # A tree to the right of the house.
    tx, ty = 0.62 * w, 0.78 * h
    draw.rectangle((tx - 0.012 * w, ty - 0.12 * h, tx + 0.012 * w, ty), fill=(92, 62, 36))
    for _ in range(9):
        cx, cy = tx + rng.normal(0, 0.03 * w), ty - 0.2 * h + rng.normal(0, 0.04 * h)
        r = rng.uniform(0.035, 0.055) * w
        shade = int(rng.integers(60, 100))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(30, shade + 30, 40))

    out = (w // SUPERSAMPLE, h // SUPERSAMPLE)
    return image.resize(out, Image.Resampling.LANCZOS), sky_mask.resize(out, Image.Resampling.LANCZOS)


def _flow_angle(x: float, y: float, vortices: list[tuple[float, float, float]]) -> float:
    """Direction of the brush at (x, y) in unit coordinates: swirls around a
    few centres on top of a slow wave."""
    vx = math.cos(2.2 * y * math.pi + 0.5) + 0.3
    vy = 0.35 * math.sin(2.6 * x * math.pi)
    for cx, cy, strength in vortices:
        dx, dy = x - cx, y - cy
        r2 = dx * dx + dy * dy + 1e-3
        falloff = strength * math.exp(-r2 / 0.03) / math.sqrt(r2)
        vx += -dy * falloff
        vy += dx * falloff
    return math.atan2(vy, vx)


def make_style(size: int = 512, seed: int = 11, palette: dict | None = None) -> Image.Image:
    """A painting of short curved strokes that follow a swirling flow field,
    in night blues with bright yellow vortices (or another `palette`)."""
    palette = palette or NIGHT
    rng = np.random.default_rng(seed)
    s = size * SUPERSAMPLE
    vortices = [
        (rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.7), rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 0.8))
        for _ in range(4)
    ]
    blues, lights = palette["blues"], palette["lights"]
    top, bottom = palette["ground"]

    rows = np.linspace(0, 1, s, dtype=np.float32)[:, None, None]
    ground = (1 - rows) * np.array(top, np.float32) + rows * np.array(bottom, np.float32)
    image = Image.fromarray(np.broadcast_to(ground, (s, s, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(image)

    strokes = int(6000 * (size / 512) ** 2)
    for _ in range(strokes):
        x, y = rng.uniform(0, 1), rng.uniform(0, 1)
        near = min(math.hypot(x - cx, y - cy) for cx, cy, _ in vortices)
        # Bright paint gathers around the swirl centres, as stars would.
        palette = lights if rng.uniform() < math.exp(-near / 0.09) else blues
        base = palette[int(rng.integers(len(palette)))]
        colour = tuple(int(np.clip(c + rng.normal(0, 12), 0, 255)) for c in base)
        step = rng.uniform(0.004, 0.008)
        points = [(x * s, y * s)]
        for _ in range(int(rng.integers(6, 16))):
            angle = _flow_angle(x, y, vortices)
            x, y = x + step * math.cos(angle), y + step * math.sin(angle)
            points.append((x * s, y * s))
        width = int(rng.integers(3, 7)) * SUPERSAMPLE
        shadow = tuple(max(0, c - 45) for c in colour)
        draw.line(points, fill=shadow, width=width + SUPERSAMPLE, joint="curve")
        draw.line(points, fill=colour, width=width, joint="curve")

    # A faint canvas weave so flat areas still carry texture.
    weave = rng.normal(0, 5, (s, s, 1)).astype(np.float32)
    painted = np.asarray(image, np.float32) + weave
    image = Image.fromarray(np.clip(painted, 0, 255).astype(np.uint8))
    return image.resize((size, size), Image.Resampling.LANCZOS)


def write_samples(out_dir: Path, size: int = 512) -> SamplePaths:
    """Write content.png and style.png into out_dir (created if needed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = SamplePaths(content=out_dir / "content.png", style=out_dir / "style.png")
    make_content(size).save(paths.content, format="PNG", optimize=False)
    make_style(size).save(paths.style, format="PNG", optimize=False)
    return paths


def write_control_samples(out_dir: Path, size: int = 512) -> ControlSamples:
    """The pair of write_samples, plus style2.png (warm colours), sky.png and ground.png."""
    pair = write_samples(out_dir, size)
    paths = ControlSamples(
        pair.content, pair.style, out_dir / "style2.png", out_dir / "sky.png", out_dir / "ground.png"
    )
    make_style(size, seed=5, palette=EMBERS).save(paths.style2, format="PNG", optimize=False)
    sky = make_sky_mask(size)
    sky.save(paths.sky, format="PNG", optimize=False)
    Image.eval(sky, lambda v: 255 - v).save(paths.ground, format="PNG", optimize=False)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="directory to write content.png and style.png into")
    parser.add_argument("--size", type=int, default=512, help="width of both images in pixels (default 512)")
    parser.add_argument("--controls", action="store_true", help="also style2.png, sky.png and ground.png")
    args = parser.parse_args(argv)
    if not 32 <= args.size <= 4096:
        parser.error("--size must be between 32 and 4096")
    if args.controls:
        controls = write_control_samples(args.out_dir, args.size)
        for name in ("content", "style", "style2", "sky", "ground"):
            print(f"{name + ':':<9}{getattr(controls, name)}")
        return 0
    paths = write_samples(args.out_dir, args.size)
    print(f"content: {paths.content}\nstyle:   {paths.style}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
