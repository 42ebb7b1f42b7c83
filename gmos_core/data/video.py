"""Frame sources for offline inference: a video file (OpenCV) or a folder of images.

Every frame comes out as (H, W, 3) uint8 RGB, whatever was stored. Conversion rule:

- grayscale (H, W) or (H, W, 1): replicated to 3 channels;
- 4 channels (BGRA / RGBA): the alpha channel is dropped, *not* composited, because masks
  and features must describe the stored colour, not a background chosen here;
- 16-bit: scaled linearly to 8 bit, `round(v / 257)` (= v * 255 / 65535; 65535 -> 255, 257 -> 1),
  the same rule as `gmos_core.models.preprocess.to_rgb_uint8`, which does the conversion;
- OpenCV's BGR order is converted to RGB.

Other dtypes (float EXR, 32-bit) are rejected. All frames must share the first frame's size;
a change is an error naming the frame index (and file), never a silent resize.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from .palette import DataFormatError

__all__ = [
    "IMAGE_EXTENSIONS",
    "VideoReadError",
    "list_image_files",
    "read_frames",
    "to_rgb_uint8",
    "video_fps",
    "write_mp4",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class VideoReadError(DataFormatError):
    """A video or image folder cannot be read as a sequence of equally sized frames."""


def _sort_key(p: Path) -> tuple[int, int, str]:
    # All-digit stems sort numerically (SAM2's rule for `<int>.jpg` folders), so 9.jpg comes
    # before 10.jpg; zero-padded names (00000.jpg) sort the same either way.
    stem = p.stem
    if re.fullmatch(r"\d+", stem):
        return (0, int(stem), p.name)
    return (1, 0, p.name)


def list_image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The jpg/jpeg/png files of a folder (case-insensitive), in frame order.

    Args:
        folder: image folder.

    Returns:
        Sorted paths: all-digit stems numerically first, the rest by name.
    """
    d = Path(folder)
    files = [p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=_sort_key)


def to_rgb_uint8(frame: np.ndarray, source: str = "frame", bgr: bool = True) -> np.ndarray:
    """Convert a decoded frame to (H, W, 3) uint8 RGB with the module's documented rule.

    Args:
        frame: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array, uint8 or uint16.
        source: name used in error messages.
        bgr: the colour channels are in OpenCV's BGR(A) order.

    Returns:
        (H, W, 3) uint8 RGB (a new array).
    """
    # One conversion rule for the whole project (grey → 3 channels, alpha dropped, 16-bit
    # → round(v / 257)): `gmos_core.models.preprocess.to_rgb_uint8`; only the channel order
    # of OpenCV's decoders is handled here. Imported here: models.preprocess loads torch, which
    # the data readers do not otherwise need.
    from gmos_core.models.preprocess import to_rgb_uint8 as _to_rgb

    a = np.asarray(frame)
    if bgr and a.ndim == 3 and a.shape[2] in (3, 4):
        a = np.concatenate([a[:, :, 2::-1], a[:, :, 3:]], axis=2)
    try:
        return _to_rgb(a)
    except (TypeError, ValueError) as exc:
        raise VideoReadError(f"{source}: {exc}") from exc


def _read_folder(folder: Path) -> Iterator[np.ndarray]:
    files = list_image_files(folder)
    if not files:
        raise VideoReadError(f"{folder}: no {'/'.join(IMAGE_EXTENSIONS)} images in the folder")
    size: tuple[int, int] | None = None
    for i, f in enumerate(files):
        # IMREAD_UNCHANGED keeps 16-bit and alpha so the documented conversion decides.
        raw = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise VideoReadError(f"{folder}: frame {i} ({f.name}) cannot be decoded")
        rgb = to_rgb_uint8(raw, source=f"{folder}: frame {i} ({f.name})")
        if size is None:
            size = rgb.shape[:2]
        elif rgb.shape[:2] != size:
            raise VideoReadError(
                f"{folder}: frame {i} ({f.name}) is {rgb.shape[1]}x{rgb.shape[0]}, "
                f"but frame 0 is {size[1]}x{size[0]} (W x H)"
            )
        yield rgb


def _read_video(path: Path) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoReadError(f"{path}: cannot open video (unknown format or corrupt file)")
        size: tuple[int, int] | None = None
        i = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            rgb = to_rgb_uint8(bgr, source=f"{path}: frame {i}")
            if size is None:
                size = rgb.shape[:2]
            elif rgb.shape[:2] != size:
                raise VideoReadError(
                    f"{path}: frame {i} is {rgb.shape[1]}x{rgb.shape[0]}, "
                    f"but frame 0 is {size[1]}x{size[0]} (W x H)"
                )
            yield rgb
            i += 1
        if i == 0:
            raise VideoReadError(f"{path}: video has no decodable frames (zero-length)")
    finally:
        cap.release()


def read_frames(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """Iterate over the frames of a video file or an image folder.

    The existence check happens at call time; decoding errors surface while iterating.

    Args:
        path: a video file OpenCV can decode (mp4, avi, ...) or a folder of jpg/png images
            (see `list_image_files` for the order).

    Yields:
        (H, W, 3) uint8 RGB frames, all of the same size.

    Raises:
        FileNotFoundError: path does not exist.
        VideoReadError: zero-length video / empty folder, undecodable frame, size change.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such video file or image folder")
    return _read_folder(p) if p.is_dir() else _read_video(p)


def video_fps(path: str | os.PathLike[str]) -> float | None:
    """Frame rate from the container metadata.

    Args:
        path: video file or image folder.

    Returns:
        Frames per second, or None for image folders and videos without a usable rate.
    """
    p = Path(path)
    if p.is_dir():
        return None
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such video file")
    cap = cv2.VideoCapture(str(p))
    try:
        if not cap.isOpened():
            raise VideoReadError(f"{p}: cannot open video")
        fps = float(cap.get(cv2.CAP_PROP_FPS))
    finally:
        cap.release()
    # OpenCV reports 0 (or NaN / absurd values from broken headers) when it does not know.
    if not math.isfinite(fps) or fps <= 0 or fps > 1000:
        return None
    return fps


def write_mp4(path: str | os.PathLike[str], frames: Iterable[np.ndarray], fps: float) -> int:
    """Write RGB frames to an MP4 file (OpenCV, `mp4v` codec).

    Args:
        path: output file; parent folders are created.
        frames: (H, W, 3) uint8 RGB frames of one size (grayscale is expanded).
        fps: frame rate, > 0.

    Returns:
        The number of frames written.

    Raises:
        ValueError: fps <= 0, no frames, or a frame of a different size (the partial file is
            removed so that no truncated video is left behind).
    """
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"{path}: fps must be > 0, got {fps}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer: cv2.VideoWriter | None = None
    size: tuple[int, int] | None = None
    n = 0
    ok = False
    try:
        for i, frame in enumerate(frames):
            rgb = to_rgb_uint8(frame, source=f"{out}: frame {i}", bgr=False)
            h, w = rgb.shape[:2]
            if writer is None:
                size = (h, w)
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise ValueError(f"{out}: OpenCV cannot open an mp4v writer")
            elif (h, w) != size:
                raise ValueError(
                    f"{out}: frame {i} is {w}x{h}, but frame 0 is {size[1]}x{size[0]} (W x H)"
                )
            writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
            n += 1
        if n == 0:
            raise ValueError(f"{out}: no frames to write")
        ok = True
    finally:
        if writer is not None:
            writer.release()
        if not ok and writer is not None and out.exists():
            out.unlink()
    return n
