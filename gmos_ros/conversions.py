"""sensor_msgs/Image and CompressedImage <-> numpy, with no cv_bridge needed.

Inputs become (H, W, 3) uint8 RGB, the frame format of `gmos_core.streaming`. The helpers
take any object with the message's fields (rclpy messages, rosbags messages, test doubles),
so the node and the offline `gmos-bag eval` share one conversion path.

Supported raw encodings (what camera drivers publish), converted with OpenCV where there is
anything to convert:
- rgb8, bgr8, rgba8, bgra8, mono8;
- 8UC1 (as mono8), 8UC3 (as bgr8: an untyped 3-channel image is OpenCV's BGR, as cv_bridge
  treats it);
- mono16 and 16UC1, mapped to 8 bits as round(v / 257), cv_bridge's scaling and the rule the
  offline tools use (`gmos_core.bit_depth`), so node and `gmos-infer` agree;
- yuv422 (= uyvy, byte order U Y0 V Y1) and yuv422_yuy2 (= yuyv, Y0 U Y1 V): ROS's `yuv422`
  is UYVY, not YUYV, and mixing them up gives a plausible but colour-swapped image;
- bayer_rggb8, bayer_bggr8, bayer_gbrg8, bayer_grbg8 (the ROS name is the 2x2 pattern from
  the top-left pixel; OpenCV names the pattern one pixel in, hence the table below).
`step` (row stride, may include padding) and `is_bigendian` are honoured.

CompressedImage: JPEG and PNG (decoded with OpenCV). libjpeg / libpng print their warnings
("Corrupt JPEG data: ...") straight to the process's stderr, bypassing the node's rate-limited
log and its counters: the decode runs with file descriptor 2 captured, and the warnings are
handed back to the caller (see `compressed_to_rgb`). Everything else raises
`ConversionError` naming the problem; its `kind` is what the node counts in diagnostics.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from gmos_core.bit_depth import uint16_to_uint8

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
        order: "rgb", "bgr", "rgba", "bgra", "mono", "uyvy", "yuyv", or "bayer_<pattern>".
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
    "8UC3": EncodingInfo(3, np.dtype(np.uint8), "bgr"),
    "mono16": EncodingInfo(1, np.dtype("<u2"), "mono"),
    "16UC1": EncodingInfo(1, np.dtype("<u2"), "mono"),
    # 4:2:2, two bytes per pixel (one luma, every other chroma).
    "yuv422": EncodingInfo(2, np.dtype(np.uint8), "uyvy"),
    "uyvy": EncodingInfo(2, np.dtype(np.uint8), "uyvy"),
    "yuv422_yuy2": EncodingInfo(2, np.dtype(np.uint8), "yuyv"),
    "yuyv": EncodingInfo(2, np.dtype(np.uint8), "yuyv"),
    "bayer_rggb8": EncodingInfo(1, np.dtype(np.uint8), "bayer_rggb"),
    "bayer_bggr8": EncodingInfo(1, np.dtype(np.uint8), "bayer_bggr"),
    "bayer_gbrg8": EncodingInfo(1, np.dtype(np.uint8), "bayer_gbrg"),
    "bayer_grbg8": EncodingInfo(1, np.dtype(np.uint8), "bayer_grbg"),
}

# OpenCV conversion per layout. OpenCV names a Bayer pattern by the second row's second and
# third pixels, so ROS "rggb" (R at (0, 0)) is OpenCV's "BG" (cv_bridge uses the same table).
_CV_CODES: dict[str, int] = {
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuyv": cv2.COLOR_YUV2RGB_YUY2,
    "bayer_rggb": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg": cv2.COLOR_BayerGB2RGB,
}

# Lines the image codecs write to stderr (libjpeg(-turbo) and libpng wording).
_CODEC_WARNING_MARKERS = ("JPEG", "jpeg", "libpng", "Huffman", "marker")
_STDERR_LOCK = threading.Lock()


@contextmanager
def _codec_stderr() -> Iterator[list[str]]:
    """Capture what native code writes to file descriptor 2 meanwhile.

    Yields a list that receives the codec warning lines once the block ends. Lines that are
    not codec warnings (another thread's log line written in the same few milliseconds)
    are written back to the real stderr, so nothing else is lost.
    """
    lines: list[str] = []
    with _STDERR_LOCK, tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            others = []
            for line in text.splitlines():
                if any(m in line for m in _CODEC_WARNING_MARKERS):
                    lines.append(line.strip())
                elif line:
                    others.append(line)
            if others:
                os.write(2, ("\n".join(others) + "\n").encode())


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
    if info.order in ("uyvy", "yuyv") and width % 2:
        raise ConversionError("size", f"{encoding} needs an even width, got {width}")
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
        # The project's one 16-bit rule; it also converts to native byte order.
        pix = uint16_to_uint8(pix)
    order = info.order
    code = _CV_CODES.get(order)
    if code is not None:
        return cv2.cvtColor(np.ascontiguousarray(pix if info.channels > 1 else pix[..., 0]), code)
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


def compressed_to_rgb(msg: Any, warnings: list[str] | None = None) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG or PNG) -> (H, W, 3) uint8 RGB.

    `format` is informational ("jpeg", "png", "rgb8; jpeg compressed bgr8", ...): the codec
    is recognised from the data's magic bytes, so a mislabelled stream still decodes.

    Args:
        msg: the message (any object with `format` and `data`).
        warnings: receives the codec's warnings (e.g. "Corrupt JPEG data: premature end of
            data segment": libjpeg recovered, the image may hold grey blocks); they are never
            printed. None discards them.
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
    with _codec_stderr() as codec_lines:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if warnings is not None:
        warnings.extend(codec_lines)
    if img is None or img.size == 0:
        raise ConversionError("decode", f"corrupt {msg.format or 'compressed'} image data")
    if img.dtype == np.uint16:  # 16-bit PNG
        img = uint16_to_uint8(img)
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
