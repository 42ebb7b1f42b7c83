"""The one 16-bit → 8-bit pixel rule, shared by the ROS path and the offline tools.

The model only ever sees 8-bit images (the official pipeline loads 8-bit files), so 16-bit
input (``mono16`` / ``16UC1`` messages, 16-bit PNGs, uint16 arrays handed to `gmos-infer`)
is scaled to 8 bits first, everywhere by this function, so the node and the offline tools
agree pixel for pixel on the same data.

The rule is ``round(v * 255 / 65535) = round(v / 257)``: what cv_bridge does
(``toCvCopy``/``cvtColor`` between 16- and 8-bit depths calls
``convertTo(dst, CV_8U, 255. / 65535.)``, which rounds to nearest), so a mono16 camera looks
the same to this node as to any cv_bridge-based one. It maps 8-bit data scaled by 257
(``v8 * 257``) back exactly; taking the high byte (``v >> 8``) would not (it maps
``128 * 257 = 32896`` to 128 but ``255 * 257 - 1`` to 254) and is biased half a level down.
``v / 257`` is never exactly halfway between two integers, so there are no ties to break.
"""

from __future__ import annotations

import numpy as np

__all__ = ["uint16_to_uint8"]


def uint16_to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Scale 16-bit pixels to 8 bits as ``round(v / 257)`` (65535 → 255).

    Args:
        pixels: uint16 array of any shape, either byte order.

    Returns:
        uint8 array of the same shape, native byte order.
    """
    if pixels.dtype.kind != "u" or pixels.dtype.itemsize != 2:
        raise TypeError(f"expected uint16 pixels, got {pixels.dtype}")
    # Integer arithmetic, exact: (v + 128) // 257 <= 65663 // 257 = 255.
    return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
