"""`gmos-bag eval`: the node's own processing run offline over a bag, scored and written.

With a depth topic (``depth_topic``, aligned with the image, paired by equal stamp like the node)
and the bag's camera_info, the objects get the node's metric 3-D states (the same
`depth_states_from_messages` the node runs) and ``<ns>/ego_motion`` is written; a synthetic bag
(`write_synthetic_bag`) then also gets them scored against the rendered scene's truth
(`gmos_core.metrics.object_states`).
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from gmos_core.geometry import DepthError
from gmos_core.geometry.depth_states import DepthObjectStates
from gmos_core.geometry.warp_decision import DepthOdometryPoses
from gmos_core.metrics.object_states import (
    FrameEstimate,
    ObjectStatesScore,
    StateSamples,
    score_object_states,
)
from gmos_core.streaming.build import build_segmenter, load_frame_model
from gmos_ros.bag.ground_truth import GT_LABELS_TOPIC, read_ground_truth, read_scene_truth
from gmos_ros.bag.scoring import frame_estimate, score_mos_i
from gmos_ros.bag.signals import _ClosingSignals
from gmos_ros.bag.storage import _open_writer, iter_messages, make_typestore
from gmos_ros.conversions import ConversionError, compressed_to_rgb, image_to_rgb
from gmos_ros.geometry_outputs import (
    depth_states_from_messages,
    ego_motion_msg,
    fill_object_states,
    sensor_frame_from_messages,
)
from gmos_ros.messages import HeaderedStream, result_masks, result_messages, stamp_to_ns
from gmos_ros.params import GeometrySettings, NodeParams, apply_threads


# ---------------------------------------------------------------------------------- eval
@dataclass
class EvalReport:
    """What `run_eval` measured."""

    frames: int = 0
    results: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    model_load_s: float = 0.0
    mos_i: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    # With a depth topic: depth_unmatched / warp_depth_missing / warp_pose_missing /
    # camera_info_missing / depth_invalid counts (as the node's diagnostics), and the 3-D
    # states scored against a synthetic bag's scene.
    geometry_errors: dict[str, int] = field(default_factory=dict)
    states_3d: ObjectStatesScore | None = None
    states_3d_samples: StateSamples | None = None

    @property
    def fps(self) -> float:
        """Frames processed per second of compute (model loading excluded)."""
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (the metrics file)."""
        return {
            "frames": self.frames,
            "results": self.results,
            "rejected": self.rejected,
            "seconds": round(self.seconds, 3),
            "frames_per_second": round(self.fps, 3),
            "model_load_s": round(self.model_load_s, 3),
            "mos_i": self.mos_i,
            "settings": self.settings,
            "geometry_errors": self.geometry_errors,
            "states_3d": self.states_3d.to_json() if self.states_3d is not None else None,
        }


def camera_info_topic(bag: str | Path) -> str:
    """The bag's one camera_info topic (what its depth is used with).

    Raises:
        ValueError: none, or several.
    """
    with Reader(bag) as reader:
        infos = sorted(
            {c.topic for c in reader.connections if c.msgtype == "sensor_msgs/msg/CameraInfo"}
        )
    if len(infos) != 1:
        raise ValueError(f"{bag}: 3-D states need one camera_info topic, found {infos}")
    return infos[0]


def run_eval(
    bag: str | Path,
    out_bag: str | Path | None,
    params: NodeParams,
    image_topic: str | None = None,
    ns: str = "/gmos",
    storage: str = "mcap",
    metrics_path: str | Path | None = None,
    model: Any = None,
    depth_topic: str | None = None,
    pose_topic: str | None = None,
) -> EvalReport:
    """Run the node's processing on every image of `bag` (see the module docstring).

    Args:
        bag: input bag (sqlite3 or mcap).
        out_bag: output bag directory (must not exist), or None to write none.
        params: node settings (`load_params_file` + overrides), first camera used.
        image_topic: the image topic (default: the only Image/CompressedImage topic that is
            neither ground truth nor `depth_topic`).
        ns: output namespace (the node's fully qualified name, /gmos by default).
        storage: output bag storage.
        metrics_path: where to write the metrics JSON.
        model: an already loaded model (else loaded from `params.runtime`).
        depth_topic: aligned depth topic of the bag (16UC1 mm / 32FC1 m): metric 3-D states
            with the node's code and defaults (`GeometrySettings`), using the bag's only
            camera_info topic; None = no 3-D states (as a node without
            ``geometry.depth_topics``).
        pose_topic: the bag's camera pose topic (geometry_msgs/PoseStamped) for
            ``motion_decision: depth_warp`` (as ``geometry.pose_topics``); None: the poses
            of the depth odometry.
    """
    with Reader(bag) as reader:
        image_types = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
        candidates = [
            c for c in reader.connections if c.msgtype in image_types and c.topic != GT_LABELS_TOPIC
        ]
    if depth_topic and not any(c.topic == depth_topic for c in candidates):
        raise ValueError(f"{bag}: no depth topic {depth_topic!r}")
    if image_topic is None:
        topics = sorted({c.topic for c in candidates if c.topic != depth_topic})
        if len(topics) != 1:
            raise ValueError(f"{bag}: give --image-topic (image topics: {topics})")
        image_topic = topics[0]
    msgtype = next((c.msgtype for c in candidates if c.topic == image_topic), None)
    if msgtype is None:
        raise ValueError(f"{bag}: no image topic {image_topic!r}")
    info_topic = camera_info_topic(bag) if depth_topic else None
    cls = CompressedImage if msgtype.endswith("CompressedImage") else Image
    report = EvalReport(settings={"variant": params.runtime.variant, "image_topic": image_topic})
    warp = params.runtime.motion_decision == "depth_warp"
    if warp and not depth_topic:
        raise ValueError(
            "motion_decision depth_warp needs the bag's aligned depth topic (--depth-topic)"
        )
    if pose_topic and not warp:
        raise ValueError("a pose topic is used by motion_decision depth_warp only")
    apply_threads(params)
    t0 = time.perf_counter()
    model = model if model is not None else load_frame_model(params.runtime)
    report.model_load_s = time.perf_counter() - t0
    poses = DepthOdometryPoses()
    # The depth odometry needs the RGB frames (the node keeps them for a camera with depth).
    stream = HeaderedStream(
        build_segmenter(params.runtime, model=model),
        keep_frames=bool(depth_topic),
        max_input_pixels=params.max_input_pixels,
    )
    geo = GeometrySettings()
    states = DepthObjectStates(geo.min_points, geo.velocity_window_s) if depth_topic else None
    depths: deque[tuple[int, Any]] = deque(maxlen=64)  # (stamp, depth Image), newest last
    cam_infos: deque[Any] = deque(maxlen=32)
    pose_msgs: deque[tuple[int, Any]] = deque(maxlen=64)  # (stamp, PoseStamped), newest last
    estimates: list[FrameEstimate] = []
    last_stamp: list[int | None] = [None]
    preds: dict[int, tuple[np.ndarray, set[int]]] = {}
    writer = None
    conns: dict[str, Any] = {}
    if out_bag is not None:
        store = make_typestore()
        writer = _open_writer(Path(out_bag), storage)
        outputs = [
            ("instance_mask", "sensor_msgs/msg/Image"),
            ("dynamic_mask", "sensor_msgs/msg/Image"),
            ("objects", "gmos_msgs/msg/MovingObjectArray"),
        ]
        if depth_topic:
            outputs.append(("ego_motion", "gmos_msgs/msg/EgoMotion"))
        for leaf, typ in outputs:
            conns[leaf] = writer.add_connection(f"{ns}/{leaf}", typ, typestore=store)

    def count(kind: str) -> None:
        report.geometry_errors[kind] = report.geometry_errors.get(kind, 0) + 1

    def depth_and_info(stamp: int, missing: str) -> tuple[Any, Any] | None:
        """The depth image of `stamp` and its camera_info (else the latest), or None counted."""
        depth = next((m for s, m in reversed(depths) if s == stamp), None)
        if depth is None:
            count(missing)
            return None
        info = next((i for i in reversed(cam_infos) if stamp_to_ns(i.header) == stamp), None)
        info = info or (cam_infos[-1] if cam_infos else None)
        if info is None:
            count("camera_info_missing")
            return None
        return depth, info

    def states_3d(item: Any, masks: Any, objs: Any, stamp: int) -> Any:
        """The node's metric 3-D path (`GeometryOutputs._process_depth`) on bag messages;
        returns the ego-motion message or None."""
        assert states is not None
        found = depth_and_info(stamp, "depth_unmatched")
        if found is None:
            return None
        ids = [o.id for o in objs.objects]
        try:
            up = depth_states_from_messages(states, stamp, *found, masks, ids, item.frame)
        except (DepthError, ValueError):
            count("depth_invalid")
            return None
        prev, last_stamp[0] = last_stamp[0], stamp
        fill_object_states(objs, up.states)
        if up.ego is None or prev is None:
            return None
        return ego_motion_msg(up.ego, item.header, prev)

    def sensor_for(frame: np.ndarray, in_hw: tuple[int, int], stamp: int) -> Any:
        """The depth_warp decision's input (`GeometryOutputs.sensor_frame` on bag messages)."""
        found = depth_and_info(stamp, "warp_depth_missing")
        if found is None:
            return None
        pose = None
        if pose_topic:
            pose = next((m for s, m in reversed(pose_msgs) if s == stamp), None)
            if pose is None:
                count("warp_pose_missing")
                return None
        try:
            return sensor_frame_from_messages(poses, frame, in_hw, stamp, *found, pose)
        except (DepthError, ValueError):
            count("depth_invalid")
            return None

    stream.sensor_for = sensor_for if warp else None

    def emit(items: list) -> None:
        for item in items:
            # Scored from the arrays the messages are encoded from (no decode of inst.data).
            masks = result_masks(item.result, params.max_objects)
            inst, dyn, objs = result_messages(
                item.result, item.header, params.max_objects, masks=masks
            )
            stamp = stamp_to_ns(item.header)
            preds[stamp] = (masks.ids.copy(), set(masks.moving_ids))
            report.results += 1
            ego = None
            if states is not None:
                ego = states_3d(item, masks, objs, stamp)
                estimates.append(frame_estimate(stamp, masks.ids.copy(), objs, ego))
            if writer is not None:
                out = [("instance_mask", inst), ("dynamic_mask", dyn), ("objects", objs)]
                if ego is not None:
                    out.append(("ego_motion", ego))
                for leaf, msg in out:
                    writer.write(conns[leaf], stamp, serialize_message(msg))

    t1 = time.perf_counter()
    try:
        with _ClosingSignals():
            topics = [image_topic] + ([depth_topic, info_topic] if depth_topic else [])
            topics += [pose_topic] if pose_topic else []
            for topic, _, _, raw in iter_messages(bag, topics):  # type: ignore[arg-type]
                if topic == pose_topic:
                    pm = deserialize_message(raw, PoseStamped)
                    pose_msgs.append((stamp_to_ns(pm.header), pm))
                    continue
                if topic == depth_topic:
                    d = deserialize_message(raw, Image)
                    depths.append((stamp_to_ns(d.header), d))
                    continue
                if topic == info_topic:
                    cam_infos.append(deserialize_message(raw, CameraInfo))
                    continue
                msg = deserialize_message(raw, cls)
                try:
                    frame = compressed_to_rgb(msg) if cls is CompressedImage else image_to_rgb(msg)
                    emit(stream.step(frame, msg.header))
                except (ConversionError, ValueError) as err:
                    kind = getattr(err, "kind", "stream")
                    report.rejected[kind] = report.rejected.get(kind, 0) + 1
                    continue
                report.frames += 1
            emit(stream.flush())
    finally:
        if writer is not None:
            writer.close()
    report.seconds = time.perf_counter() - t1
    gt = read_ground_truth(bag)
    if gt is not None:
        report.mos_i = score_mos_i(gt, preds, seq=Path(bag).name)
    if states is not None:
        scene = read_scene_truth(bag)
        if scene is not None:
            report.states_3d, report.states_3d_samples = score_object_states(
                scene, estimates, geo.velocity_window_s
            )
    if metrics_path is not None:
        Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
        Path(metrics_path).write_text(json.dumps(report.to_json(), indent=1))
    return report
