"""A synthetic scene (gmos_core.data.synthetic) written as a bag with ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.serialization import serialize_message

from gmos_ros.bag.ground_truth import GT_INTERVALS_TOPIC, GT_LABELS_TOPIC, INTERVALS_METADATA_KEY
from gmos_ros.bag.storage import _open_writer, make_typestore
from gmos_ros.messages import copy_header


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
) -> dict[str, Any]:
    """Render one synthetic scene (gmos_core.data.synthetic) into a bag with ground truth.

    Returns a summary (frames, stamps, intervals). Log times equal the header stamps.
    """
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header, String

    from gmos_core.data.synthetic import SceneConfig, generate_scene
    from gmos_ros.messages import make_image

    cfg = SceneConfig(
        height=height,
        width=width,
        fps=fps,
        num_frames=num_frames,
        seed=seed,
        start_time_ns=start_time_ns,
        scene_kind=scene_kind,  # type: ignore[arg-type]
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
        writer.set_custom_data(INTERVALS_METADATA_KEY, json.dumps(intervals))
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
    }
