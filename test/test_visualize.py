"""gmos_core.visualize: overlays and sheets drawn from arrays."""

from __future__ import annotations

import cv2
import numpy as np

from gmos_core.data.synthetic import SceneConfig, generate_scene
from gmos_core.visualize import (
    PALETTE,
    id_colour,
    labelled_rows_sheet,
    overlay_instances,
    overlay_labels,
    scene_sheet,
    write_rgb,
)


def _labels() -> np.ndarray:
    lab = np.zeros((12, 16), np.uint8)
    lab[2:8, 3:9] = 1
    lab[9:12, 10:16] = 2
    return lab


def test_overlay_labels_blends_inside_and_keeps_background():
    frame = np.full((12, 16, 3), 100, np.uint8)
    out = overlay_labels(frame, _labels(), alpha=0.5)
    assert np.array_equal(out[0, 0], frame[0, 0])  # background untouched
    inner = (0.5 * 100 + 0.5 * PALETTE[1].astype(np.float32)).astype(np.uint8)
    assert np.array_equal(out[4, 5], inner)  # interior: blended with label 1's colour
    assert np.array_equal(out[2, 3], PALETTE[1])  # contour: the label colour itself


def test_overlay_instances_fills_moving_outlines_static_and_wraps_ids():
    frame = np.zeros((12, 16, 3), np.uint8)
    ids = _labels().astype(np.uint16)
    ids[ids == 2] = 256  # past the palette: wraps to colour 2
    out = overlay_instances(frame, ids, {1})
    assert out[4, 5].any()  # moving: filled
    assert not out[10, 12].any() and np.array_equal(out[9, 10], id_colour(256))  # static: outline
    assert np.array_equal(id_colour(256), PALETTE[2])
    assert not frame.any()  # input not modified


def test_sheets_have_the_documented_shape(tmp_path):
    tile = np.zeros((10, 12, 3), np.uint8)
    sheet = labelled_rows_sheet([[tile] * 4] * 3, ["a", "b", "c"], ["w", "x", "y", "z"], scale=2)
    assert sheet.shape == (24 + 3 * 20, 4 * 24, 3)
    s = generate_scene(SceneConfig(seed=3, num_frames=8, width=48, height=32))
    img = scene_sheet([s], num_cols=3, scale=1)
    assert img.shape[1] == 3 * (48 + 4) and img.dtype == np.uint8
    path = write_rgb(tmp_path / "sub" / "s.png", img)
    assert np.array_equal(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), img)
