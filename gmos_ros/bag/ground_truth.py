"""Ground truth stored in a bag: /gt/labels label images, /gt/intervals motion intervals, and
for synthetic bags the scene configuration (3-D truth rendered again from it)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import String

from gmos_core.data.synthetic import SceneConfig, generate_scene
from gmos_ros.bag.storage import _bag_custom_data, iter_messages
from gmos_ros.conversions import ConversionError
from gmos_ros.messages import stamp_to_ns

GT_LABELS_TOPIC = "/gt/labels"
GT_INTERVALS_TOPIC = "/gt/intervals"
INTERVALS_METADATA_KEY = "gmos.intervals"
SCENE_METADATA_KEY = "gmos.scene"


def labels_from_image(msg: Any) -> np.ndarray:
    """(H, W) uint16 label map of a mono16/16UC1/mono8 Image (honours step and endianness)."""
    if msg.encoding in ("mono16", "16UC1"):
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
    elif msg.encoding in ("mono8", "8UC1"):
        dtype = np.dtype(np.uint8)
    else:
        raise ConversionError("encoding", f"label image encoding {msg.encoding!r} is not mono")
    row = msg.width * dtype.itemsize
    buf = np.frombuffer(msg.data, np.uint8)
    if msg.step < row or buf.size < msg.step * (msg.height - 1) + row:
        raise ConversionError("truncated", "label image data shorter than height x step")
    buf = np.concatenate([buf, np.zeros(max(0, msg.step * msg.height - buf.size), np.uint8)])
    rows = buf[: msg.step * msg.height].reshape(msg.height, msg.step)[:, :row]
    return np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width).astype(np.uint16)


@dataclass
class GroundTruth:
    """Ground truth of a synthetic (or annotated) bag, in image-frame order.

    Attributes:
        stamps_ns: (T,) stamps of the labelled frames.
        labels: (T, H, W) uint16 label maps.
        intervals: object id -> inclusive [start, end] frame intervals of motion.
    """

    stamps_ns: list[int]
    labels: np.ndarray
    intervals: dict[int, list[tuple[int, int]]]


def read_ground_truth(
    path: str | Path, labels_topic: str = GT_LABELS_TOPIC, intervals_topic: str = GT_INTERVALS_TOPIC
) -> GroundTruth | None:
    """The bag's ground truth, or None if it has no labels or no intervals."""
    stamps, labels, intervals_json = [], [], None
    for topic, _, _, raw in iter_messages(path, [labels_topic, intervals_topic]):
        if topic == labels_topic:
            msg = deserialize_message(raw, Image)
            stamps.append(stamp_to_ns(msg.header))
            labels.append(labels_from_image(msg))
        else:
            intervals_json = deserialize_message(raw, String).data
    if intervals_json is None:
        intervals_json = _bag_custom_data(path).get(INTERVALS_METADATA_KEY)
    if not labels or intervals_json is None:
        return None
    order = np.argsort(np.asarray(stamps), kind="stable")
    intervals = {
        int(k): [(int(a), int(b)) for a, b in v] for k, v in json.loads(intervals_json).items()
    }
    return GroundTruth([stamps[i] for i in order], np.stack([labels[i] for i in order]), intervals)


def read_scene_truth(path: str | Path) -> Any | None:
    """The synthetic scene a bag was written from (`write_synthetic_bag`), rendered again from
    its stored configuration: a `gmos_core.data.synthetic.SceneSample` with exact depth, camera
    poses and object trajectories; None for a bag without one.

    Raises:
        ValueError: the stored configuration is not a valid `SceneConfig`.
    """
    raw = _bag_custom_data(path).get(SCENE_METADATA_KEY)
    if raw is None:
        return None
    fields = {f.name for f in dataclasses.fields(SceneConfig)}
    try:
        cfg = json.loads(raw)
        unknown = sorted(set(cfg) - fields)
        if unknown:
            raise ValueError(f"unknown fields {unknown}")
        cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
        return generate_scene(SceneConfig(**cfg))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: bad {SCENE_METADATA_KEY} metadata: {exc}") from exc
