"""`gmos-bag eval`: the node's own processing run offline over a bag, scored and written."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader

from gmos_ros.bag.ground_truth import GT_LABELS_TOPIC, read_ground_truth
from gmos_ros.bag.scoring import score_mos_i
from gmos_ros.bag.signals import _ClosingSignals
from gmos_ros.bag.storage import _open_writer, iter_messages, make_typestore
from gmos_ros.conversions import ConversionError, compressed_to_rgb, image_to_rgb
from gmos_ros.messages import HeaderedStream, result_masks, result_messages, stamp_to_ns
from gmos_ros.params import NodeParams, apply_threads


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
        }


def run_eval(
    bag: str | Path,
    out_bag: str | Path | None,
    params: NodeParams,
    image_topic: str | None = None,
    ns: str = "/gmos",
    storage: str = "mcap",
    metrics_path: str | Path | None = None,
    model: Any = None,
) -> EvalReport:
    """Run the node's processing on every image of `bag` (see the module docstring).

    Args:
        bag: input bag (sqlite3 or mcap).
        out_bag: output bag directory (must not exist), or None to write none.
        params: node settings (`load_params_file` + overrides), first camera used.
        image_topic: the image topic (default: the only Image/CompressedImage topic that is
            not ground truth).
        ns: output namespace (the node's fully qualified name, /gmos by default).
        storage: output bag storage.
        metrics_path: where to write the metrics JSON.
        model: an already loaded model (else loaded from `params.runtime`).
    """
    from sensor_msgs.msg import CompressedImage, Image

    from gmos_core.streaming.build import build_segmenter, load_frame_model

    with Reader(bag) as reader:
        image_types = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
        candidates = [
            c for c in reader.connections if c.msgtype in image_types and c.topic != GT_LABELS_TOPIC
        ]
    if image_topic is None:
        topics = sorted({c.topic for c in candidates})
        if len(topics) != 1:
            raise ValueError(f"{bag}: give --image-topic (image topics: {topics})")
        image_topic = topics[0]
    msgtype = next((c.msgtype for c in candidates if c.topic == image_topic), None)
    if msgtype is None:
        raise ValueError(f"{bag}: no image topic {image_topic!r}")
    cls = CompressedImage if msgtype.endswith("CompressedImage") else Image
    report = EvalReport(settings={"variant": params.runtime.variant, "image_topic": image_topic})
    apply_threads(params)
    t0 = time.perf_counter()
    model = model if model is not None else load_frame_model(params.runtime)
    report.model_load_s = time.perf_counter() - t0
    stream = HeaderedStream(
        build_segmenter(params.runtime, model=model), max_input_pixels=params.max_input_pixels
    )
    preds: dict[int, tuple[np.ndarray, set[int]]] = {}
    writer = None
    conns: dict[str, Any] = {}
    if out_bag is not None:
        store = make_typestore()
        writer = _open_writer(Path(out_bag), storage)
        for leaf, typ in (
            ("instance_mask", "sensor_msgs/msg/Image"),
            ("dynamic_mask", "sensor_msgs/msg/Image"),
            ("objects", "gmos_msgs/msg/MovingObjectArray"),
        ):
            conns[leaf] = writer.add_connection(f"{ns}/{leaf}", typ, typestore=store)

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
            if writer is not None:
                for leaf, msg in (
                    ("instance_mask", inst),
                    ("dynamic_mask", dyn),
                    ("objects", objs),
                ):
                    writer.write(conns[leaf], stamp, serialize_message(msg))

    t1 = time.perf_counter()
    try:
        with _ClosingSignals():
            for _, _, _, raw in iter_messages(bag, [image_topic]):
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
    if metrics_path is not None:
        Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
        Path(metrics_path).write_text(json.dumps(report.to_json(), indent=1))
    return report
