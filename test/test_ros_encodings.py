"""The raw camera encodings drivers publish, each checked against OpenCV's own conversion
and against the colours it must give; codec warnings captured, counted, never printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from gmos_ros.conversions import ConversionError, compressed_to_rgb, raw_to_rgb

RNG = np.random.default_rng(3)


def _smooth_rgb(h: int = 24, w: int = 32) -> np.ndarray:
    """A smooth colour image (chroma subsampling and demosaicing are exact enough on it)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([40 + 6 * x, 200 - 5 * y, 90 + 2 * x + 2 * y], axis=2)
    return np.clip(img, 0, 255).astype(np.uint8)


def _pack_422(rgb: np.ndarray, order: str) -> np.ndarray:
    """(H, W, 3) RGB -> (H, W*2) bytes in UYVY or YUYV, BT.601 studio range (Y 16..235),
    what cameras send and what OpenCV's YUV422 conversions expect."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    cb = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    cr = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    u = (cb[:, 0::2] + cb[:, 1::2]) / 2
    v = (cr[:, 0::2] + cr[:, 1::2]) / 2
    out = np.empty((rgb.shape[0], rgb.shape[1] // 2, 4), np.float32)
    if order == "uyvy":
        out[..., 0], out[..., 1], out[..., 2], out[..., 3] = u, y[:, 0::2], v, y[:, 1::2]
    else:
        out[..., 0], out[..., 1], out[..., 2], out[..., 3] = y[:, 0::2], u, y[:, 1::2], v
    return np.round(out).astype(np.uint8).reshape(rgb.shape[0], -1)


@pytest.mark.parametrize(
    ("encoding", "layout", "code"),
    [
        ("yuv422", "uyvy", cv2.COLOR_YUV2RGB_UYVY),
        ("uyvy", "uyvy", cv2.COLOR_YUV2RGB_UYVY),
        ("yuv422_yuy2", "yuyv", cv2.COLOR_YUV2RGB_YUY2),
        ("yuyv", "yuyv", cv2.COLOR_YUV2RGB_YUY2),
    ],
)
def test_yuv422_variants_match_opencv_and_the_source_colours(encoding, layout, code):
    rgb = _smooth_rgb()
    packed = _pack_422(rgb, layout)
    step = packed.shape[1] + 6  # row padding is skipped
    data = np.hstack([packed, np.full((packed.shape[0], 6), 77, np.uint8)]).tobytes()
    out = raw_to_rgb(data, 24, 32, encoding, step)
    expected = cv2.cvtColor(packed.reshape(24, 32, 2), code)
    assert np.array_equal(out, expected)
    assert np.abs(out.astype(int) - rgb).max() <= 12  # the colours come back
    # The other byte order is a different (wrong) image: the two names are not aliases.
    other = "yuv422_yuy2" if layout == "uyvy" else "yuv422"
    assert np.abs(raw_to_rgb(data, 24, 32, other, step).astype(int) - rgb).max() > 40


def test_yuv422_odd_width_is_refused():
    with pytest.raises(ConversionError, match="even width"):
        raw_to_rgb(bytes(2 * 5 * 3), 3, 5, "yuv422", 10)


# ROS pattern -> the colour sitting at (row, col) of each 2x2 cell (0 = R, 1 = G, 2 = B).
PATTERNS = {
    "bayer_rggb8": [[0, 1], [1, 2]],
    "bayer_bggr8": [[2, 1], [1, 0]],
    "bayer_gbrg8": [[1, 2], [0, 1]],
    "bayer_grbg8": [[1, 0], [2, 1]],
}
CV_BGR = {  # cv_bridge's table (ROS pattern -> OpenCV code, BGR output)
    "bayer_rggb8": cv2.COLOR_BayerBG2BGR,
    "bayer_bggr8": cv2.COLOR_BayerRG2BGR,
    "bayer_gbrg8": cv2.COLOR_BayerGR2BGR,
    "bayer_grbg8": cv2.COLOR_BayerGB2BGR,
}


@pytest.mark.parametrize("encoding", sorted(PATTERNS))
def test_bayer_patterns_give_the_scene_colours(encoding):
    h, w = 16, 20
    colour = np.array([200, 110, 30], np.uint8)  # distinct R, G, B
    rgb = np.broadcast_to(colour, (h, w, 3))
    pattern = np.asarray(PATTERNS[encoding])
    mosaic = np.empty((h, w), np.uint8)
    for r in range(2):
        for c in range(2):
            mosaic[r::2, c::2] = rgb[r::2, c::2, pattern[r, c]]
    out = raw_to_rgb(mosaic.tobytes(), h, w, encoding, w)
    # OpenCV's own conversion (cv_bridge's code, BGR) agrees...
    assert np.array_equal(out, cv2.cvtColor(mosaic, CV_BGR[encoding])[..., ::-1])
    # ...and a uniform scene comes back in its colour (interior; borders are extrapolated).
    assert np.abs(out[2:-2, 2:-2].astype(int) - colour).max() <= 1


@pytest.mark.parametrize("encoding", ["8UC1", "8UC3", "16UC1"])
def test_untyped_encodings_match_opencv(encoding):
    if encoding == "8UC1":
        arr = RNG.integers(0, 256, (6, 9), dtype=np.uint8)
        expected = cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    elif encoding == "8UC3":  # OpenCV's BGR
        arr = RNG.integers(0, 256, (6, 9, 3), dtype=np.uint8)
        expected = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    else:
        arr = RNG.integers(0, 65536, (6, 9), dtype=np.uint16)
        # cv_bridge's 16 -> 8 bit scaling: convertTo(CV_8U, 255. / 65535.).
        expected = cv2.cvtColor(cv2.convertScaleAbs(arr, alpha=255.0 / 65535.0), cv2.COLOR_GRAY2RGB)
    out = raw_to_rgb(arr.tobytes(), 6, 9, encoding, arr[0].nbytes)
    assert np.array_equal(out, expected)


class _Compressed:
    def __init__(self, data: bytes, fmt: str = "jpeg") -> None:
        self.data, self.format = data, fmt


def _corrupt_jpeg() -> bytes:
    img = (RNG.random((64, 64, 3)) * 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    data = bytearray(buf.tobytes())
    data[len(data) // 2], data[len(data) // 2 + 1] = 0xFF, 0xD9  # an early end marker
    return bytes(data)


def test_corrupt_jpeg_warnings_are_returned_not_printed():
    warnings: list[str] = []
    img = compressed_to_rgb(_Compressed(_corrupt_jpeg()), warnings)
    assert img.shape == (64, 64, 3)  # libjpeg recovered
    assert warnings and "Corrupt JPEG data" in warnings[0]
    ok, good = cv2.imencode(".jpg", _smooth_rgb())
    clean: list[str] = []
    compressed_to_rgb(_Compressed(good.tobytes()), clean)
    assert clean == []


def test_nothing_reaches_the_process_stderr(tmp_path):
    # In a child process (pytest's capture would hide a leak): no codec line on its stderr,
    # while other stderr output still goes through.
    jpeg = tmp_path / "corrupt.jpg"
    jpeg.write_bytes(_corrupt_jpeg())
    code = (
        "import sys, types\n"
        "from gmos_ros.conversions import compressed_to_rgb\n"
        f"msg = types.SimpleNamespace(format='jpeg', data=open({str(jpeg)!r}, 'rb').read())\n"
        "w = []\n"
        "for _ in range(5):\n"
        "    compressed_to_rgb(msg, w)\n"
        "print(len(w))\n"
        "sys.stderr.write('still here\\n')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],  # the repo: `import gmos_ros` from here
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == "5"
    assert "Corrupt JPEG" not in out.stderr and "still here" in out.stderr
