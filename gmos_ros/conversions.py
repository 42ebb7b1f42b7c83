"""sensor_msgs/Image and CompressedImage <-> numpy, with no cv_bridge needed.

Inputs become (H, W, 3) uint8 RGB, the frame format of `gmos_core.streaming`. The helpers
take any object with the message's fields (rclpy messages, rosbags messages, test doubles),
so the node and the offline `gmos-bag eval` share one conversion path.

Supported raw encodings: rgb8, bgr8, rgba8, bgra8, mono8, mono16 and 16UC1 (16-bit images
are mapped to 8 bits by their high byte, i.e. value >> 8, the same scaling cv_bridge uses for
mono16 -> mono8). `step` (row stride, may include padding) and `is_bigendian` are honoured.
CompressedImage: JPEG and PNG (decoded with OpenCV). Everything else raises
`ConversionError` naming the problem; its `kind` is what the node counts in diagnostics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

__all__ = [
    "ENCODINGS",
    "ConversionError",
    "EncodingInfo",
    "compressed_to_rgb",
    "image_to_rgb",
    "numpy_to_image_fields",
    "raw_to_rgb",
]

ErrorKind = Literal["encoding", "step", "size", "truncated", "decode", "format"]


class ConversionError(ValueError):
    """An input message that cannot be turned into an RGB frame.

    Attributes:
        kind: short machine-readable category ("encoding", "step", "size", "truncated",
            "decode", "format"), used as the diagnostics key.
    """

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


@dataclass(frozen=True)
class EncodingInfo:
    """How one raw encoding is laid out.

    Attributes:
        channels: values per pixel.
        dtype: numpy dtype of one value (little-endian; big-endian data is byte-swapped).
        order: "rgb", "bgr", "rgba", "bgra" or "mono".
    """

    channels: int
    dtype: np.dtype
    order: str

    @property
    def bytes_per_pixel(self) -> int:
        """Bytes of one pixel."""
        return self.channels * self.dtype.itemsize


ENCODINGS: dict[str, EncodingInfo] = {
    "rgb8": EncodingInfo(3, np.dtype(np.uint8), "rgb"),
    "bgr8": EncodingInfo(3, np.dtype(np.uint8), "bgr"),
    "rgba8": EncodingInfo(4, np.dtype(np.uint8), "rgba"),
    "bgra8": EncodingInfo(4, np.dtype(np.uint8), "bgra"),
    "mono8": EncodingInfo(1, np.dtype(np.uint8), "mono"),
    "8UC1": EncodingInfo(1, np.dtype(np.uint8), "mono"),
    "mono16": EncodingInfo(1, np.dtype("<u2"), "mono"),
    "16UC1": EncodingInfo(1, np.dtype("<u2"), "mono"),
}


def _as_bytes(data: Any) -> np.ndarray:
    """View the message's data field as a flat uint8 array without copying."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    try:
        # array.array('B') (rclpy), bytes, bytearray and memoryview all expose a buffer.
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        return np.asarray(list(data), dtype=np.uint8)


def raw_to_rgb(
    data: Any, height: int, width: int, encoding: str, step: int, is_bigendian: bool = False
) -> np.ndarray:
    """Decode a raw image buffer to a fresh (H, W, 3) uint8 RGB array.

    Args:
        data: the message's `data` (bytes-like or a uint8 numpy array).
        height / width: image size in pixels.
        encoding: sensor_msgs encoding string (see `ENCODINGS`).
        step: bytes per row (>= width * bytes per pixel; extra bytes are row padding).
        is_bigendian: byte order of multi-byte values.

    Raises:
        ConversionError: unknown encoding, zero size, step too small, data too short.
    """
    info = ENCODINGS.get(encoding)
    if info is None:
        raise ConversionError(
            "encoding",
            f"unsupported encoding {encoding!r} (supported: {', '.join(sorted(ENCODINGS))})",
        )
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ConversionError("size", f"zero-sized image {width}x{height}")
    row_bytes = width * info.bytes_per_pixel
    if step < row_bytes:
        raise ConversionError(
            "step",
            f"step {step} < width {width} x {info.bytes_per_pixel} bytes per pixel "
            f"({encoding}) = {row_bytes}",
        )
    buf = _as_bytes(data)
    # The last row need not carry its padding (some drivers trim it).
    need = step * (height - 1) + row_bytes
    if buf.size < need:
        raise ConversionError(
            "truncated",
            f"data has {buf.size} bytes, a {width}x{height} {encoding} image with step {step} "
            f"needs {need}",
        )
    if buf.size < step * height:
        # Pad so a strided view of `height` full rows is valid; the padding is never read.
        buf = np.concatenate([buf, np.zeros(step * height - buf.size, np.uint8)])
    rows = buf[: step * height].reshape(height, step)[:, :row_bytes]
    dtype = info.dtype.newbyteorder(">") if is_bigendian else info.dtype
    pix = np.ascontiguousarray(rows).view(dtype).reshape(height, width, info.channels)
    if info.dtype.itemsize == 2:
        # 16-bit -> 8-bit by the high byte; astype also converts to native byte order.
        pix = (pix >> 8).astype(np.uint8)
    order = info.order
    if order == "rgb":
        return np.array(pix, dtype=np.uint8, copy=True)
    if order == "bgr":
        return np.ascontiguousarray(pix[..., ::-1])
    if order == "rgba":
        return np.ascontiguousarray(pix[..., :3])
    if order == "bgra":
        return np.ascontiguousarray(pix[..., 2::-1])
    return np.ascontiguousarray(np.repeat(pix, 3, axis=2))


def image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image (any object with its fields) -> (H, W, 3) uint8 RGB."""
    return raw_to_rgb(
        msg.data, msg.height, msg.width, msg.encoding, msg.step, bool(msg.is_bigendian)
    )


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG or PNG) -> (H, W, 3) uint8 RGB.

    `format` is informational ("jpeg", "png", "rgb8; jpeg compressed bgr8", ...): the codec
    is recognised from the data's magic bytes, so a mislabelled stream still decodes.
    """
    buf = _as_bytes(msg.data)
    if buf.size == 0:
        raise ConversionError("size", "empty CompressedImage")
    head = buf[:8].tobytes()
    if not (head.startswith(b"\xff\xd8") or head.startswith(b"\x89PNG")):
        raise ConversionError(
            "format",
            f"CompressedImage format {msg.format!r}: data is neither JPEG nor PNG "
            f"(starts with {head[:4].hex()})",
        )
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ConversionError("decode", f"corrupt {msg.format or 'compressed'} image data")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[..., None], 3, axis=2))
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def numpy_to_image_fields(array: np.ndarray, encoding: str) -> tuple[int, int, int, bytes]:
    """(height, width, step, data) for an output image in `encoding`.

    Args:
        array: (H, W) for mono8/mono16, (H, W, 3) for rgb8, of the encoding's dtype.
        encoding: "mono8", "mono16" or "rgb8". Outputs are little-endian (is_bigendian = 0).
    """
    expected = {"mono8": (np.uint8, 2), "mono16": (np.uint16, 2), "rgb8": (np.uint8, 3)}
    if encoding not in expected:
        raise ValueError(f"unsupported output encoding {encoding!r}")
    dtype, ndim = expected[encoding]
    arr = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    if arr.ndim != ndim:
        raise ValueError(f"{encoding} needs a {ndim}-D array, got shape {array.shape}")
    height, width = arr.shape[:2]
    step = width * (3 if encoding == "rgb8" else 1) * arr.dtype.itemsize
    return height, width, step, arr.tobytes()
