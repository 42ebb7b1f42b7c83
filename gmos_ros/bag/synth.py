"""A synthetic scene (gmos_core.data.synthetic) written as a bag with ground truth.

Optionally with an aligned depth topic from the renderer's exact depth (``16UC1`` millimetres or
``32FC1`` metres, same header as the image, so the node pairs them by equal stamp). The scene's
configuration is stored in the bag metadata (``gmos.scene``), so the 3-D truth (object
trajectories, camera poses) can be rendered again from the bag alone (`read_scene_truth`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String

from gmos_core.data.synthetic import SceneConfig, generate_scene
from gmos_ros.bag.ground_truth import (
    GT_INTERVALS_TOPIC,
    GT_LABELS_TOPIC,
    INTERVALS_METADATA_KEY,
    SCENE_METADATA_KEY,
)
from gmos_ros.bag.storage import _open_writer, make_typestore
from gmos_ros.geometry_outputs import matrix_to_pose
from gmos_ros.messages import copy_header, make_image


def write_synthetic_bag(
    out: str | Path,
    storage: str = "mcap",
    seed: int = 0,
    num_frames: int = 24,
    fps: float = 10.0,
    height: int = 128,
    width: int = 128,
    scene_kind: str = "dynamic",
    image_topic: str = "/camera/image_raw",
    camera_info_topic: str = "/camera/camera_info",
    frame_id: str = "camera_optical",
    start_time_ns: int = 1_000_000_000,
    depth_topic: str | None = None,
    depth_encoding: str = "32FC1",
    pose_topic: str | None = None,
) -> dict[str, Any]:
    """Render one synthetic scene (gmos_core.data.synthetic) into a bag with ground truth.

    Args:
        depth_topic: also write the renderer's exact depth there, aligned with the image (same
            header, written before it), or None for no depth.
        depth_encoding: ``32FC1`` (metres, exact) or ``16UC1`` (millimetres, rounded; depth
            beyond 65.535 m, which the renderer never gives, would be clipped).
        pose_topic: also write the camera's exact pose there (geometry_msgs/PoseStamped of the
            optical frame in the scene's world frame: what a robot's odometry gives), or None.

    Returns a summary (frames, stamps, intervals, depth topic). Log times equal the header stamps.
    """
    cfg = SceneConfig(
        height=height,
        width=width,
        fps=fps,
        num_frames=num_frames,
        seed=seed,
        start_time_ns=start_time_ns,
        scene_kind=scene_kind,  # type: ignore[arg-type]
    )
    if depth_encoding not in DEPTH_ENCODINGS:
        raise ValueError(
            f"depth_encoding must be one of {sorted(DEPTH_ENCODINGS)}, got {depth_encoding!r}"
        )
    sample = generate_scene(cfg)
    mos = sample.mos_i_labels()
    intervals = {str(k): [list(iv) for iv in v] for k, v in mos.intervals.items()}
    store = make_typestore()
    writer = _open_writer(Path(out), storage)
    try:
        c_img = writer.add_connection(image_topic, "sensor_msgs/msg/Image", typestore=store)
        c_info = writer.add_connection(
            camera_info_topic, "sensor_msgs/msg/CameraInfo", typestore=store
        )
        c_gt = writer.add_connection(GT_LABELS_TOPIC, "sensor_msgs/msg/Image", typestore=store)
        c_iv = writer.add_connection(GT_INTERVALS_TOPIC, "std_msgs/msg/String", typestore=store)
        c_depth = c_pose = None
        if depth_topic:
            c_depth = writer.add_connection(depth_topic, "sensor_msgs/msg/Image", typestore=store)
        if pose_topic:
            c_pose = writer.add_connection(
                pose_topic, "geometry_msgs/msg/PoseStamped", typestore=store
            )
        writer.set_custom_data(INTERVALS_METADATA_KEY, json.dumps(intervals))
        writer.set_custom_data(SCENE_METADATA_KEY, json.dumps(scene_metadata(cfg)))
        k = sample.intrinsics
        for t in range(sample.num_frames):
            stamp = int(sample.stamps_ns[t])
            header = Header(frame_id=frame_id)
            header.stamp.sec, header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            if t == 0:
                writer.write(c_iv, stamp, serialize_message(String(data=json.dumps(intervals))))
            info = CameraInfo(header=copy_header(header), height=height, width=width)
            info.distortion_model = "plumb_bob"
            info.d = [0.0] * 5
            info.k = [float(v) for v in k.reshape(-1)]
            info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
            info.p = [k[0, 0], 0.0, k[0, 2], 0.0, 0.0, k[1, 1], k[1, 2], 0.0, 0.0, 0.0, 1.0, 0.0]
            info.p = [float(v) for v in info.p]
            writer.write(c_info, stamp, serialize_message(info))
            if c_depth is not None:
                depth = depth_image(sample.depth[t], depth_encoding, header)
                writer.write(c_depth, stamp, serialize_message(depth))
            if c_pose is not None:
                pose = matrix_to_pose(sample.cam_to_world[t], header)
                writer.write(c_pose, stamp, serialize_message(pose))
            writer.write(
                c_img, stamp, serialize_message(make_image(sample.frames[t], "rgb8", header))
            )
            gt = make_image(mos.labels[t].astype(np.uint16), "mono16", header)
            writer.write(c_gt, stamp, serialize_message(gt))
    finally:
        writer.close()
    return {
        "frames": sample.num_frames,
        "stamps_ns": [int(s) for s in sample.stamps_ns],
        "intervals": intervals,
        "scene_kind": sample.scene_kind,
        "image_topic": image_topic,
        "depth_topic": depth_topic or None,
        "depth_encoding": depth_encoding if depth_topic else None,
        "pose_topic": pose_topic or None,
    }


# Renderer depth → ROS depth image: encoding → (numpy dtype, factor from metres).
DEPTH_ENCODINGS: dict[str, tuple[str, float]] = {"32FC1": ("<f4", 1.0), "16UC1": ("<u2", 1000.0)}


def depth_image(depth_m: np.ndarray, encoding: str, header: Any) -> Any:
    """sensor_msgs/Image of an (H, W) float depth in metres (NaN / <= 0 = no depth).

    ``16UC1``: millimetres rounded, 0 where there is no depth; ``32FC1``: metres, NaN there.
    """
    dtype, factor = DEPTH_ENCODINGS[encoding]
    d = np.asarray(depth_m, np.float64)
    valid = np.isfinite(d) & (d > 0)
    if encoding == "16UC1":
        arr = np.where(valid, np.clip(np.round(d * factor), 0, 65535), 0).astype(dtype)
    else:
        arr = np.where(valid, d, np.nan).astype(dtype)
    msg = Image(header=copy_header(header), height=d.shape[0], width=d.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(d.shape[1] * arr.dtype.itemsize)
    msg.data = arr.tobytes()
    return msg


def scene_metadata(cfg: Any) -> dict[str, Any]:
    """The `SceneConfig` fields a synthetic bag was rendered with (JSON-friendly)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}
