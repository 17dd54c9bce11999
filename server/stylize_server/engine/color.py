"""Colour transforms on float or uint8 RGB arrays (numpy only): YCbCr
(ITU-R BT.601 full range, the JPEG convention), the post-hoc luminance swap of
`preserve_colors`, and the two colour controls of Gatys et al. 2017 that act
before the optimization: luminance-only transfer and colour histogram
matching."""

from __future__ import annotations

import numpy as np

# ITU-R BT.601 full-range YCbCr, the JPEG convention.
_RGB_TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC)


def rgb_to_ycbcr(image: np.ndarray) -> np.ndarray:
    """uint8 or float RGB -> float YCbCr with Cb, Cr centred on 0."""
    out: np.ndarray = image.astype(np.float64) @ _RGB_TO_YCC.T
    return out


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    return ycc @ _YCC_TO_RGB.T


def transfer_luminance(result: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Luminance from `result`, chrominance from `content` (same shape).

    Returns float RGB, not clipped: clipping would change the chrominance of
    saturated pixels, so the caller decides when to quantize.
    """
    y = rgb_to_ycbcr(result)[..., :1]
    cbcr = rgb_to_ycbcr(content)[..., 1:]
    return ycbcr_to_rgb(np.concatenate([y, cbcr], axis=-1))


def recombine(result: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Luminance from `result`, chrominance from `content`, with the luminance
    clamped per pixel to the range in which that chrominance stays inside
    0..255 in every channel: the output needs no clipping afterwards, so its
    chrominance is exactly the content's everywhere (the content's own
    luminance is always in range, so the range is never empty)."""
    y = rgb_to_ycbcr(result)[..., 0]
    ycc = rgb_to_ycbcr(content)
    # RGB = Y·M[:, 0] + M[:, 1:]·(Cb, Cr); M[:, 0] is all ones (to rounding).
    offset = ycc[..., 1:] @ _YCC_TO_RGB[:, 1:].T
    luma = _YCC_TO_RGB[:, 0]
    lo = np.max(-offset / luma, axis=-1)
    hi = np.min((255.0 - offset) / luma, axis=-1)
    ycc[..., 0] = np.clip(y, lo, np.maximum(lo, hi))
    return ycbcr_to_rgb(ycc)


# ------------------------------------------------------------ colour control
# Gatys, Ecker, Bethge, Hertzmann and Shechtman, "Controlling Perceptual
# Factors in Neural Style Transfer" (CVPR 2017), section 5.


def luminance(image: np.ndarray) -> np.ndarray:
    """H×W float luminance Y (BT.601) of an RGB image, 0..255."""
    return rgb_to_ycbcr(image)[..., 0]


def gray(y: np.ndarray) -> np.ndarray:
    """H×W luminance -> H×W×3 float RGB with that luminance and no colour,
    the form in which VGG-19 sees a luminance-only image."""
    return np.repeat(y[..., None], 3, axis=-1).astype(np.float64)


def match_luminance(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The style's luminance with its mean and standard deviation matched to
    the content's (section 5.1): Y' = (Y_s - μ_s) σ_c / σ_s + μ_c. H×W float."""
    ys, yc = luminance(style), luminance(content)
    spread = float(ys.std())
    scale = float(yc.std()) / spread if spread > 1e-6 else 0.0
    return (ys - float(ys.mean())) * scale + float(yc.mean())


def match_histogram(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The style's colours mapped linearly to the content's colour mean and
    covariance (section 5.2): x' = A (x - μ_s) + μ_c with A = Σ_c^½ Σ_s^-½,
    the symmetric square roots of Image Analogies' colour transfer, which of
    the maps with A Σ_s Aᵀ = Σ_c moves the colours least. Float RGB, not
    clipped, so that the statistics are exact; H×W×3."""
    pixels = style.reshape(-1, 3).astype(np.float64)
    target = content.reshape(-1, 3).astype(np.float64)
    mu_s, mu_c = pixels.mean(axis=0), target.mean(axis=0)
    cov_s = np.cov(pixels, rowvar=False, bias=True)
    cov_c = np.cov(target, rowvar=False, bias=True)
    # A single-coloured style has a singular covariance: a tiny ridge keeps
    # the inverse root finite without moving any other style measurably.
    ridge = 1e-9 * max(float(np.trace(cov_s)), 1.0) * np.eye(3)
    transform = _sqrtm(cov_c) @ _inv_sqrtm(cov_s + ridge)
    return np.asarray(((pixels - mu_s) @ transform.T + mu_c).reshape(style.shape), np.float64)


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return np.asarray((vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T, np.float64)


def _inv_sqrtm(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return np.asarray((vectors / np.sqrt(np.clip(values, 1e-12, None))) @ vectors.T, np.float64)


def color_stats(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of an image's RGB colours."""
    pixels = image.reshape(-1, 3).astype(np.float64)
    return pixels.mean(axis=0), np.cov(pixels, rowvar=False, bias=True)
