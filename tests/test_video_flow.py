"""Optical flow, reliability and warping (job/flow.py: OpenCV DIS, numpy) on
synthetic scenes whose motion is known. No TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from stylize_server.job import flow
from stylize_server.job.temporal import Temporal
from tests.support.scenes import moving_square, pan, square_box


def test_dis_finds_a_known_pan_and_the_warp_reproduces_the_frame() -> None:
    frames, _ = pan(96, 64, count=2, step=3)
    found = flow.between(frames[0], frames[1])
    inner = (slice(8, -8), slice(8, -8))  # away from the edges DIS extrapolates
    assert np.median(found.backward[inner][..., 0]) == pytest.approx(3.0, abs=0.25)
    assert np.median(np.abs(found.backward[inner][..., 1])) < 0.25
    assert np.median(found.forward[inner][..., 0]) == pytest.approx(-3.0, abs=0.25)
    # Warping frame 0 by the found flow gives frame 1 where it is reliable.
    warped = flow.warp(frames[0].astype(np.float32), found)
    trusted = found.reliability > 0
    assert trusted.mean() > 0.7
    error = np.abs(warped.warped - frames[1].astype(np.float32)).mean(axis=-1)[trusted]
    assert error.mean() < 12.0  # vs ~60 for the unwarped frame
    assert np.abs(frames[0].astype(np.float32) - frames[1]).mean() > 3 * error.mean()


def test_the_true_pan_warps_exactly_and_what_enters_the_frame_is_unreliable() -> None:
    frames, motion = pan(64, 48, count=2, step=4)
    truth = flow.Flow(motion[1], -motion[1], flow.reliability(motion[1], -motion[1]), 0.0)
    warped = flow.warp(frames[0].astype(np.float32), truth)
    np.testing.assert_array_equal(warped.warped[:, :-4], frames[1][:, :-4].astype(np.float32))
    # The last 4 columns were outside frame 0: no previous output to keep there.
    assert not truth.reliability[:, -3:].any()
    assert truth.reliability[:, :-5].all()


def test_reliability_is_zero_exactly_where_the_square_uncovers_the_background() -> None:
    # The true flows: the square moves 4 px right; the background it uncovers has no past.
    step, side = 4, 16
    _, motion = moving_square(64, 48, count=2, side=side, step=step)
    forward = np.zeros_like(motion[1])
    y0, y1, x0, x1 = square_box(64, 48, 0, side=side, step=step)
    forward[y0:y1, x0:x1, 0] = step
    trust = flow.reliability(motion[1], forward)
    assert not trust[y0 + 1 : y1 - 1, x0 : x0 + step].any()  # uncovered
    assert trust[y0 + 1 : y1 - 1, x0 + step + 1 : x1 + step - 1].all()  # the square itself, moved
    assert trust[:, x1 + step + 2 :].all() and trust[: y0 - 2].all()  # the still background


def test_dis_reliability_marks_most_of_the_uncovered_background() -> None:
    frames, _ = moving_square(128, 96, count=2, side=32, step=6)
    found = flow.between(frames[0], frames[1])
    y0, y1, x0, _ = square_box(128, 96, 0, side=32, step=6)
    assert found.reliability[y0 + 2 : y1 - 2, x0 : x0 + 6].mean() < 0.5
    assert found.reliability[:24, 64:].mean() > 0.95 and found.reliability[-24:, :].mean() > 0.95


def test_the_start_is_the_warped_frame_where_reliable_and_the_content_elsewhere() -> None:
    warped = np.full((4, 4, 3), 200.0, np.float32)
    trust = np.zeros((4, 4), np.float32)
    trust[:, :2] = 1.0
    content = np.full((4, 4, 3), 10, np.uint8)
    start = flow.start_image(Temporal(warped, trust), content)
    assert (start[:, :2] == 200).all() and (start[:, 2:] == 10).all()


def test_frames_of_different_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="different shapes"):
        flow.between(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8))


def test_early_stop_needs_two_calm_reports_in_a_row() -> None:
    from stylize_server.job.video import EarlyStop

    stop = EarlyStop(0.01)
    assert not stop.converged(1, 100.0)
    assert not stop.converged(2, 50.0)  # halved: far from settled
    assert not stop.converged(3, 49.9)  # calm once
    assert not stop.converged(5, 40.0)  # moved again: starts over
    assert not stop.converged(6, 39.99)
    assert stop.converged(8, 39.98)  # 0.01% per iteration, twice in a row
    assert not EarlyStop(0.0).converged(2, 1.0)
