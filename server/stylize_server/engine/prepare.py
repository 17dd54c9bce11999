"""A job's images as the network sees them (numpy only): colour control
before the optimization, the starting image, and the colours of the result.

The runner asks three times, in the job's order: `job_images` once (the
styles colour-controlled, the mask regions at the output size), `at_scale`
once per scale (the content at that scale, and at the first scale the
starting image), and `output` once at the end; what they make is handed on,
so nothing downstream reaches back for an input. `resize` is the one Lanczos
the engine resizes RGB images with (the style terms use it at each scale).

Colour control (Gatys et al. 2017, sec. 5; `color_control`):
* `luminance`: the optimization sees luminance only. The content becomes
  gray(Y_content), each style gray(Y_style with its mean and standard
  deviation matched to the content's), the starting image likewise; the
  result's luminance is recombined with the content's chrominance, previews
  the same.
* `histogram`: each style's colours are mapped linearly to the content's mean
  and covariance before its Gram matrices are taken (kept float, unclipped,
  so the statistics are exact).
* `preserve_colors` stays what it was: the post-hoc swap of the content's
  chrominance into the result, whatever `color_control` is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from stylize_server.engine import color
from stylize_server.engine.regions import Region, plan_regions
from stylize_server.engine.vgg import IMAGENET_MEAN_RGB
from stylize_server.job.options import ColorControl, Init, Inputs, JobOptions


@dataclass(frozen=True)
class JobImages:
    """What every scale of a job starts from."""

    options: JobOptions
    inputs: Inputs
    styles: tuple[np.ndarray, ...]  # colour-controlled (`styles`), full size
    regions: tuple[Region, ...]  # guides at the output size


@dataclass(frozen=True)
class ScaleImages:
    """A scale's images: the content resized to it (uint8) and, at the first
    scale only, the starting image (float32); later scales start from the
    previous scale's result."""

    content: np.ndarray
    start: np.ndarray | None


def job_images(options: JobOptions, inputs: Inputs, output_shape: tuple[int, int]) -> JobImages:
    return JobImages(
        options, inputs, styles(options, inputs), plan_regions(inputs.styles, options.unmasked_region, output_shape)
    )


def at_scale(job: JobImages, shape: tuple[int, int], first: bool) -> ScaleImages:
    content = resize(job.inputs.content, shape)
    start = initial_image(job.options, job.inputs, job.styles, shape, content) if first else None
    return ScaleImages(content, start)


def output(
    job: JobImages, pixels: np.ndarray | None, shape: tuple[int, int], last: ScaleImages | None = None
) -> np.ndarray:
    """The result at `shape` (the output's) in the job's colours: `pixels`
    (float RGB at that shape), or the starting image when no iteration ran.
    `last` is the last scale's images: its content is reused where it is at
    `shape` already (a job that ran every scale), not resized again."""
    if last is not None and last.content.shape[:2] == shape:
        content = last.content
    else:
        content = resize(job.inputs.content, shape)
    if pixels is None:
        pixels = initial_image(job.options, job.inputs, job.styles, shape, content)
    return finish(pixels, job.options, content)


def resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize an RGB image to (height, width) with Lanczos: uint8 as Pillow
    rounds it (as images.resize, the serving side's), float per channel
    without clipping or rounding. The one resize of a job's images."""
    h, w = shape
    if image.dtype == np.uint8:
        if image.shape[:2] == (h, w):
            return image
        return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.LANCZOS), dtype=np.uint8)
    if image.shape[:2] == (h, w):
        return image.astype(np.float32, copy=False)
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c], np.float32), mode="F").resize(
                (w, h), Image.Resampling.LANCZOS
            ),
            np.float32,
        )
        for c in range(image.shape[-1])
    ]
    return np.stack(channels, axis=-1)


def styles(options: JobOptions, inputs: Inputs) -> tuple[np.ndarray, ...]:
    """The style images with the job's colour control applied (uint8 as
    given for `none`, float32 otherwise)."""
    if options.color_control is ColorControl.LUMINANCE:
        return tuple(
            color.gray(color.match_luminance(s.image, inputs.content)).astype(np.float32) for s in inputs.styles
        )
    if options.color_control is ColorControl.HISTOGRAM:
        return tuple(color.match_histogram(s.image, inputs.content).astype(np.float32) for s in inputs.styles)
    return tuple(s.image for s in inputs.styles)


def content_view(options: JobOptions, content: np.ndarray) -> np.ndarray:
    """The content (at a scale) as the network sees it, float32."""
    if options.color_control is ColorControl.LUMINANCE:
        return color.gray(color.luminance(content)).astype(np.float32)
    return content.astype(np.float32)


def initial_image(
    options: JobOptions,
    inputs: Inputs,
    prepared_styles: tuple[np.ndarray, ...],
    shape: tuple[int, int],
    content: np.ndarray,
) -> np.ndarray:
    """The starting image at `shape` (content already resized to it), float32."""
    if options.init is Init.NOISE:
        # Near the mean pixel with a little seeded noise, as jcjohnson's init.
        rng = np.random.default_rng(options.seed)
        start = np.asarray(IMAGENET_MEAN_RGB, np.float32) + rng.normal(0.0, 16.0, (*shape, 3)).astype(np.float32)
    elif options.init is Init.STYLE:
        return resize(prepared_styles[0], shape).astype(np.float32)  # already colour-controlled
    elif options.init is Init.IMAGE and inputs.init_image is not None:
        start = resize(inputs.init_image, shape).astype(np.float32)
    else:
        return content_view(options, content)
    if options.color_control is ColorControl.LUMINANCE:
        return color.gray(color.luminance(start)).astype(np.float32)
    return start.astype(np.float32)


def finish(pixels: np.ndarray, options: JobOptions, content: np.ndarray) -> np.ndarray:
    """Optimized float RGB (H×W×3) -> the job's output colours, float32 in
    0..255: the content's chrominance recombined where the job asks
    (luminance control or preserve_colors), exactly, without clipping it."""
    image = np.clip(pixels, 0.0, 255.0)
    if options.color_control is ColorControl.LUMINANCE or options.preserve_colors:
        image = np.clip(color.recombine(image, content), 0.0, 255.0)  # clips rounding only
    return np.asarray(image, np.float32)
