"""Numpy stand-ins for the ROS side (image message, conversion, message building) and scripted inputs (frames, proposals) for the stage timings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gmos_core.streaming import FrameResult, ProposalPrediction
from gmos_core.streaming.build import RuntimeSettings
from gmos_core.streaming.tracking import PropagatorTracking


@dataclass(frozen=True)
class ImageMsg:
    """The fields of a sensor_msgs/Image the conversion needs (numpy stand-in for ROS)."""

    height: int
    width: int
    step: int
    encoding: str
    data: bytes


def make_image_msg(frame: np.ndarray, row_padding: int = 64) -> ImageMsg:
    """(H, W, 3) uint8 -> an rgb8 message whose rows carry `row_padding` extra bytes."""
    h, w, _ = frame.shape
    step = w * 3 + row_padding
    buf = np.zeros((h, step), np.uint8)
    buf[:, : w * 3] = frame.reshape(h, w * 3)
    return ImageMsg(h, w, step, "rgb8", buf.tobytes())


def image_msg_to_rgb(msg: ImageMsg) -> np.ndarray:
    """Message -> (H, W, 3) uint8 RGB, honouring `step` (rows may be padded) and bgr8."""
    rows = np.frombuffer(msg.data, np.uint8, count=msg.height * msg.step).reshape(
        msg.height, msg.step
    )
    img = rows[:, : msg.width * 3].reshape(msg.height, msg.width, 3)
    if msg.encoding == "bgr8":
        img = img[..., ::-1]
    return np.ascontiguousarray(img)


def build_messages(result: FrameResult) -> dict[str, Any]:
    """Stand-in for the node's publishers: id mask, dynamic mask and object list as bytes."""
    return {
        "ids": result.instance_ids.astype(np.uint16, copy=False).tobytes(),
        "dynamic": (result.dynamic_mask.astype(np.uint8) * 255).tobytes(),
        "objects": [
            (o.obj_id, o.moving, o.motion_prob, o.iou, o.bbox, o.area) for o in result.objects
        ],
        "stamp_ns": result.stamp_ns,
    }


def synthetic_frames(n: int, hw: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """A textured block moving across a textured background (deterministic)."""
    rng = np.random.default_rng(seed)
    h, w = hw
    bg = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    out = []
    for t in range(n):
        f = bg.copy()
        y0, x0 = h // 3, (w // 8 + t * max(1, w // 40)) % (w - w // 4)
        f[y0 : y0 + h // 4, x0 : x0 + w // 4] = (230, 60, 40)
        out.append(f)
    return out


def live_tracking() -> Any:
    """The runtime's live-stream propagator (`MaskIoUTracker`, paper thresholds)."""
    return PropagatorTracking(RuntimeSettings(variant="gmos_online"))


def scripted_proposals(step: int, hw: tuple[int, int], k: int) -> Any:
    """K square proposals drifting 1 px per step; the first half moving (motion 0.9), the
    rest static (0.1): a propagator step with matches, prompts and motion labels to do."""
    h, w = hw
    side = max(4, min(h, w) // 6)
    masks = np.zeros((k, h, w), bool)
    for i in range(k):
        y = (i * side) % max(1, h - side)
        x = min(i * 2 * side % max(1, w - side) + step, w - side)
        masks[i, y : y + side, x : x + side] = True
    motion = np.where(np.arange(k) < k // 2, 0.9, 0.1).astype(np.float32)
    return ProposalPrediction(masks=masks, motion_prob=motion, iou=np.full(k, 0.9, np.float32))


def propagation_available() -> str | None:
    """None if `gmos_core.propagation` exposes what the bench needs, else the reason."""
    try:  # the import is the check
        from gmos_core.propagation import MaskIoUTracker, OnlinePropagator  # noqa: F401
    except ImportError as exc:
        return f"gmos_core.propagation is not available ({exc})"
    return None
