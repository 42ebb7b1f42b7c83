"""`gmos-bag`: play, record, evaluate and synthesise ROS 2 bags without rosbag2 (rosbags).

Subcommands:
  synth   write a synthetic scene bag with ground truth (gmos_core.data.synthetic):
          <image topic> sensor_msgs/Image rgb8, <camera_info topic> sensor_msgs/CameraInfo,
          /gt/labels sensor_msgs/Image mono16 (Gmos-2K labels: the scene's dynamic objects
          re-indexed 1..M, visible or not moving), /gt/intervals std_msgs/String (JSON
          {"1": [[start, end], ...]}: inclusive frame indices, in image order, in which each
          object moves; also stored in the bag metadata custom_data "gmos.intervals").
  eval    offline and deterministic: run the node's own code (conversion, the same
          StreamingSegmenter, header bookkeeping, message builders) on every frame of a bag,
          write an mcap bag with <ns>/instance_mask, <ns>/dynamic_mask, <ns>/objects and a
          metrics JSON (MOS-I when /gt/labels and intervals are present).
  play    publish a bag's stored CDR bytes with rclpy (rate, loop, start offset, /clock).
  record  subscribe raw to topics and write them to a bag (sqlite3 or mcap).

Both storages are read and written. Message types unknown here (no importable Python class or
no definition) are skipped with a notice. `record` and `eval` close their bag on SIGINT and
SIGTERM, so an interrupted bag stays readable with everything written so far.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import CompressionFormat, CompressionMode, Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from gmos_core.compute import add_threads_argument
from gmos_core.deploy import add_backend_arguments, plan_backend
from gmos_ros.conversions import ConversionError, compressed_to_rgb, image_to_rgb
from gmos_ros.messages import HeaderedStream, copy_header, result_messages, stamp_to_ns
from gmos_ros.params import PARAMS, NodeParams, apply_threads, params_from_values

__all__ = [
    "BagPlayer",
    "OutputMonitor",
    "paced_play",
    "EvalReport",
    "Recorder",
    "default_params_file",
    "load_params_file",
    "main",
    "make_typestore",
    "message_class",
    "read_ground_truth",
    "run_eval",
    "score_mos_i",
    "write_synthetic_bag",
]

REPO = Path(__file__).resolve().parents[1]
GT_LABELS_TOPIC = "/gt/labels"
GT_INTERVALS_TOPIC = "/gt/intervals"
INTERVALS_METADATA_KEY = "gmos.intervals"
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}


def _notice(text: str) -> None:
    print(f"gmos-bag: {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- types
def _msg_dirs() -> list[Path]:
    dirs = [REPO / "msg" / "msg", Path(sys.prefix) / "share" / "gmos_msgs" / "msg"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share" / "gmos_msgs" / "msg")
    return dirs


def make_typestore() -> Typestore:
    """The ROS 2 kilted typestore plus gmos_msgs (registered from the .msg text)."""
    store = get_typestore(Stores.ROS2_KILTED)
    for d in _msg_dirs():
        if (d / "MovingObject.msg").is_file():
            types: dict[str, Any] = {}
            for name in ("MovingObject", "MovingObjectArray"):
                types.update(
                    get_types_from_msg((d / f"{name}.msg").read_text(), f"gmos_msgs/msg/{name}")
                )
            store.register(types)
            break
    return store


def message_class(msgtype: str) -> type | None:
    """The rclpy class of "pkg/msg/Type", or None if it cannot be imported here."""
    parts = msgtype.split("/")
    if len(parts) != 3:
        return None
    try:
        return getattr(importlib.import_module(f"{parts[0]}.{parts[1]}"), parts[2])
    except (ImportError, AttributeError):
        return None


COMPRESSIONS = ("none", "lz4", "zstd")


def _open_writer(path: Path, storage: str, compression: str = "none") -> Writer:
    """A rosbags writer; `compression` compresses MCAP chunks (as rosbag2's MCAP storage
    does, so any MCAP reader decodes them; the bag metadata says no file/message compression).

    rosbags offers zstd chunks only (CompressionMode.STORAGE); lz4 swaps the chunk compressor
    of its MCAP storage, lz4 frame format as the MCAP specification defines it.
    """
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    if compression != "none" and storage != "mcap":
        raise ValueError(f"compression {compression!r} needs the mcap storage, not {storage!r}")
    writer = Writer(path, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage])
    if compression != "none":
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    writer.open()
    if compression == "lz4":
        import lz4.frame

        mcap = writer.storage
        if not (hasattr(mcap, "compressor") and hasattr(mcap, "compression")):
            writer.close()
            raise RuntimeError("this rosbags version's MCAP writer cannot be given lz4")
        mcap.compression = "lz4"
        mcap.compressor = lz4.frame.compress
    return writer


class _ClosingSignals:
    """Turn SIGINT/SIGTERM into KeyboardInterrupt while a bag is being written, so the
    `finally:` that closes the writer runs (metadata written, bag readable)."""

    def __enter__(self) -> _ClosingSignals:
        self._old: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._raise)
        return self

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


class _StopOnSignal:
    """SIGINT/SIGTERM only set a flag while a recorder spins: raising inside a subscription
    callback (as `_ClosingSignals` does) could drop the message being written."""

    def __enter__(self) -> _StopOnSignal:
        self.signals = 0
        self._old: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, signum: int, frame: Any) -> None:
        self.signals += 1

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------------------------- params
def default_params_file() -> Path:
    """config/gmos.yaml of the checkout, else of the installed package share."""
    for p in (
        REPO / "config" / "gmos.yaml",
        Path(sys.prefix) / "share" / "gmos_ros" / "config" / "gmos.yaml",
    ):
        if p.is_file():
            return p
    raise FileNotFoundError("config/gmos.yaml not found (checkout or share/gmos_ros)")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_params_file(path: str | Path, node_name: str = "gmos") -> dict[str, Any]:
    """A ROS 2 params YAML as flat dotted names -> values for `node_name`.

    Sections apply in ROS order: `/**` first, then the ones naming the node (with or without
    namespace), so node-specific values win.
    """
    data = yaml.safe_load(Path(path).read_text()) or {}
    out: dict[str, Any] = {}
    for key in sorted(data, key=lambda k: 0 if k in ("/**", "**") else 1):
        section = data[key]
        name = str(key).rstrip("/").split("/")[-1]
        if key in ("/**", "**") or name == node_name:
            if not isinstance(section, dict) or "ros__parameters" not in section:
                raise ValueError(f"{path}: section {key!r} has no ros__parameters")
            out.update(_flatten(section["ros__parameters"]))
    return out


def _settings(params_file: str | None, overrides: list[str]) -> NodeParams:
    values = {s.name: None for s in PARAMS}
    values.update(load_params_file(params_file or default_params_file()))
    for item in overrides:
        if ":=" in item:
            k, v = item.split(":=", 1)
        elif "=" in item:
            k, v = item.split("=", 1)
        else:
            raise ValueError(f"-p needs name:=value, got {item!r}")
        values[k.strip()] = yaml.safe_load(v)
    return params_from_values(values)


# ---------------------------------------------------------------------------------- reading
def _connections(reader: Reader, topics: list[str] | None) -> list[Any]:
    conns = []
    for c in reader.connections:
        if topics is not None and c.topic not in topics:
            continue
        if message_class(c.msgtype) is None:
            _notice(f"skipping {c.topic}: message type {c.msgtype} unknown here")
            continue
        conns.append(c)
    return conns


def iter_messages(
    path: str | Path, topics: list[str] | None = None
) -> Iterator[tuple[str, str, int, bytes]]:
    """(topic, msgtype, log time ns, CDR bytes) in log-time order; unknown types skipped."""
    with Reader(path) as reader:
        conns = _connections(reader, topics)
        if conns:
            for conn, t, raw in reader.messages(connections=conns):
                yield conn.topic, conn.msgtype, t, bytes(raw)


def _bag_custom_data(path: str | Path) -> dict[str, str]:
    meta = Path(path) / "metadata.yaml"
    if not meta.is_file():
        return {}
    info = yaml.safe_load(meta.read_text()).get("rosbag2_bagfile_information", {})
    return dict(info.get("custom_data") or {})


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
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

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


# ---------------------------------------------------------------------------------- scoring
def score_mos_i(
    gt: GroundTruth,
    predictions: dict[int, tuple[np.ndarray, set[int]]],
    seq: str = "bag",
    num_channels: int = 20,
) -> dict[str, Any]:
    """MOS-I of predictions keyed by frame stamp: (instance ids (H, W), ids moving now).

    Frames without a prediction count as empty predictions (and are reported). The per-frame
    moving flags become the official per-channel motion scores (`___motion.npy`): an object
    that is tracked but not moving at a frame is not a moving-object prediction there.
    """
    from gmos_core.metrics.mos_i import aggregate_mos_i, evaluate_mos_i_sequence

    t, h, w = gt.labels.shape
    pred = np.zeros((t, h, w), np.uint16)
    motion = np.zeros((t, num_channels), np.float32)
    missing = 0
    for i, stamp in enumerate(gt.stamps_ns):
        item = predictions.get(stamp)
        if item is None:
            missing += 1
            continue
        ids, moving = item
        pred[i] = ids
        for k in moving:
            if 1 <= k <= num_channels:
                motion[i, k - 1] = 1.0
    from gmos_core.metrics.ranges import check_metric_ranges

    res = evaluate_mos_i_sequence(gt.labels, pred, gt.intervals, pred_motion=motion, seq=seq)
    out = {"frames": t, "missing_predictions": missing, **aggregate_mos_i([res])}
    check_metric_ranges(out, f"{seq} MOS-I")  # never report an impossible score
    return out


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

    from gmos_core.runtime import build_segmenter, load_frame_model

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
            inst, dyn, objs = result_messages(item.result, item.header, params.max_objects)
            stamp = stamp_to_ns(item.header)
            ids = np.frombuffer(inst.data, np.uint16).reshape(inst.height, inst.width)
            preds[stamp] = (ids.copy(), {o.id for o in objs.objects if o.moving})
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


# ---------------------------------------------------------------------------------- synth
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


# ---------------------------------------------------------------------------------- play
class BagPlayer:
    """Publishes a bag's stored CDR bytes with rclpy publishers (one per known topic).

    Args:
        node: the rclpy node that owns the publishers.
        path: the bag.
        topics: topics to play (default all); unknown types are skipped with a notice.
        qos_depth: reliable keep-last depth of the publishers (reliable publishers match
            both reliable and best-effort subscribers).
    """

    def __init__(
        self, node: Any, path: str | Path, topics: list[str] | None = None, qos_depth: int = 10
    ) -> None:
        self.node = node
        self.path = Path(path)
        self.publishers: dict[str, Any] = {}
        with Reader(self.path) as reader:
            for c in _connections(reader, topics):
                if c.topic not in self.publishers:
                    cls = message_class(c.msgtype)
                    self.publishers[c.topic] = node.create_publisher(cls, c.topic, qos_depth)
            self.start_ns = reader.start_time
            self.duration_ns = reader.duration

    def messages(self) -> Iterator[tuple[str, str, int, bytes]]:
        """(topic, msgtype, log time, bytes) of the played topics, in order."""
        return iter_messages(self.path, list(self.publishers))

    def publish(self, topic: str, raw: bytes) -> None:
        """Publish stored bytes (no deserialisation: what was recorded goes out)."""
        self.publishers[topic].publish(raw)

    def wait_for_subscribers(self, topics: list[str], timeout_s: float = 15.0) -> bool:
        """Bounded poll until each topic has a subscriber (discovery can take seconds)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.publishers[t].get_subscription_count() > 0 for t in topics):
                return True
            time.sleep(0.05)
        return False

    def play(
        self,
        rate: float = 1.0,
        loop: bool = False,
        start_offset_s: float = 0.0,
        clock_pub: Any = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> int:
        """Publish in log-time order, paced by `rate` (<= 0: as fast as possible).

        Returns the number of messages published.
        """
        from rosgraph_msgs.msg import Clock

        n = 0
        first = self.start_ns + int(start_offset_s * 1e9)
        while True:
            t_wall0 = time.monotonic()
            for topic, _, t, raw in self.messages():
                if t < first:
                    continue
                if rate > 0:
                    delay = (t - first) / 1e9 / rate - (time.monotonic() - t_wall0)
                    if delay > 0:
                        time.sleep(delay)
                if should_stop():
                    return n
                if clock_pub is not None:
                    c = Clock()
                    c.clock.sec, c.clock.nanosec = divmod(t, 1_000_000_000)
                    clock_pub.publish(c)
                self.publish(topic, raw)
                n += 1
            if not loop or should_stop():
                return n


class OutputMonitor:
    """Watches a gmos node from another process: result stamps on `<ns>/objects` and the
    counters of its first /diagnostics status (for lock-step playback in tests and the demo).
    """

    def __init__(self, node: Any, ns: str = "/gmos") -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from gmos_msgs.msg import MovingObjectArray

        self.cond = threading.Condition()
        self.result_stamps: list[int] = []
        self.diag: dict[str, str] = {}
        self._ns = ns
        # diagnostic_updater names a status "<node name>: <task>" (the name, not the path).
        self._status_prefix = ns.rstrip("/").rsplit("/", 1)[-1] + ":"
        self._subs = [
            node.create_subscription(MovingObjectArray, f"{ns}/objects", self._on_objects, 100),
            node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10),
        ]

    def _on_objects(self, msg: Any) -> None:
        with self.cond:
            self.result_stamps.append(stamp_to_ns(msg.header))
            self.cond.notify_all()

    def _on_diag(self, msg: Any) -> None:
        for st in msg.status:
            if st.name.startswith(self._status_prefix):
                with self.cond:
                    self.diag = {kv.key: kv.value for kv in st.values}
                    self.cond.notify_all()
                return

    def counter(self, key: str) -> float:
        """Latest diagnostics value (NaN before the first report)."""
        with self.cond:
            return float(self.diag.get(key, "nan"))

    def wait(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Bounded wait (with the lock held while testing) until `predicate()` is true."""
        with self.cond:
            return self.cond.wait_for(predicate, timeout=timeout_s)


def paced_play(
    player: BagPlayer,
    monitor: OutputMonitor,
    image_topic: str,
    span_s: float = 0.5,
    timeout_s: float = 120.0,
) -> list[int]:
    """Play a bag in lock step with the node so that it never has to drop a frame.

    Each image is published only after the node took the previous one from its slot and
    published every result that frame made ready (the segmenter finishes frame i once a
    frame at least span_s / 2 later arrived). Other topics go out as they come.

    Returns the stamps of the images published. Raises TimeoutError if the node stalls.
    """
    from sensor_msgs.msg import CompressedImage, Image

    half_ns = int(round(span_s * 1e9 / 2))
    stamps: list[int] = []
    for topic, msgtype, _, raw in player.messages():
        if topic != image_topic:
            player.publish(topic, raw)
            continue
        cls = CompressedImage if msgtype.endswith("CompressedImage") else Image
        stamps.append(stamp_to_ns(deserialize_message(raw, cls).header))
        player.publish(topic, raw)
        n = len(stamps)
        ready = {s for s in stamps if stamps[-1] >= s + half_ns}
        ok = monitor.wait(
            lambda n=n, ready=ready: (
                monitor.diag.get("frames_taken") is not None
                and float(monitor.diag["frames_taken"]) >= n
                and ready <= set(monitor.result_stamps)
            ),
            timeout_s,
        )
        if not ok:
            raise TimeoutError(
                f"node did not take frame {n} / publish its results in {timeout_s} s "
                f"(diagnostics {monitor.diag}, results {sorted(monitor.result_stamps)})"
            )
    return stamps


# ---------------------------------------------------------------------------------- record
class Recorder:
    """Raw subscriptions written to a bag as they arrive (log time = receive time).

    The callbacks only queue the bytes; one writer thread owns the bag (the sqlite3 storage
    may only be used from the thread that opened it, and a slow disk must not stall the
    executor). `close()` writes what is queued, then closes the bag.

    Args:
        node: the rclpy node that owns the subscriptions (spun by the caller).
        out: bag directory (must not exist).
        topics: topic -> "pkg/msg/Type".
        storage: "sqlite3" or "mcap".
        qos_depth: reliable keep-last depth.
        on_message: also called with (topic, bytes) for every message received.
        compression: "none", "lz4" or "zstd" MCAP chunk compression (mcap storage only).
    """

    def __init__(
        self,
        node: Any,
        out: str | Path,
        topics: dict[str, str],
        storage: str = "mcap",
        qos_depth: int = 100,
        on_message: Callable[[str, bytes], None] | None = None,
        compression: str = "none",
    ) -> None:
        self.node = node
        self.on_message = on_message
        self.compression = compression
        self.count: dict[str, int] = {}
        self._queue: queue.Queue[tuple[str, int, bytes] | None] = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        store = make_typestore()
        self.topics = {}
        for topic, msgtype in topics.items():
            if message_class(msgtype) is None or msgtype not in store.fielddefs:
                _notice(f"not recording {topic}: message type {msgtype} unknown here")
                continue
            self.topics[topic] = msgtype
            self.count[topic] = 0
        opened = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._write_loop, args=(Path(out), storage, store, opened), daemon=True
        )
        self._thread.start()
        opened.wait()
        if self._error is not None:
            raise self._error
        self.subscriptions = [
            node.create_subscription(
                message_class(t), topic, self._callback(topic), qos_depth, raw=True
            )
            for topic, t in self.topics.items()
        ]

    def _write_loop(
        self, out: Path, storage: str, store: Typestore, opened: threading.Event
    ) -> None:
        try:
            writer = _open_writer(out, storage, self.compression)
            conns = {
                topic: writer.add_connection(topic, t, typestore=store)
                for topic, t in self.topics.items()
            }
        except BaseException as err:  # reported to the constructor
            self._error = err
            opened.set()
            return
        opened.set()
        try:
            while (item := self._queue.get()) is not None:
                topic, stamp, raw = item
                writer.write(conns[topic], stamp, raw)
        finally:
            writer.close()

    def _callback(self, topic: str) -> Callable[[bytes], None]:
        def on_raw(raw: bytes) -> None:
            with self._lock:
                if self._closed:
                    return
                self._queue.put((topic, self.node.get_clock().now().nanoseconds, raw))
                self.count[topic] += 1
            if self.on_message is not None:
                self.on_message(topic, raw)

        return on_raw

    def close(self) -> None:
        """Stop recording, write what is queued and close the bag (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for sub in self.subscriptions:
            self.node.destroy_subscription(sub)
        self._queue.put(None)
        self._thread.join()


# ---------------------------------------------------------------------------------- CLI
def _cmd_synth(a: argparse.Namespace) -> int:
    info = write_synthetic_bag(
        a.out, a.storage, a.seed, a.frames, a.fps, a.height, a.width, a.scene_kind, a.image_topic
    )
    print(json.dumps({k: v for k, v in info.items() if k != "stamps_ns"}))
    return 0


def _cmd_eval(a: argparse.Namespace) -> int:
    from gmos_core.metrics.ranges import MetricRangeError
    from gmos_core.runtime import RuntimeError_

    # --threads is the node's torch_threads; a later `-p torch_threads:=N` still wins.
    threads = [f"torch_threads:={a.threads}"] if a.threads > 0 else []
    # The backend options are node parameters; given flags win over the params file.
    flags = {
        "backend": a.backend,
        "onnx_dir": a.onnx_dir,
        "engine_dir": a.engine_dir,
        "ort_provider": a.ort_provider,
        "device": a.device,
        "precision": a.precision,
    }
    overrides = [f"{k}:={v}" for k, v in flags.items() if v is not None]
    try:
        params = _settings(a.params_file, [*threads, *a.param, *overrides])
        plan_backend(params.runtime)  # refused before the bag is read
    except (ValueError, RuntimeError_) as exc:
        print(f"gmos-bag eval: error: {exc}", file=sys.stderr)
        return 2
    metrics = a.metrics or (Path(a.out).with_suffix(".json") if a.out else None)
    try:
        rep = run_eval(a.bag, a.out, params, a.image_topic, a.ns, a.storage, metrics)
    except (MetricRangeError, RuntimeError_) as err:  # e.g. device:=cuda without CUDA
        print(f"gmos-bag eval: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(rep.to_json(), indent=1))
    return 0


def _ros_node(name: str, own_signals: bool = False) -> Any:
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    # With own_signals, SIGINT/SIGTERM stay with us (rclpy would shut the context down at
    # once, and the messages already received but not yet handled would be lost).
    opts = SignalHandlerOptions.NO if own_signals else SignalHandlerOptions.ALL
    rclpy.init(args=["--ros-args"], signal_handler_options=opts)
    return rclpy.create_node(name)


def _cmd_play(a: argparse.Namespace) -> int:
    import rclpy
    from rosgraph_msgs.msg import Clock

    node = _ros_node("gmos_bag_player")
    try:
        player = BagPlayer(node, a.bag, a.topics or None)
        clock = node.create_publisher(Clock, "/clock", 10) if a.clock else None
        if a.wait_subscribers:
            player.wait_for_subscribers(list(player.publishers), a.wait_subscribers)
        n = player.play(a.rate, a.loop, a.start_offset, clock, should_stop=lambda: not rclpy.ok())
        _notice(f"published {n} messages")
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def _discover_types(node: Any, topics: list[str], timeout_s: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    found: dict[str, str] = {}
    while time.monotonic() < deadline and len(found) < len(topics):
        for name, types in node.get_topic_names_and_types():
            if name in topics and types:
                found[name] = types[0]
        time.sleep(0.1)
    for t in topics:
        if t not in found:
            _notice(f"not recording {t}: no publisher seen within {timeout_s:.0f} s")
    return found


def _cmd_record(a: argparse.Namespace) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    node = _ros_node("gmos_bag_recorder", own_signals=True)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    rec = None
    try:
        with _ClosingSignals():
            types = _discover_types(node, a.topics, a.discovery_timeout)
        with _StopOnSignal() as stop:
            rec = Recorder(node, a.out, types, a.storage, compression=a.compression)
            _notice(f"recording {sorted(rec.count)} to {a.out}")
            end = time.monotonic() + a.duration if a.duration > 0 else float("inf")
            while rclpy.ok() and not stop.signals and time.monotonic() < end:
                executor.spin_once(timeout_sec=0.1)
            # Handle what DDS already delivered (acknowledged to the publisher) before
            # closing: stop once a spin brings nothing new, or at a second signal.
            first = stop.signals
            for _ in range(1000):
                before = sum(rec.count.values())
                executor.spin_once(timeout_sec=0.05)
                if sum(rec.count.values()) == before or stop.signals > max(first, 1):
                    break
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if rec is not None:
            rec.close()
            _notice(f"closed {a.out}: {rec.count}")
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `gmos-bag` argument parser."""
    ap = argparse.ArgumentParser(
        prog="gmos-bag", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synth", help="write a synthetic scene bag with ground truth")
    s.add_argument("--out", required=True, help="bag directory (must not exist)")
    s.add_argument("--storage", choices=sorted(STORAGES), default="mcap")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--frames", type=int, default=24)
    s.add_argument("--fps", type=float, default=10.0)
    s.add_argument("--height", type=int, default=128)
    s.add_argument("--width", type=int, default=128)
    s.add_argument(
        "--scene-kind", default="dynamic", choices=["dynamic", "static", "hard_parallax", "random"]
    )
    s.add_argument("--image-topic", default="/camera/image_raw")
    s.set_defaults(func=_cmd_synth)
    e = sub.add_parser("eval", help="run the node's code on a bag offline, score it")
    e.add_argument("bag")
    e.add_argument("--out", help="output mcap bag directory (must not exist)")
    e.add_argument("--metrics", help="metrics JSON (default: <out>.json)")
    e.add_argument("--image-topic")
    e.add_argument("--ns", default="/gmos", help="output namespace (the node's name)")
    e.add_argument("--storage", choices=sorted(STORAGES), default="mcap")
    e.add_argument("--params-file", help="node params YAML (default config/gmos.yaml)")
    e.add_argument("-p", "--param", action="append", default=[], help="name:=value override")
    add_threads_argument(e)
    e.add_argument("--device", default=None, help="torch device / GPU of the engines")
    e.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16"])
    add_backend_arguments(e, defaults=False)
    e.set_defaults(func=_cmd_eval)
    p = sub.add_parser("play", help="publish a bag's messages")
    p.add_argument("bag")
    p.add_argument("--rate", type=float, default=1.0, help="speed factor (<= 0: max speed)")
    p.add_argument("--loop", action="store_true")
    p.add_argument("--start-offset", type=float, default=0.0, help="skip the first s seconds")
    p.add_argument("--topics", nargs="*")
    p.add_argument("--clock", action="store_true", help="also publish /clock (use_sim_time)")
    p.add_argument(
        "--wait-subscribers", type=float, default=0.0, help="wait up to s for subscribers"
    )
    p.set_defaults(func=_cmd_play)
    r = sub.add_parser("record", help="record topics to a bag")
    r.add_argument("--out", required=True)
    r.add_argument("--topics", nargs="+", required=True)
    r.add_argument("--storage", choices=sorted(STORAGES), default="mcap")
    r.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        default="none",
        help="MCAP chunk compression: lz4 (fast) or zstd (smaller); see docs/ros.md",
    )
    r.add_argument("--duration", type=float, default=0.0, help="stop after s seconds (0: never)")
    r.add_argument("--discovery-timeout", type=float, default=10.0)
    r.set_defaults(func=_cmd_record)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of `gmos-bag`."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
