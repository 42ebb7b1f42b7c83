"""Pre-processing (Pi3 / SAM2 inputs) and frame windowing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from gmos_core.models.preprocess import (
    pi3_preprocess,
    pi3_target_size,
    sam2_preprocess,
    stride_from_fps,
    to_rgb_uint8,
    window_by_time,
    window_indices,
)


def _official_rule(w: int, h: int, limit: int = 255_000) -> tuple[int, int]:
    """Brute-force restatement of the rule: nearest multiples of 14, then shrink to the limit."""
    s = math.sqrt(limit / (w * h))
    tw, th = w * s, h * s
    k, m = round(tw / 14), round(th / 14)
    while k * m * 196 > limit:
        if k / m > tw / th:
            k -= 1
        else:
            m -= 1
    return 14 * max(k, 1), 14 * max(m, 1)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((854, 480), (672, 378)),
        ((1920, 1080), (672, 378)),
        ((1280, 720), (672, 378)),
        ((640, 480), (574, 434)),
        ((480, 640), (434, 574)),
        ((1000, 1000), (504, 504)),
        ((504, 504), (504, 504)),
        ((1, 1), (504, 504)),
    ],
)
def test_pi3_target_size_examples(size, expected):
    assert pi3_target_size(*size) == expected


def test_pi3_target_size_properties():
    rng = np.random.default_rng(0)
    for w, h in rng.integers(16, 4000, size=(300, 2)):
        tw, th = pi3_target_size(int(w), int(h))
        assert (tw, th) == _official_rule(int(w), int(h))
        assert tw % 14 == 0 and th % 14 == 0 and tw * th <= 255_000
        # Each side stays within one patch of the exactly-scaled size (aspect kept).
        scale = math.sqrt(255_000 / (w * h))
        assert abs(tw - w * scale) <= 14 and abs(th - h * scale) <= 14


def test_pi3_target_size_errors():
    with pytest.raises(ValueError, match="width"):
        pi3_target_size(0, 10)
    with pytest.raises(ValueError, match="height"):
        pi3_target_size(10, -1)


def test_pi3_preprocess_matches_pil_lanczos():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(2, 120, 160, 3), dtype=np.uint8)
    out = pi3_preprocess(frames)
    tw, th = pi3_target_size(160, 120)
    assert out.shape == (2, 3, th, tw) and out.dtype == torch.float32
    for i in range(2):
        ref = np.asarray(Image.fromarray(frames[i]).resize((tw, th), Image.Resampling.LANCZOS))
        expected = torch.from_numpy(ref.copy()).permute(2, 0, 1).float() / 255
        assert torch.equal(out[i], expected)
    # A list of frames gives the same result as the stacked array.
    assert torch.equal(pi3_preprocess(list(frames)), out)


def test_pi3_preprocess_layouts_and_dtypes():
    rng = np.random.default_rng(2)
    gray = rng.integers(0, 256, size=(60, 80), dtype=np.uint8)
    rgb_of_gray = np.repeat(gray[:, :, None], 3, axis=2)
    assert torch.equal(pi3_preprocess([gray]), pi3_preprocess([rgb_of_gray]))
    assert torch.equal(pi3_preprocess([gray[:, :, None]]), pi3_preprocess([rgb_of_gray]))
    rgba = rng.integers(0, 256, size=(60, 80, 4), dtype=np.uint8)
    # Alpha is dropped without compositing, like PIL convert("RGB") in the official loader.
    assert torch.equal(pi3_preprocess([rgba]), pi3_preprocess([rgba[:, :, :3].copy()]))
    # 16-bit: round(v / 257); 8-bit data scaled by 257 maps back exactly.
    rgb8 = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    assert torch.equal(pi3_preprocess([rgb8.astype(np.uint16) * 257]), pi3_preprocess([rgb8]))
    v16 = np.array([[0, 128, 129, 385, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(to_rgb_uint8(v16)[0, :, 0], [0, 0, 1, 1, 255])


def test_pi3_preprocess_errors():
    a = np.zeros((60, 80, 3), np.uint8)
    b = np.zeros((60, 81, 3), np.uint8)
    with pytest.raises(ValueError, match="frame 2 is 81x60"):
        pi3_preprocess([a, a, b])
    with pytest.raises(TypeError, match="frame 0: expected uint8 or uint16.*float32"):
        pi3_preprocess([a.astype(np.float32)])
    with pytest.raises(ValueError, match=r"frame 1: expected shape.*\(60, 80, 2\)"):
        pi3_preprocess([a, np.zeros((60, 80, 2), np.uint8)])
    with pytest.raises(ValueError, match="no frames"):
        pi3_preprocess([])
    with pytest.raises(ValueError, match="empty image"):
        pi3_preprocess([np.zeros((0, 5, 3), np.uint8)])
    with pytest.raises(TypeError, match="numpy array"):
        pi3_preprocess([[1, 2, 3]])


def _aa_bilinear_1d(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of an antialiased bilinear (triangle filter) downsample."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = (i + 0.5) * scale
        for j in range(n_in):
            w[i, j] = max(0.0, 1.0 - abs(j + 0.5 - centre) / support)
        w[i] /= w[i].sum()
    return w


def test_sam2_preprocess_antialiased_bilinear_and_normalise():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, size=(48, 40, 3), dtype=np.uint8)
    out = sam2_preprocess(img, resolution=16)
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    # Independent reference: separable triangle filter (torchvision Resize on a tensor with its
    # default antialias=True), non-aspect-preserving, then ImageNet normalisation.
    wy, wx = _aa_bilinear_1d(48, 16), _aa_bilinear_1d(40, 16)
    x = img.astype(np.float64) / 255
    ref = np.einsum("yi,ijc,xj->cyx", wy, x, wx)
    mean = np.array([0.485, 0.456, 0.406])[:, None, None]
    std = np.array([0.229, 0.224, 0.225])[:, None, None]
    np.testing.assert_allclose(out.numpy(), (ref - mean) / std, atol=1e-5)


def test_sam2_preprocess_full_size():
    img = np.full((480, 854, 3), 200, np.uint8)
    out = sam2_preprocess(img)
    assert out.shape == (3, 1024, 1024)
    expected = (200 / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(out.mean(dim=(1, 2)).numpy(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="expected shape"):
        sam2_preprocess(np.zeros((4, 4, 5), np.uint8))


def test_window_indices():
    assert window_indices(10, 100, 3) == [4, 7, 10, 13, 16]
    assert window_indices(0, 100, 3) == [0, 0, 0, 3, 6]
    assert window_indices(98, 100, 3) == [92, 95, 98, 99, 99]
    assert window_indices(0, 1, 5) == [0, 0, 0, 0, 0]
    assert window_indices(5, 10, 1, n=3) == [4, 5, 6]
    for bad in [
        dict(t=10, num_frames=10, stride=1),
        dict(t=0, num_frames=10, stride=0),
        dict(t=0, num_frames=10, stride=1, n=4),
        dict(t=0, num_frames=0, stride=1),
    ]:
        with pytest.raises(ValueError):
            window_indices(**bad)


def test_stride_from_fps():
    assert [stride_from_fps(f) for f in (5, 8, 15.9, 16, 24, 25, 29.97, 30, 60)] == [
        1,
        1,
        1,
        2,
        3,
        3,
        3,
        3,
        7,
    ]
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="fps"):
            stride_from_fps(bad)


def test_window_by_time_regular_stream_matches_index_window():
    # A steady 24 fps stream: 0.5 s / 4 = 125 ms = 3 frames, the same as stride_from_fps(24) = 3.
    stamps = [round(i * 1e9 / 24) for i in range(50)]
    for t in (0, 1, 5, 25, 48, 49):
        assert window_by_time(stamps, t) == window_indices(t, 50, stride_from_fps(24))


def test_window_by_time_irregular_stamps():
    ms = 1_000_000
    stamps = [0, 30 * ms, 70 * ms, 100 * ms, 180 * ms, 200 * ms, 260 * ms, 330 * ms, 400 * ms]
    # Targets 180 ± 125 / 250 ms: -70 -> 0, 55 -> 70 (idx 2), 305 -> 330 (idx 7), 430 -> 400 (idx 8).
    assert window_by_time(stamps, 4) == [0, 2, 4, 7, 8]
    # Clamped at both ends, like replicate padding.
    assert window_by_time(stamps, 0) == [0, 0, 0, 3, 6]
    assert window_by_time(stamps, 8) == [4, 6, 8, 8, 8]
    # Exact hits, and a tie (target 300 ns is 100 ns from frames 2 and 3) going to the frame
    # nearer the centre.
    assert window_by_time([0, 400 * ms, 500 * ms, 600 * ms], 2, span_s=0.2, n=3) == [1, 2, 3]
    assert window_by_time([0, 100, 200, 400], 2, span_s=200e-9, n=3) == [1, 2, 2]
    rng = np.random.default_rng(4)
    st = np.cumsum(rng.integers(5, 120, size=40)) * ms
    for c in range(40):
        w = window_by_time(st, c)
        assert len(w) == 5 and w[2] == c and w == sorted(w)
    # Duplicate stamps are allowed (non-decreasing), the centre stays in the middle.
    assert window_by_time([0, 0, 0], 1, n=3) == [0, 1, 2]


def test_window_by_time_errors():
    with pytest.raises(ValueError, match="non-decreasing.*stamp 2"):
        window_by_time([0, 10, 5], 0)
    with pytest.raises(ValueError, match="center 3"):
        window_by_time([0, 10, 20], 3)
    with pytest.raises(ValueError, match="odd"):
        window_by_time([0, 10, 20], 1, n=4)
    with pytest.raises(ValueError, match="span_s"):
        window_by_time([0, 10, 20], 1, span_s=0)
    with pytest.raises(ValueError, match="no buffered"):
        window_by_time([], 0)
