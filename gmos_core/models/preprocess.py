"""Image pre-processing and frame windowing for the Gmos pipeline.

- Pi3 input: the official ``load_images_as_tensor`` size rule (≈255 000 px, multiples of 14),
  PIL LANCZOS resize, ``[0, 1]`` float (ImageNet normalisation happens inside the model).
- SAM2 input: ``SAM2Transforms(1024)``: ``ToTensor`` → ``Resize((1024, 1024))`` (torchvision on a
  tensor: bilinear, ``antialias=True``, ``align_corners=False``) → ImageNet ``Normalize``.
- Windows: Gmos's 5-frame window ``[t-2s, …, t+2s]`` with replicate clamping, its stride rule, and a
  time-based variant for live streams with a variable frame rate.

Input images are numpy arrays, H×W×C, RGB channel order (convert BGR from OpenCV first). Accepted
layouts and dtypes (see :func:`to_rgb_uint8`):

- ``uint8``: (H, W, 3) RGB, (H, W) or (H, W, 1) grayscale (replicated to 3 channels, like PIL
  ``convert("RGB")``), (H, W, 4) RGBA (alpha dropped without compositing, like PIL
  ``convert("RGB")`` in the official loader);
- ``uint16``: same layouts; converted to 8 bit as ``round(v / 257)`` (65535 → 255, exact for values
  that came from 8-bit data scaled by 257; cv_bridge's rule, see :mod:`gmos_core.bit_depth`, shared
  with the ROS image conversions), then processed as 8-bit, since the official pipeline only ever
  sees 8-bit images.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gmos_core.bit_depth import uint16_to_uint8

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PI3_PIXEL_LIMIT",
    "SAM2_RESOLUTION",
    "pi3_preprocess",
    "pi3_target_size",
    "sam2_preprocess",
    "stride_from_fps",
    "to_rgb_uint8",
    "window_by_time",
    "window_indices",
]

PI3_PIXEL_LIMIT = 255_000
SAM2_RESOLUTION = 1024
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pi3_target_size(
    width: int, height: int, pixel_limit: int = PI3_PIXEL_LIMIT, patch: int = 14
) -> tuple[int, int]:
    """Pi3 input size (W, H) for a ``width`` × ``height`` image, as Pi3's ``load_images_as_tensor``.

    Scale to ≈``pixel_limit`` pixels keeping the aspect ratio, round each side to the nearest
    multiple of ``patch`` (Python ``round``: ties to even), then, while the area exceeds the limit,
    remove one patch from the side whose rounding overshot the aspect ratio most (width if
    ``k/m`` > target aspect, else height). Each side is at least one patch.

    Examples: 854×480 → (672, 378); 640×480 → (574, 434); 1000×1000 → (504, 504).
    """
    for name, v in (("width", width), ("height", height), ("pixel_limit", pixel_limit)):
        if int(v) != v or v <= 0:
            raise ValueError(f"pi3_target_size: {name} must be a positive integer, got {v!r}")
    if int(patch) != patch or patch <= 0:
        raise ValueError(f"pi3_target_size: patch must be a positive integer, got {patch!r}")
    scale = math.sqrt(pixel_limit / (width * height))
    w_t, h_t = width * scale, height * scale
    k, m = round(w_t / patch), round(h_t / patch)
    # The loop cannot divide by zero: with m == 0 the area is 0 and the loop does not run.
    while (k * patch) * (m * patch) > pixel_limit:
        if k / m > w_t / h_t:
            k -= 1
        else:
            m -= 1
    return max(1, k) * patch, max(1, m) * patch


def to_rgb_uint8(frame: np.ndarray, index: int | None = None) -> np.ndarray:
    """Convert one frame to contiguous (H, W, 3) uint8 RGB (rules in the module docstring).

    Args:
        frame: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), uint8 or uint16.
        index: frame index used in error messages.

    Raises:
        ValueError / TypeError naming the frame and the problem.
    """
    where = f"frame {index}" if index is not None else "frame"
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"{where}: expected a numpy array, got {type(frame).__name__}")
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"{where}: expected shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {frame.shape}"
        )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"{where}: empty image of shape {frame.shape}")
    if frame.dtype == np.uint16:
        frame = uint16_to_uint8(frame)  # the project's one 16-bit rule (gmos_core.bit_depth)
    elif frame.dtype != np.uint8:
        raise TypeError(
            f"{where}: expected uint8 or uint16 pixels, got {frame.dtype} "
            "(convert float images with (x * 255).round().astype(np.uint8))"
        )
    c = frame.shape[2]
    if c == 1:
        frame = np.repeat(frame, 3, axis=2)
    elif c == 4:
        frame = frame[:, :, :3]
    return np.ascontiguousarray(frame)


def _frame_list(frames: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    if isinstance(frames, np.ndarray):
        if frames.ndim not in (3, 4):
            raise ValueError(
                f"expected a stack (N, H, W[, C]) or a list of frames, got an array of shape "
                f"{frames.shape}"
            )
        return list(frames)
    frames = list(frames)
    if not frames:
        raise ValueError("no frames given")
    return frames


def pi3_preprocess(
    frames_rgb_uint8: Sequence[np.ndarray] | np.ndarray,
    pixel_limit: int = PI3_PIXEL_LIMIT,
) -> torch.Tensor:
    """Resize frames for Pi3 exactly like the official loader.

    Args:
        frames_rgb_uint8: a list of N frames or an (N, H, W, C) / (N, H, W) array; all frames must
            have the same size (the official loader takes the target size from the first frame).
        pixel_limit: pixel budget of :func:`pi3_target_size`.

    Returns:
        (N, 3, H', W') float32 in [0, 1], with (W', H') = ``pi3_target_size(W, H)``.
    """
    frames = _frame_list(frames_rgb_uint8)
    if not frames:
        raise ValueError("pi3_preprocess: no frames given")
    rgb = [to_rgb_uint8(f, i) for i, f in enumerate(frames)]
    h0, w0 = rgb[0].shape[:2]
    for i, f in enumerate(rgb):
        if f.shape[:2] != (h0, w0):
            raise ValueError(
                f"pi3_preprocess: frame {i} is {f.shape[1]}x{f.shape[0]} (W x H) but frame 0 is "
                f"{w0}x{h0}; all frames of one call must have the same size"
            )
    tw, th = pi3_target_size(w0, h0, pixel_limit)
    out = torch.empty(len(rgb), 3, th, tw, dtype=torch.float32)
    for i, f in enumerate(rgb):
        # PIL LANCZOS on the 8-bit RGB image (PIL returns a copy when the size already matches),
        # then ToTensor's uint8 / 255.
        resized = np.array(Image.fromarray(f).resize((tw, th), Image.Resampling.LANCZOS))
        out[i] = torch.from_numpy(resized).permute(2, 0, 1).to(torch.float32).div(255)
    return out


def sam2_preprocess(frame_rgb_uint8: np.ndarray, resolution: int = SAM2_RESOLUTION) -> torch.Tensor:
    """SAM2 image input, as ``SAM2Transforms(resolution)``.

    ``ToTensor`` (uint8 / 255) → torchvision ``Resize((res, res))`` on a tensor, which is
    ``F.interpolate(mode="bilinear", antialias=True, align_corners=False)`` (torchvision ≥ 0.17
    default; no aspect preservation) → ``Normalize`` with the ImageNet mean / std.

    Args:
        frame_rgb_uint8: (H, W, 3) RGB (or another layout accepted by :func:`to_rgb_uint8`).
        resolution: output side (1024 for all SAM2.1 models).

    Returns:
        (3, resolution, resolution) float32, ImageNet-normalised.
    """
    rgb = to_rgb_uint8(frame_rgb_uint8)
    x = torch.from_numpy(rgb).permute(2, 0, 1).to(torch.float32).div(255)
    if tuple(x.shape[-2:]) != (resolution, resolution):
        # torchvision's functional resize returns the input unchanged when the size already matches.
        x = F.interpolate(
            x[None],
            size=(resolution, resolution),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )[0]
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    return (x - mean) / std


def window_indices(t: int, num_frames: int, stride: int, n: int = 5) -> list[int]:
    """Gmos's frame window around ``t``: ``[t - (n//2)·s, …, t, …, t + (n//2)·s]`` clamped to the video.

    Out-of-range indices are replaced by the first / last frame (replicate padding), so the list
    always has ``n`` entries and ``t`` in the middle.

    Args:
        t: centre frame index, 0 ≤ t < num_frames.
        num_frames: video length T.
        stride: frame step s ≥ 1 (see :func:`stride_from_fps`).
        n: window length, odd (Gmos uses 5).
    """
    if num_frames <= 0:
        raise ValueError(f"window_indices: num_frames must be positive, got {num_frames}")
    if not 0 <= t < num_frames:
        raise ValueError(f"window_indices: frame {t} is outside [0, {num_frames - 1}]")
    if stride < 1:
        raise ValueError(f"window_indices: stride must be >= 1, got {stride}")
    if n < 1 or n % 2 == 0:
        raise ValueError(f"window_indices: window length must be a positive odd number, got {n}")
    half = n // 2
    return [min(max(t + k * stride, 0), num_frames - 1) for k in range(-half, half + 1)]


def stride_from_fps(fps: float) -> int:
    """Gmos's window stride ``max(1, int(fps / 8))`` (a 5-frame window then spans ≈0.5 s)."""
    if not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"stride_from_fps: fps must be a positive finite number, got {fps!r}")
    return max(1, int(fps / 8))


def window_by_time(
    stamps_ns: Sequence[int], center: int, span_s: float = 0.5, n: int = 5
) -> list[int]:
    """Time-based window for a live stream with a variable frame rate.

    The offline pipeline picks frames ``t + k·s`` with ``s = int(fps/8)``, i.e. a window that spans
    ≈0.5 s (4·s/fps). With irregular stamps a fixed index stride no longer means a fixed time span,
    so this picks, for each of the ``n`` target times

        ``stamp[center] + (k - (n-1)/2) · span_s / (n-1)``,  k = 0 … n-1,

    the buffered frame whose stamp is nearest (a tie between the frames just before and just after
    the target goes to the one nearer the centre; among frames with identical stamps the one on
    the target's side is taken). Targets
    before the first / after the last buffered frame therefore clamp to that frame, like the
    replicate padding of :func:`window_indices`. The middle entry is always ``center``, and the
    result is non-decreasing. Frames may repeat when the buffer is sparser than the targets.

    Args:
        stamps_ns: buffered frame stamps in nanoseconds, non-decreasing.
        center: index into ``stamps_ns`` of the frame the window is centred on.
        span_s: time from the first to the last target, seconds (> 0).
        n: window length, odd.

    Returns:
        ``n`` indices into ``stamps_ns``.
    """
    stamps = [int(s) for s in stamps_ns]
    if not stamps:
        raise ValueError("window_by_time: no buffered frames")
    if not 0 <= center < len(stamps):
        raise ValueError(f"window_by_time: center {center} is outside [0, {len(stamps) - 1}]")
    if n < 1 or n % 2 == 0:
        raise ValueError(f"window_by_time: window length must be a positive odd number, got {n}")
    if not math.isfinite(span_s) or span_s <= 0:
        raise ValueError(
            f"window_by_time: span_s must be a positive number of seconds, got {span_s}"
        )
    for i in range(1, len(stamps)):
        if stamps[i] < stamps[i - 1]:
            raise ValueError(
                f"window_by_time: stamps must be non-decreasing; stamp {i} ({stamps[i]} ns) is "
                f"before stamp {i - 1} ({stamps[i - 1]} ns)"
            )
    half = n // 2
    c_stamp = stamps[center]
    out: list[int] = []
    for k in range(-half, half + 1):
        if k == 0:
            out.append(center)
            continue
        target = c_stamp + round(k * span_s * 1e9 / (n - 1))
        j = bisect.bisect_left(stamps, target)  # first index with stamp >= target
        cands = [i for i in (j - 1, j) if 0 <= i < len(stamps)]
        # Nearest in time; on a tie prefer the frame nearer the centre index.
        best = min(cands, key=lambda i: (abs(stamps[i] - target), abs(i - center)))
        out.append(best)
    return out
