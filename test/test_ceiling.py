"""The instantaneous-predictor ceiling of the binary MOS protocol (training/ceiling.py)."""

from __future__ import annotations

import numpy as np
import pytest

from training.ceiling import instantaneous_ceiling, main, moving_now_masks
from training.splits import ValidationSequence


def _clip(
    name: str, intervals: dict[int, list[tuple[int, int]]], frames: int = 4
) -> ValidationSequence:
    labels = np.zeros((frames, 16, 16), np.uint8)
    labels[:, 4:10, 4:10] = 1  # one dynamic object, visible in every frame
    rgb = np.zeros((frames, 16, 16, 3), np.uint8)
    return ValidationSequence(name, rgb, 10.0, labels, intervals)


def test_moving_now_masks_follow_the_inclusive_intervals() -> None:
    m = moving_now_masks(_clip("val_1_dynamic", {1: [(0, 1)]}))
    assert m[:2, 4:10, 4:10].all() and not m[2:].any() and m[:, 0, 0].sum() == 0


def test_a_resting_object_costs_the_instantaneous_oracle_its_resting_frames() -> None:
    always = instantaneous_ceiling([_clip("val_1_dynamic", {1: [(0, 3)]})])
    assert always["all"]["J"] == pytest.approx(1.0)
    half = instantaneous_ceiling([_clip("val_2_parallax", {1: [(0, 1)]})])
    assert half["all"]["J"] == pytest.approx(0.5)
    both = instantaneous_ceiling(
        [_clip("val_1_dynamic", {1: [(0, 3)]}), _clip("val_2_parallax", {1: [(0, 1)]})]
    )
    assert set(both) == {"all", "dynamic", "parallax"}
    assert both["dynamic"]["J"] == pytest.approx(1.0)
    assert both["parallax"]["J"] == pytest.approx(0.5)
    assert 0.0 <= both["all"]["F"] <= 1.0


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="bad interval"):
        moving_now_masks(_clip("val_3_dynamic", {1: [(2, 1)]}))
    with pytest.raises(ValueError, match="no sequences"):
        instantaneous_ceiling([])
    with pytest.raises(SystemExit):
        main(["--num-seqs", "0"])
    with pytest.raises(SystemExit):  # seeds that reach the held-out split
        main(["--num-seqs", "5", "--seed", "899990"])
