"""Label-map PNG I/O in the DAVIS convention, and the error type shared by the data readers.

DAVIS, YouTube-VOS and Gmos-2K store label maps as palette-indexed ("P"-mode) PNGs: the pixel
value *is* the object id (0 = background, 255 = void in DAVIS ground truth) and the palette only
colours it. The official Gmos code writes its outputs the same way
(`prop/prop_utils.py:save_indexed_png`), with the PASCAL VOC / DAVIS bit-pattern palette.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "DAVIS_PALETTE",
    "DataFormatError",
    "LabelReadError",
    "davis_palette",
    "read_label_png",
    "write_indexed_png",
]


class DataFormatError(ValueError):
    """A dataset or results folder is malformed (missing frame, wrong names, bad values).

    The message always names the offending file, or the sequence and frame.
    """


class LabelReadError(DataFormatError):
    """A label PNG cannot be decoded or is not a single-channel label map."""


def davis_palette() -> np.ndarray:
    """The DAVIS / PASCAL VOC colour map, generated from its bit pattern.

    Index i is split into 3-bit groups; bit 0, 1 and 2 of each group go to R, G and B, from the
    most significant bit downwards. Index 1 is (128, 0, 0), 2 is (0, 128, 0), 255 is
    (224, 224, 192).

    Returns:
        (256, 3) uint8 RGB palette.
    """
    pal = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c = i
        r = g = b = 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


DAVIS_PALETTE: np.ndarray = davis_palette()
DAVIS_PALETTE.setflags(write=False)  # a shared constant: nobody should recolour it in place


def write_indexed_png(path: str | os.PathLike[str], labels: np.ndarray) -> None:
    """Write a label map as a P-mode PNG with the DAVIS palette.

    Args:
        path: output file; parent folders are created.
        labels: (H, W) integer label map with values in [0, 255]; any integer dtype is accepted
            if its values fit, so an int64 argmax can be passed directly.

    Raises:
        ValueError: not 2-D, not integer, or values outside [0, 255].
    """
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"{path}: label map must be (H, W), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_:
            raise ValueError(f"{path}: label map must be an integer array, got {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(
                f"{path}: label values must be in [0, 255], got [{arr.min()}, {arr.max()}]"
            )
        arr = arr.astype(np.uint8)
    img = Image.fromarray(np.ascontiguousarray(arr), mode="P")
    img.putpalette(DAVIS_PALETTE.reshape(-1).tolist())
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, format="PNG")


def read_label_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a label map: the palette *indices* of a P-mode PNG, or the values of an L-mode one.

    1-bit PNGs are read as 0/1. RGB(A) PNGs are rejected rather than guessed at: mapping
    colours back to ids would depend on which palette the writer used, and the DAVIS toolkit
    itself breaks on them (it gets a 3-D array).

    Args:
        path: PNG file.

    Returns:
        (H, W) uint8 label map.

    Raises:
        LabelReadError: missing, corrupt or truncated file, or a colour / 16-bit image.
    """
    p = Path(path)
    if not p.is_file():
        raise LabelReadError(f"{p}: label PNG not found")
    try:
        with Image.open(p) as img:
            img.load()  # PIL opens lazily: decode now so truncation surfaces here, with the name
            mode = img.mode
            if mode in ("P", "L"):
                arr = np.array(img, dtype=np.uint8)
            elif mode == "1":
                arr = np.array(img, dtype=np.uint8)  # bool -> 0/1
            else:
                arr = None
    except LabelReadError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise LabelReadError(f"{p}: corrupt or truncated image ({e})") from e
    if arr is None:
        if mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LA", "PA"):
            hint = "a colour image; label maps must be palette-indexed (P) or grayscale (L)"
        else:
            hint = f"mode {mode!r}; only 8-bit P, L or 1-bit label maps are supported"
        raise LabelReadError(f"{p}: {hint}")
    if arr.ndim != 2:
        raise LabelReadError(f"{p}: expected a single-channel label map, got shape {arr.shape}")
    return arr
