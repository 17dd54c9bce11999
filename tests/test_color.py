"""The colour mathematics of Gatys et al. 2017, section 5, on numpy arrays."""

from __future__ import annotations

import numpy as np
import pytest

from stylize_server.engine import color
from tests.support.images import image_array


def _content() -> np.ndarray:
    return image_array(48, 40, seed=1)


def _style() -> np.ndarray:
    # Different colours and a different spread from the content.
    base = image_array(64, 56, seed=7).astype(np.float64)
    return np.clip(base * [0.4, 0.9, 0.2] + [120, 10, 60], 0, 255).astype(np.uint8)


def test_histogram_matching_gives_the_content_colour_mean_and_covariance() -> None:
    matched = color.match_histogram(_style(), _content())
    mean, cov = color.color_stats(matched)
    want_mean, want_cov = color.color_stats(_content())
    np.testing.assert_allclose(mean, want_mean, atol=1e-3)
    np.testing.assert_allclose(cov, want_cov, atol=1e-3)
    assert matched.shape == _style().shape


def test_histogram_matching_is_the_identity_on_the_content_itself() -> None:
    content = _content()
    np.testing.assert_allclose(color.match_histogram(content, content), content, atol=1e-6)


def test_histogram_matching_survives_a_single_coloured_style() -> None:
    flat = np.full((16, 16, 3), 77, np.uint8)
    matched = color.match_histogram(flat, _content())
    assert np.all(np.isfinite(matched))
    np.testing.assert_allclose(color.color_stats(matched)[0], color.color_stats(_content())[0], atol=1e-3)


def test_luminance_matching_gives_the_content_luminance_mean_and_spread() -> None:
    y = color.match_luminance(_style(), _content())
    yc = color.luminance(_content())
    assert y.shape == _style().shape[:2]
    assert y.mean() == pytest.approx(yc.mean(), abs=1e-6)
    assert y.std() == pytest.approx(yc.std(), abs=1e-6)


def test_luminance_only_output_has_exactly_the_content_chrominance() -> None:
    rng = np.random.default_rng(0)
    content = _content().astype(np.float64)
    result = rng.uniform(0, 255, content.shape)  # whatever the optimization made
    combined = color.transfer_luminance(color.gray(color.luminance(result)), content)
    ycc_out, ycc_content = color.rgb_to_ycbcr(combined), color.rgb_to_ycbcr(content)
    np.testing.assert_allclose(ycc_out[..., 1:], ycc_content[..., 1:], atol=1e-9)
    np.testing.assert_allclose(ycc_out[..., 0], color.luminance(result), atol=1e-9)


def test_a_gray_image_has_no_chrominance() -> None:
    g = color.gray(color.luminance(_content()))
    np.testing.assert_allclose(color.rgb_to_ycbcr(g)[..., 1:], 0.0, atol=1e-9)
