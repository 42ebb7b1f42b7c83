"""The node's parameters: one table (name, default, description), typed settings, QoS profiles.

The table is the single source of truth: the node declares every entry with its description,
`config/gmos.yaml` holds the same defaults (a test checks both agree), and `read_params`
turns the declared values into a validated `NodeParams`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

from gmos_core.geometry.slam_masks import INSTANCE_ENCODINGS
from gmos_core.motion_decision import AUTO, MOTION_DECISION_CHOICES
from gmos_core.streaming.build import RuntimeSettings, resolve_motion_decision
from gmos_ros.health import HealthThresholds, Level

__all__ = [
    "PARAMS",
    "PI3_HEADS_MODES",
    "apply_threads",
    "QOS_PROFILES",
    "CameraConfig",
    "GeometrySettings",
    "NodeParams",
    "ParamSpec",
    "make_qos",
    "params_from_values",
]

QOS_PROFILES = ("sensor_data", "default", "reliable", "best_effort")
VARIANTS = ("gmos_s", "gmos_online", "ego_residual", "frame_diff")
TRANSPORTS = ("raw", "compressed")
BACKENDS = ("torch", "onnxruntime", "tensorrt")
ORT_PROVIDERS = ("cpu", "cuda", "tensorrt")
# auto: the π³ heads run for cameras without a depth topic when the model has them; off: never.
PI3_HEADS_MODES = ("auto", "off")


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter.

    Attributes:
        name: dotted ROS name (nested keys in YAML).
        default: default value; a `Parameter.Type` declares a typed parameter with no
            default (an empty list cannot be typed in ROS 2: it reads back as []).
        description: what it does (shown by `ros2 param describe`).
        live: applied to a running node by `set_parameters` (else read-only; see
            `read_only`).
        range: inclusive (min, max) for numbers, enforced by ROS with a reason.
        choices: allowed strings (checked by `params_from_values`, hence by the node's
            set-parameters callback too).
    """

    name: str
    default: Any
    description: str
    live: bool = False
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()

    @property
    def read_only(self) -> bool:
        """Whether `set_parameters` refuses it at runtime: every parameter that is not
        applied live needs the model or the subscriptions rebuilt, so it is set at launch."""
        return not self.live

    def descriptor(self) -> ParameterDescriptor:
        """The ROS descriptor: description (+ choices, + "live" note), range, read-only."""
        text = self.description
        if self.choices:
            text += f" One of: {', '.join(self.choices)}."
        text += " Applied live." if self.live else " Read-only: set at launch."
        d = ParameterDescriptor(description=text, read_only=self.read_only)
        if self.range is not None:
            lo, hi = self.range
            if isinstance(self.default, bool) or not isinstance(self.default, (int, float)):
                raise TypeError(f"{self.name}: a range needs a numeric default")
            if isinstance(self.default, int):
                d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
            else:
                d.floating_point_range = [
                    FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)
                ]
        return d


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("autostart", True, "Configure and activate on start (no lifecycle manager needed)."),
    ParamSpec(
        "variant",
        "gmos_online",
        "Model: gmos_s (one foreground mask) or gmos_online "
        "(tracked instances with per-frame motion states); ego_residual / frame_diff: "
        "weight-free CPU baselines with gmos_online's outputs (robots without weights).",
    ),  # fmt: skip
    ParamSpec("model_config", "micro", "Named model configuration (micro, paper) or a YAML path."),
    ParamSpec("bundle", "", "One-file trained model (.safetensors); empty = shipped default."),
    ParamSpec("pi3_checkpoint", "", "Official pi3 checkpoint (paper configuration)."),
    ParamSpec("sam2_checkpoint", "", "Official SAM2 checkpoint (.pt)."),
    ParamSpec("head_checkpoint", "", "Official Gmos head checkpoint (.pth)."),
    # --- backend: what runs the network (checked at configure by gmos_core.deploy) ---
    ParamSpec(
        "backend",
        "torch",
        "Inference backend: torch, onnxruntime (onnx_dir) or tensorrt (engine_dir + "
        "onnx_dir). Refused at configure if its files do not match; never a fallback.",
    ),  # fmt: skip
    ParamSpec("device", "cpu", "torch device / GPU of the engines (cpu, cuda, cuda:1)."),
    ParamSpec(
        "onnx_dir",
        "",
        "onnxruntime / tensorrt: the gmos-export folder, exported from the bundle "
        "(gmos-export --bundle B --out DIR).",
    ),  # fmt: skip
    ParamSpec(
        "engine_dir",
        "",
        "tensorrt: the engine cache built ahead of time (gmos-build-engines --onnx DIR "
        "--cache CACHE); a missing or stale engine is refused, never rebuilt.",
    ),  # fmt: skip
    ParamSpec("ort_provider", "cpu", "onnxruntime execution provider: cpu, cuda, tensorrt."),
    ParamSpec(
        "precision",
        "fp32",
        "Network precision. torch: fp32, or bf16 / fp16 autocast (fp16 needs CUDA; on a GPU "
        "~3x faster at a relative error of 1e-2 / 2e-3); onnxruntime: that of the exported "
        "graphs; tensorrt: that of the engines (fp16 / fp32).",
    ),  # fmt: skip
    ParamSpec(
        "torch_threads",
        0,
        "torch (and onnxruntime) CPU threads for inference (0 = torch's default). On a "
        "small shared CPU, 1 avoids thread oversubscription.",
    ),  # fmt: skip
    ParamSpec(
        "allow_random_weights",
        False,
        "Run an untrained model when no weights are "
        "found (plumbing and timing only: its masks mean nothing).",
    ),  # fmt: skip
    ParamSpec(
        "window_s",
        0.5,
        "Time span of the 5-frame window, s; results are published "
        "half of it after their frame arrives.",
        range=(0.0, 10.0),
    ),  # fmt: skip
    ParamSpec(
        "proposer_stride",
        1,
        "Run the window decoder and head on every k-th frame.",
        range=(1, 1000),
    ),
    ParamSpec("tracker", "mask_iou", "Propagator tracker (mask_iou; sam2 needs video weights)."),
    ParamSpec(
        "max_objects",
        10,
        "Maximum number of objects tracked and published at once.",
        range=(1, 65535),
    ),
    ParamSpec(
        "operating_point",
        "bundle",
        "Decision thresholds: bundle (those calibrated on validation data and stored in the "
        "model bundle, else the paper's) or params (fg_threshold and "
        "propagator.motion_threshold / iou_threshold below).",
        live=True,
    ),  # fmt: skip
    ParamSpec(
        "motion_decision",
        AUTO,
        "Which proposals move: head (the model's motion head, the paper's), depth_warp (the "
        "warp residual of the aligned depth with the camera poses of geometry.pose_topics, else "
        "of the depth odometry; needs geometry.depth_topics for every camera and the "
        "camera_info topics) or flow_motion (the flow motion net on the images' optical flow, "
        "RGB only); variant gmos_online. auto: flow_motion with the shipped micro Gmos (its "
        "motion head is at chance), head with any other model.",
    ),  # fmt: skip
    ParamSpec(
        "flow_motion_weights",
        "",
        "motion_decision flow_motion: the flow motion net's weights ('' = the shipped "
        "gmos_core/assets/flow_motion.safetensors).",
    ),  # fmt: skip
    ParamSpec(
        "fg_threshold",
        0.5,
        "Gmos-S foreground probability threshold (operating_point: params).",
        live=True,
        range=(0.0, 1.0),
    ),
    ParamSpec(
        "propagator.motion_threshold",
        0.5,
        "tau_m: a proposal moves above this (operating_point: params).",
        live=True,
        range=(0.0, 1.0),
    ),  # fmt: skip
    ParamSpec(
        "propagator.iou_threshold",
        0.7,
        "tau_u: a proposal's predicted IoU is trusted above this (operating_point: params).",
        live=True,
        range=(0.0, 1.0),
    ),  # fmt: skip
    ParamSpec(
        "propagator.match_iou_threshold",
        0.95,
        "Proposal/track IoU above which the proposal re-prompts the track.",
        live=True,
        range=(0.0, 1.0),
    ),  # fmt: skip
    ParamSpec(
        "propagator.new_object_max_precision",
        0.3,
        "A proposal overlapping every track less than this (precision) starts a new object.",
        live=True,
        range=(0.0, 1.0),
    ),  # fmt: skip
    ParamSpec(
        "propagator.motion_gate",
        0.2,
        "Gate on the smoothed motion score (moving flag).",
        live=True,
        range=(0.0, 1.0),
    ),
    ParamSpec(
        "propagator.snap_iou",
        0.5,
        "tracker mask_iou: a track adopts the proposal overlapping its prediction at IoU >= "
        "this (operating_point: params; set at activation).",
        range=(0.0, 1.0),
    ),  # fmt: skip
    ParamSpec(
        "propagator.use_velocity",
        True,
        "tracker mask_iou: predict a track by its centroid velocity, false: carry it in place "
        "(operating_point: params; set at activation).",
    ),  # fmt: skip
    ParamSpec(
        "propagator.release_lost_after",
        0,
        "Free an object slot after this many frames without pixels (0 = never).",
    ),  # fmt: skip
    ParamSpec(
        "input_topics",
        ["image"],
        "Input image topics, one per camera; all cameras share "
        "one loaded model and get their own stream state.",
    ),  # fmt: skip
    ParamSpec(
        "camera_info_topics",
        Parameter.Type.STRING_ARRAY,
        "CameraInfo topic per camera "
        "(same order as input_topics; '' = none); re-published on ~/camera_info.",
    ),  # fmt: skip
    ParamSpec(
        "camera_names",
        Parameter.Type.STRING_ARRAY,
        "Output namespace per camera when "
        "there are several (default: derived from the input topic).",
    ),  # fmt: skip
    ParamSpec(
        "input_transport",
        "raw",
        "raw (sensor_msgs/Image) or compressed "
        "(sensor_msgs/CompressedImage on <topic>/compressed).",
    ),  # fmt: skip
    ParamSpec(
        "qos.input", "sensor_data", "Input QoS: sensor_data, default, reliable, best_effort."
    ),
    ParamSpec("qos.input_depth", 1, "Input queue depth (1 = latest frame only).", range=(1, 1000)),
    ParamSpec("qos.camera_info", "sensor_data", "CameraInfo subscription QoS profile."),
    ParamSpec("qos.camera_info_depth", 5, "CameraInfo queue depth.", range=(1, 1000)),
    ParamSpec("qos.output", "default", "QoS of the mask, objects and camera_info outputs."),
    ParamSpec("qos.output_depth", 5, "Output queue depth.", range=(1, 1000)),
    ParamSpec(
        "publish_overlay",
        True,
        "Publish ~/overlay (drawn only while subscribed).",
        live=True,
    ),
    ParamSpec(
        "idle_flush_s",
        -1.0,
        "End of stream: publish the results still in the window after this long without "
        "input, wall-clock s (-1 = auto, 2 x window_s; 0 = only on deactivate).",
        live=True,
        range=(-1.0, 3600.0),
    ),  # fmt: skip
    ParamSpec(
        "max_input_pixels",
        2_073_600,
        "Frames with more pixels are downscaled (aspect kept) before the model; outputs "
        "are scaled back to the input resolution (0 = no limit; default 1920 x 1080).",
        range=(0, 1_000_000_000),
    ),  # fmt: skip
    ParamSpec(
        "diagnostics_period_s", 1.0, "Period of /diagnostics, s.", live=True, range=(0.05, 3600.0)
    ),
    ParamSpec(
        "diagnostics_window_s",
        5.0,
        "Sliding window the diagnostics rates, drops, errors and latency percentiles cover, s.",
        live=True,
        range=(0.1, 3600.0),
    ),  # fmt: skip
    ParamSpec(
        "diagnostics_stale_s",
        3.0,
        "A camera with no input for this long (or since activation) is reported at "
        "diagnostics_no_input_level, s.",
        live=True,
        range=(0.1, 3600.0),
    ),  # fmt: skip
    ParamSpec(
        "diagnostics_no_input_level",
        "stale",
        "Level of a camera without input while the node is active.",
        live=True,
        choices=("stale", "error"),
    ),  # fmt: skip
    ParamSpec(
        "diagnostics_drop_warn_pct",
        10.0,
        "WARN when more than this % of the window's frames were dropped (inference slower "
        "than input).",
        live=True,
        range=(0.0, 100.0),
    ),  # fmt: skip
    ParamSpec(
        "diagnostics_error_warn_pct",
        0.0,
        "WARN when more than this % of the window's messages failed (0 = any error).",
        live=True,
        range=(0.0, 100.0),
    ),  # fmt: skip
    ParamSpec(
        "diagnostics_error_error_pct",
        50.0,
        "ERROR when more than this % of the window's messages failed.",
        live=True,
        range=(0.0, 100.0),
    ),  # fmt: skip
    ParamSpec(
        "diagnostics_latency_warn_ms",
        0.0,
        "WARN when the window's latency p95 (input stamp -> publish) exceeds this, ms (0 = off).",
        live=True,
        range=(0.0, 1e6),
    ),  # fmt: skip
    ParamSpec(
        "error_log_period_s",
        5.0,
        "At most one log line per error kind per period, s.",
        live=True,
        range=(0.0, 3600.0),
    ),  # fmt: skip
    # --- 3-D object states and SLAM outputs (gmos_ros.geometry_outputs, docs/geometry.md) ---
    ParamSpec(
        "geometry.depth_topics",
        [""],
        "Aligned depth topic per camera, in camera order ('' = none): 16UC1 mm or 32FC1 m, "
        "paired with the image by equal stamp; gives metric 3-D object states and ego-motion.",
    ),  # fmt: skip
    ParamSpec(
        "geometry.pose_topics",
        [""],
        "motion_decision depth_warp: camera pose topic per camera, in camera order ('' = none: "
        "the depth odometry's): geometry_msgs/PoseStamped of the camera's optical frame in a "
        "fixed frame (odometry), paired with the image by stamp like the depth.",
    ),  # fmt: skip
    ParamSpec(
        "geometry.depth_stamp_tolerance_s",
        0.0,
        "Largest |image stamp - depth stamp| still paired, s (0 = equal stamps only).",
        range=(0.0, 10.0),
    ),  # fmt: skip
    ParamSpec(
        "geometry.sensor_wait_s",
        0.1,
        "motion_decision depth_warp: longest wait for a frame's depth / pose when the image "
        "came first, s (0 = none); ended early by a newer depth / pose.",
        range=(0.0, 5.0),
    ),  # fmt: skip
    ParamSpec(
        "geometry.min_points",
        20,
        "Fewest valid 3-D points for an object's position.",
        range=(1, 1_000_000),
    ),
    ParamSpec(
        "geometry.velocity_window_s",
        0.5,
        "Object velocity = slope of its positions over this time span, s.",
        range=(0.0, 60.0),
    ),  # fmt: skip
    ParamSpec(
        "geometry.pi3_heads",
        "auto",
        "pi3 point/camera/confidence heads (models that have them: official pi3 checkpoints, "
        "bundles saved with heads): auto = run them on the window decoder pass for cameras "
        "without a depth topic (up-to-scale 3-D states, ~/ego_motion); off = never (no 3-D "
        "states without depth; saves the heads' cost, about +36 % of the paper-size decoder).",
        choices=PI3_HEADS_MODES,
    ),  # fmt: skip
    ParamSpec(
        "slam.dynamic_mask_dilation_px",
        0,
        "Grow ~/dynamic_mask by this many px (DynaSLAM-style consumers; DynaSLAM uses 15); "
        "0 = the mask as segmented (nvblox).",
        range=(0, 1000),
    ),  # fmt: skip
    ParamSpec(
        "slam.instance_mask_encoding",
        "mono16",
        "~/instance_mask encoding (DynOSAM-style consumers read CV_32SC1 instance images).",
        choices=tuple(INSTANCE_ENCODINGS),
    ),  # fmt: skip
)

_BY_NAME = {p.name: p for p in PARAMS}


@dataclass(frozen=True)
class CameraConfig:
    """One camera served by the node.

    Attributes:
        name: its output namespace ("" when the node serves a single camera: outputs are
            then ~/instance_mask etc.).
        image_topic: the subscribed topic (with /compressed appended for that transport).
        camera_info_topic: CameraInfo topic, or "" for none.
    """

    name: str
    image_topic: str
    camera_info_topic: str

    def output(self, leaf: str) -> str:
        """Private-namespace output topic, e.g. ~/left/instance_mask."""
        return f"~/{self.name}/{leaf}" if self.name else f"~/{leaf}"


@dataclass(frozen=True)
class QosSpec:
    """A named QoS profile plus depth."""

    profile: str
    depth: int


@dataclass(frozen=True)
class GeometrySettings:
    """Validated 3-D state / SLAM parameters (`geometry.*`, `slam.*`; see `PARAMS`).

    Attributes:
        depth_topics: aligned depth topic per camera ("" = none).
        pose_topics: camera pose topic per camera for the depth_warp decision ("" = none).
        depth_stamp_tolerance_ns: largest image/depth stamp difference still paired, ns.
        sensor_wait_s: depth_warp: longest wait for a frame's depth / pose, s.
        min_points: fewest valid 3-D points for a position.
        velocity_window_s: span of the velocity fit, s.
        pi3_heads: one of `PI3_HEADS_MODES`.
        dilation_px: growth of ~/dynamic_mask, px.
        instance_encoding: ~/instance_mask encoding (a key of `INSTANCE_ENCODINGS`).
    """

    depth_topics: tuple[str, ...] = ("",)
    pose_topics: tuple[str, ...] = ("",)
    depth_stamp_tolerance_ns: int = 0
    sensor_wait_s: float = 0.1
    min_points: int = 20
    velocity_window_s: float = 0.5
    pi3_heads: str = "auto"
    dilation_px: int = 0
    instance_encoding: str = "mono16"


@dataclass(frozen=True)
class NodeParams:
    """Validated node settings."""

    autostart: bool
    runtime: RuntimeSettings
    backend: str
    torch_threads: int
    cameras: tuple[CameraConfig, ...]
    transport: str
    qos_input: QosSpec
    qos_camera_info: QosSpec
    qos_output: QosSpec
    publish_overlay: bool
    max_objects: int
    idle_flush_s: float
    diagnostics_period_s: float
    error_log_period_s: float
    health: HealthThresholds = field(default_factory=HealthThresholds)
    max_input_pixels: int = 0
    geometry: GeometrySettings = field(default_factory=GeometrySettings)
    raw: dict[str, Any] = field(default_factory=dict)


def _camera_name(topic: str) -> str:
    # "/cam_left/image_raw" -> "cam_left": the driver namespace is the camera's name.
    parts = [p for p in topic.strip("/").split("/") if p]
    if len(parts) > 1:
        parts = parts[:-1]
    return re.sub(r"[^A-Za-z0-9_]", "_", "_".join(parts))


def params_from_values(
    values: dict[str, Any], resolve: Callable[[str], str] | None = None
) -> NodeParams:
    """Validate the declared values (name -> value) into `NodeParams`.

    Args:
        values: parameter name -> value (None = the default).
        resolve: expands and remaps a topic name (the node's `resolve_topic_name`): input
            and camera_info topics are resolved once, here, and for the compressed transport
            `/compressed` is appended to the resolved name, as image_transport does (so
            `-r image:=/cam/image_raw` gives `/cam/image_raw/compressed`). None leaves
            names as given (offline tools).

    Raises:
        ValueError: an invalid value, naming the parameter and the allowed values.
    """

    def get(name: str) -> Any:
        v = values.get(name)
        if v is None:
            d = _BY_NAME[name].default
            return [] if isinstance(d, Parameter.Type) else d
        return v

    def choice(name: str, allowed: tuple[str, ...]) -> str:
        v = str(get(name))
        if v not in allowed:
            raise ValueError(f"parameter {name}={v!r}: must be one of {', '.join(allowed)}")
        return v

    def positive(name: str) -> float:
        v = float(get(name))
        if not v > 0:
            raise ValueError(f"parameter {name}={v}: must be > 0")
        return v

    def pct(name: str) -> float:
        v = float(get(name))
        if not 0.0 <= v <= 100.0:
            raise ValueError(f"parameter {name}={v}: must lie in [0, 100]")
        return v

    def qos(name: str) -> QosSpec:
        depth = int(get(f"{name}_depth"))
        if depth < 1:
            raise ValueError(f"parameter {name}_depth={depth}: must be >= 1")
        return QosSpec(choice(name, QOS_PROFILES), depth)

    variant = choice("variant", VARIANTS)
    backend = choice("backend", BACKENDS)
    provider = choice("ort_provider", ORT_PROVIDERS)
    transport = choice("input_transport", TRANSPORTS)
    topics = [str(t) for t in get("input_topics") if str(t)]
    if not topics:
        raise ValueError("parameter input_topics: give at least one image topic")
    infos = [str(t) for t in get("camera_info_topics")]
    if len(infos) > len(topics):
        raise ValueError(
            f"parameter camera_info_topics has {len(infos)} entries for {len(topics)} cameras"
        )
    infos += [""] * (len(topics) - len(infos))
    names = [str(n) for n in get("camera_names")]
    if names and len(names) != len(topics):
        raise ValueError(f"parameter camera_names has {len(names)} entries for {len(topics)}")
    if len(topics) == 1 and not names:
        names = [""]
    elif not names:
        names = [_camera_name(t) or f"cam{i}" for i, t in enumerate(topics)]
        if len(set(names)) != len(names):
            names = [f"cam{i}" for i in range(len(topics))]
    if len(set(names)) != len(names):
        raise ValueError(f"parameter camera_names: duplicate names {names}")
    cameras = []
    for name, topic, info in zip(names, topics, infos):
        if resolve is not None:
            topic = resolve(topic)
            info = resolve(info) if info else ""
        if transport == "compressed" and not topic.endswith("/compressed"):
            topic = topic.rstrip("/") + "/compressed"
        cameras.append(CameraConfig(name, topic, info))
    window = float(get("window_s"))
    if window < 0:
        raise ValueError(f"parameter window_s={window}: must be >= 0")
    stride = int(get("proposer_stride"))
    if stride < 1:
        raise ValueError(f"parameter proposer_stride={stride}: must be >= 1")
    max_objects = int(get("max_objects"))
    if max_objects < 1:
        raise ValueError(f"parameter max_objects={max_objects}: must be >= 1")
    release = int(get("propagator.release_lost_after"))
    propagator = {
        k: float(get(f"propagator.{k}"))
        for k in (
            "motion_threshold",
            "iou_threshold",
            "match_iou_threshold",
            "new_object_max_precision",
            "motion_gate",
        )
    }
    propagator["max_objects"] = max_objects
    propagator["release_lost_after"] = release if release > 0 else None
    op_mode = str(get("operating_point"))
    fg_threshold: float | None = None
    if op_mode == "bundle":
        # The model's own thresholds (a calibrated bundle's): parameters must not override them.
        del propagator["motion_threshold"], propagator["iou_threshold"]
    elif op_mode == "params":
        fg_threshold = float(get("fg_threshold"))
        propagator["snap_iou"] = float(get("propagator.snap_iou"))
        propagator["use_velocity"] = bool(get("propagator.use_velocity"))
        if not 0.0 <= fg_threshold < 1.0:
            raise ValueError(f"parameter fg_threshold={fg_threshold}: must lie in [0, 1)")
    else:
        raise ValueError(f"parameter operating_point={op_mode!r}: must be one of bundle, params")
    idle_flush = float(get("idle_flush_s"))
    if idle_flush < 0:  # auto: long enough that a camera running at any usual rate never
        # triggers it between two frames, short enough that a stopped camera's last results
        # come out within a second or two.
        idle_flush = 2.0 * window
    no_input = choice("diagnostics_no_input_level", ("stale", "error"))
    max_pixels = int(get("max_input_pixels"))
    if max_pixels < 0:
        raise ValueError(f"parameter max_input_pixels={max_pixels}: must be >= 0 (0 = no limit)")
    precision = str(get("precision"))
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"parameter precision={precision!r}: must be one of fp32, bf16, fp16")
    geometry = _geometry_settings(get, choice, len(topics))
    decision = choice("motion_decision", MOTION_DECISION_CHOICES)
    if any(geometry.pose_topics) and decision != "depth_warp":
        raise ValueError(
            "parameter geometry.pose_topics: camera poses are used by motion_decision depth_warp "
            f"only (motion_decision is {decision})"
        )
    if decision not in ("head", AUTO) and variant != "gmos_online":
        raise ValueError(
            f"parameter motion_decision={decision} decides which proposals move: variant "
            f"gmos_online only (got {variant})"
        )
    if decision == "depth_warp":
        without = [c.image_topic for c, t in zip(cameras, geometry.depth_topics) if not t]
        if without:
            raise ValueError(
                "parameter motion_decision=depth_warp needs an aligned depth topic for every "
                f"camera (geometry.depth_topics); none for {', '.join(without)}"
            )
        if not all(c.camera_info_topic for c in cameras):
            raise ValueError(
                "parameter motion_decision=depth_warp needs camera_info for every camera "
                "(camera_info_topics)"
            )
    runtime = RuntimeSettings(
        variant=variant,  # type: ignore[arg-type]
        model_config=str(get("model_config")),
        bundle=str(get("bundle")) or None,
        pi3_checkpoint=str(get("pi3_checkpoint")) or None,
        sam2_checkpoint=str(get("sam2_checkpoint")) or None,
        head_checkpoint=str(get("head_checkpoint")) or None,
        device=str(get("device")),
        precision=precision,
        span_s=window,
        proposer_stride=stride,
        tracker=str(get("tracker")),  # type: ignore[arg-type]
        propagator=propagator,
        fg_threshold=fg_threshold,
        allow_random_weights=bool(get("allow_random_weights")),
        backend=backend,
        onnx_dir=str(get("onnx_dir")) or None,
        engine_dir=str(get("engine_dir")) or None,
        provider=provider,
        motion_decision=decision,
        flow_motion_weights=str(get("flow_motion_weights")),
    )
    # auto names a decision here already, so that the node, its diagnostics and `gmos-bag
    # eval` all see (and log) the one that runs.
    runtime = resolve_motion_decision(runtime)
    return NodeParams(
        autostart=bool(get("autostart")),
        runtime=runtime,
        backend=backend,
        torch_threads=max(0, int(get("torch_threads"))),
        cameras=tuple(cameras),
        transport=transport,
        qos_input=qos("qos.input"),
        qos_camera_info=qos("qos.camera_info"),
        qos_output=qos("qos.output"),
        publish_overlay=bool(get("publish_overlay")),
        max_objects=max_objects,
        idle_flush_s=idle_flush,
        diagnostics_period_s=positive("diagnostics_period_s"),
        error_log_period_s=float(get("error_log_period_s")),
        health=HealthThresholds(
            window_s=positive("diagnostics_window_s"),
            stale_s=positive("diagnostics_stale_s"),
            no_input_level=Level.ERROR if no_input == "error" else Level.STALE,
            drop_warn_pct=pct("diagnostics_drop_warn_pct"),
            error_warn_pct=pct("diagnostics_error_warn_pct"),
            error_error_pct=pct("diagnostics_error_error_pct"),
            latency_warn_ms=max(0.0, float(get("diagnostics_latency_warn_ms"))),
        ),
        max_input_pixels=max_pixels,
        geometry=geometry,
        raw=dict(values),
    )


def _geometry_settings(
    get: Callable[[str], Any], choice: Callable[[str, tuple[str, ...]], str], cameras: int
) -> GeometrySettings:
    """The `geometry.*` / `slam.*` part of `params_from_values` (same getters, same errors)."""

    def per_camera(name: str) -> tuple[str, ...]:
        topics = tuple(str(t) for t in (get(name) or [""]))
        if len(topics) not in (1, cameras) and any(topics):
            raise ValueError(
                f"parameter {name} has {len(topics)} entries for {cameras} cameras "
                "(give one per camera, '' for none)"
            )
        return topics

    tol = float(get("geometry.depth_stamp_tolerance_s"))
    if tol < 0:
        raise ValueError(f"parameter geometry.depth_stamp_tolerance_s={tol}: must be >= 0")
    wait = float(get("geometry.sensor_wait_s"))
    if wait < 0:
        raise ValueError(f"parameter geometry.sensor_wait_s={wait}: must be >= 0")
    min_points = int(get("geometry.min_points"))
    if min_points < 1:
        raise ValueError(f"parameter geometry.min_points={min_points}: must be >= 1")
    window = float(get("geometry.velocity_window_s"))
    if not window > 0:
        raise ValueError(f"parameter geometry.velocity_window_s={window}: must be > 0")
    dilation = int(get("slam.dynamic_mask_dilation_px"))
    if dilation < 0:
        raise ValueError(f"parameter slam.dynamic_mask_dilation_px={dilation}: must be >= 0")
    return GeometrySettings(
        depth_topics=per_camera("geometry.depth_topics"),
        pose_topics=per_camera("geometry.pose_topics"),
        depth_stamp_tolerance_ns=int(round(tol * 1e9)),
        sensor_wait_s=wait,
        min_points=min_points,
        velocity_window_s=window,
        pi3_heads=choice("geometry.pi3_heads", PI3_HEADS_MODES),
        dilation_px=dilation,
        instance_encoding=choice("slam.instance_mask_encoding", tuple(INSTANCE_ENCODINGS)),
    )


def make_qos(spec: QosSpec) -> QoSProfile:
    """rclpy QoSProfile for a named profile and depth (keep-last, volatile)."""
    if spec.profile == "sensor_data":
        reliability = qos_profile_sensor_data.reliability  # best effort
    elif spec.profile == "best_effort":
        reliability = ReliabilityPolicy.BEST_EFFORT
    else:  # "default" and "reliable"
        reliability = ReliabilityPolicy.RELIABLE
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=spec.depth,
        reliability=reliability,
        durability=DurabilityPolicy.VOLATILE,
    )


def apply_threads(params: NodeParams) -> None:
    """Set torch's CPU thread count when `torch_threads` > 0 (process-wide)."""
    if params.torch_threads > 0:
        torch.set_num_threads(params.torch_threads)
