"""gmos_core.bit_depth: the one 16-bit -> 8-bit rule."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gmos_core.bit_depth import uint16_to_uint8


def test_every_value_matches_cv_bridge_scaling():
    # cv_bridge converts 16 -> 8 bit with convertTo(CV_8U, 255. / 65535.): OpenCV scales in
    # floating point and rounds to nearest (convertScaleAbs is the same saturate-cast).
    v = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    assert np.array_equal(uint16_to_uint8(v), cv2.convertScaleAbs(v, alpha=255.0 / 65535.0))


def test_eight_bit_data_scaled_by_257_maps_back_and_byte_order_is_honoured():
    v8 = np.arange(256, dtype=np.uint8)
    assert np.array_equal(uint16_to_uint8(v8.astype(np.uint16) * 257), v8)
    big = (np.arange(0, 65536, 97, dtype=np.uint16)).astype(">u2")
    assert np.array_equal(uint16_to_uint8(big), uint16_to_uint8(big.astype("<u2")))


def test_other_dtypes_are_refused():
    with pytest.raises(TypeError, match="uint16"):
        uint16_to_uint8(np.zeros(3, np.int16))
