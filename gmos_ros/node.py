"""`gmos_node`: camera topics in; instance masks, dynamic masks and motion states out.

A lifecycle node (configure: parameters and publishers; activate: load the model, start the
inference thread, subscribe; deactivate: unsubscribe, finish pending frames, free the model)
that configures and activates itself when `autostart` is true, so a plain start works.

Threads. The subscription callbacks only convert the message to an RGB array and put it in
the camera's depth-1 slot; a newer frame replaces an unprocessed one (counted as dropped),
so an overloaded node always works on the latest frame and never builds a backlog. One
inference thread serves every camera in turn with ONE loaded model: each camera has its own
`StreamingSegmenter` (buffers, tracks), so cameras never mix.

Stamps. Results come half a window after their frame; `HeaderedStream` keeps the headers of
the frames in flight and every output carries the header of the frame it describes, never
now(). A stamp that goes backwards (bag loop, sim-time restart) makes the segmenter finish
the frames it holds and restart; the node counts it in /diagnostics.

Run: `python -m gmos_ros.node --ros-args --params-file config/gmos.yaml -r image:=/cam/image_raw`
"""

from __future__ import annotations

import faulthandler
import gc
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from gmos_msgs.msg import MovingObjectArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.subscription import Subscription
from rclpy.timer import Timer
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from gmos_core.deploy import BackendPlan, plan_backend
from gmos_core.operating_point import OperatingPoint
from gmos_core.streaming import FrameModel, StreamError
from gmos_core.streaming.build import (
    DEFAULT_BUNDLES,
    RuntimeSettings,
    build_segmenter,
    load_frame_model,
)
from gmos_core.visualize import overlay_instances
from gmos_ros.conversions import ConversionError, compressed_to_rgb, image_to_rgb
from gmos_ros.diagnostics import (
    CameraCounters,
    RateLimitedLogger,
    build_diagnostics,
    camera_status,
)
from gmos_ros.geometry_outputs import GeometryOutputs
from gmos_ros.health import HealthThresholds, WindowStats
from gmos_ros.messages import (
    HeaderedStream,
    StampedResult,
    make_image,
    objects_msg,
    restamp_camera_info,
    result_masks,
    stamp_to_ns,
)
from gmos_ros.params import (
    PARAMS,
    CameraConfig,
    NodeParams,
    apply_threads,
    make_qos,
    params_from_values,
)

try:  # the exception rclpy raises when rcl refuses to publish (seen under load)
    from rclpy._rclpy_pybind11 import RCLError
except ImportError:  # pragma: no cover - older rclpy
    RCLError = RuntimeError  # type: ignore[misc,assignment]

__all__ = ["GmosNode", "main"]

ModelLoader = Callable[[RuntimeSettings], FrameModel]

# Propagator thresholds a running stream takes at once (the others size its state).
_LIVE_PROPAGATOR_KEYS = frozenset(
    {
        "motion_threshold",
        "iou_threshold",
        "match_iou_threshold",
        "new_object_max_precision",
        "motion_gate",
    }
)

# Bounded stores (memory stays flat whatever the input does).
_CAMERA_INFO_KEEP = 32
_MAX_PENDING_HEADERS = 512


@dataclass
class _Slot:
    """A depth-1 queue: the latest converted frame waiting for the inference thread."""

    frame: np.ndarray
    header: Any
    received_wall: float


@dataclass
class _Camera:
    """Everything one camera owns."""

    cfg: CameraConfig
    counters: CameraCounters = field(default_factory=CameraCounters)
    slot: _Slot | None = None
    stream: HeaderedStream | None = None
    infos: deque[CameraInfo] = field(default_factory=lambda: deque(maxlen=_CAMERA_INFO_KEEP))
    pub_instance: Publisher | None = None
    pub_dynamic: Publisher | None = None
    pub_objects: Publisher | None = None
    pub_overlay: Publisher | None = None
    pub_info: Publisher | None = None
    sub_image: Subscription | None = None
    sub_info: Subscription | None = None
    last_input_wall: float = 0.0
    resets_seen: int = 0
    frame_id: str = ""


class GmosNode(LifecycleNode):
    """The Gmos perception node (see the module docstring).

    Args:
        node_name: ROS node name (outputs live under ~/, i.e. /<namespace>/<node_name>/).
        model_loader: builds the model from the settings (default `load_frame_model`); tests
            inject a cheaper one. Called once per activation, shared by all cameras.
        **kwargs: passed to `rclpy.lifecycle.LifecycleNode`.
    """

    def __init__(
        self, node_name: str = "gmos", model_loader: ModelLoader | None = None, **kwargs: Any
    ) -> None:
        super().__init__(node_name, **kwargs)
        self._model_loader = model_loader or load_frame_model
        for spec in PARAMS:
            self.declare_parameter(spec.name, spec.default, spec.descriptor())
        # After the declarations (which run these callbacks too): refuse invalid values with
        # the reason, then apply the live ones to the running node.
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_live_parameters)
        self.params: NodeParams | None = None
        # 3-D object states, ego-motion, markers, SLAM mask options (gmos_ros.geometry_outputs).
        self.geometry = GeometryOutputs(self)
        self.plan: BackendPlan | None = None
        self.cameras: list[_Camera] = []
        self.model: FrameModel | None = None
        self._active = False
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._diag_pub: Publisher | None = None
        self._diag_timer: Timer | None = None
        self._errlog = RateLimitedLogger(self.get_logger().error)

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Lifecycle configure (see `_on_configure`)."""
        return self._guard("configure", self._on_configure, state)

    def _on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read and validate parameters, create publishers and the diagnostics timer."""
        try:
            # Topic names are expanded and remapped once, here (`-r image:=...` applies to
            # the compressed transport's <image>/compressed too).
            self.params = params_from_values(self._param_values(), resolve=self._resolve)
            # The backend's files and this machine, checked now: a missing or stale ONNX
            # folder / engine or an unknown provider is refused here (node stays unconfigured).
            self.plan = plan_backend(self.params.runtime)
        except ValueError as err:
            self.params = None
            self.get_logger().error(f"configure failed: {err}")
            return TransitionCallbackReturn.FAILURE
        p = self.params
        self._errlog.period_s = p.error_log_period_s
        out_qos = make_qos(p.qos_output)
        self.cameras = []
        for cfg in p.cameras:
            cam = _Camera(cfg)
            cam.pub_instance = self.create_publisher(Image, cfg.output("instance_mask"), out_qos)
            cam.pub_dynamic = self.create_publisher(Image, cfg.output("dynamic_mask"), out_qos)
            cam.pub_objects = self.create_publisher(
                MovingObjectArray, cfg.output("objects"), out_qos
            )
            if p.publish_overlay:
                cam.pub_overlay = self.create_publisher(Image, cfg.output("overlay"), out_qos)
            if cfg.camera_info_topic:
                cam.pub_info = self.create_publisher(CameraInfo, cfg.output("camera_info"), out_qos)
            self.cameras.append(cam)
        self.geometry.configure(self.cameras, out_qos, p.geometry)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(p.diagnostics_period_s, self.publish_diagnostics)
        self.get_logger().info(
            f"configured: {p.runtime.variant} ({p.runtime.model_config}) on {p.runtime.device}, "
            f"motion decision {p.runtime.motion_decision}, "
            f"{len(self.cameras)} camera(s), input QoS {p.qos_input.profile}/"
            f"depth {p.qos_input.depth}, output QoS {p.qos_output.profile}/"
            f"depth {p.qos_output.depth}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Lifecycle activate (see `_on_activate`)."""
        return self._guard("activate", self._on_activate, state)

    def _on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the model (once, shared by all cameras), start inference, subscribe."""
        assert self.params is not None
        p = self.params
        settings = p.runtime
        if self._uses_random_weights(settings):
            self.get_logger().warning(
                "NO TRAINED WEIGHTS: running an untrained model (allow_random_weights=true); "
                "its masks and motion states are meaningless"
            )
        apply_threads(p)
        t0 = time.perf_counter()
        try:
            self.model = self._model_loader(settings)
            for cam in self.cameras:
                cam.stream = HeaderedStream(
                    build_segmenter(settings, model=self.model),
                    keep_frames=cam.pub_overlay is not None or self.geometry.needs_frames(cam),
                    max_pending=_MAX_PENDING_HEADERS,
                    max_input_pixels=p.max_input_pixels,
                    sensor_for=(
                        partial(self.geometry.sensor_frame, cam)
                        if settings.motion_decision == "depth_warp"
                        else None
                    ),
                )
        except Exception as err:  # missing weights, bad config: say so, stay configurable
            self.get_logger().error(f"activate failed: cannot load the model: {err}")
            self._free_model()
            return TransitionCallbackReturn.FAILURE
        op = getattr(self.model, "operating_point", None)
        self.get_logger().info(
            f"model loaded in {time.perf_counter() - t0:.1f} s"
            + (f"; operating point: {op.to_json()}" if op is not None else "")
        )
        if self.plan is not None:  # what runs: backend, precision, engine manifests
            for line in [f"running {self.plan.summary()}", *self.plan.manifest_lines()]:
                self.get_logger().info(line)
        self._stop.clear()
        self._worker = threading.Thread(target=self._inference_loop, name="gmos_infer", daemon=True)
        self._worker.start()
        in_qos = make_qos(p.qos_input)
        info_qos = make_qos(p.qos_camera_info)
        msg_type = CompressedImage if p.transport == "compressed" else Image
        for cam in self.cameras:
            cam.counters = CameraCounters(window=WindowStats(p.health.window_s))
            cam.last_input_wall = time.monotonic()
            cam.sub_image = self.create_subscription(
                msg_type, cam.cfg.image_topic, self._image_callback(cam), in_qos
            )
            if cam.cfg.camera_info_topic:
                cam.sub_info = self.create_subscription(
                    CameraInfo, cam.cfg.camera_info_topic, self._info_callback(cam), info_qos
                )
            self.get_logger().info(
                f"camera {cam.cfg.name or '(default)'}: {cam.cfg.image_topic} ({p.transport})"
                + (f" + {cam.cfg.camera_info_topic}" if cam.cfg.camera_info_topic else "")
                + f" -> {self.resolve_topic_name(cam.cfg.output('instance_mask'))}"
            )
        # Cameras without depth get up-to-scale states when the model runs the π³ heads
        # (geometry.pi3_heads: auto); the other cameras' segmenters skip the heads.
        heads = bool(getattr(self.model, "window_geometry", False))
        self.geometry.activate(self.cameras, in_qos, window_geometry=heads)
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Lifecycle deactivate (see `_on_deactivate`)."""
        return self._guard("deactivate", self._on_deactivate, state)

    def _on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe, finish the frames in flight (their results are published), free."""
        self._shutdown_inference(flush=True)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Lifecycle cleanup (see `_on_cleanup`)."""
        return self._guard("cleanup", self._on_cleanup, state)

    def _on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Destroy publishers and timers; back to unconfigured."""
        self._shutdown_inference(flush=False)
        self._destroy_publishers()
        self.params = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Lifecycle shutdown (see `_on_shutdown`)."""
        return self._guard("shutdown", self._on_shutdown, state)

    def _on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop everything without publishing."""
        self._shutdown_inference(flush=False)
        self._destroy_publishers()
        return TransitionCallbackReturn.SUCCESS

    def _guard(
        self, name: str, fn: Callable[[LifecycleState], TransitionCallbackReturn], state: Any
    ) -> TransitionCallbackReturn:
        # rclpy turns an exception in a transition callback into a silent ERROR transition
        # (the node ends up unconfigured with no log line): log it and fail cleanly instead.
        try:
            return fn(state)
        except Exception:
            self.get_logger().error(f"{name} failed:\n{traceback.format_exc()}")
            if name == "activate":
                self._shutdown_inference(flush=False)
            return TransitionCallbackReturn.FAILURE

    @property
    def active(self) -> bool:
        """Whether the model is loaded and frames are processed."""
        return self._active

    # ------------------------------------------------------------------ input side
    def _param_values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for spec in PARAMS:
            param = self.get_parameter_or(spec.name, Parameter(spec.name, value=None))
            out[spec.name] = param.value if param.type_ != Parameter.Type.NOT_SET else None
        return out

    def _resolve(self, topic: str) -> str:
        return self.resolve_topic_name(topic)

    def _image_callback(self, cam: _Camera) -> Callable[[Any], None]:
        def callback(msg: Any) -> None:
            self.enqueue(cam, msg)

        return callback

    @staticmethod
    def _info_callback(cam: _Camera) -> Callable[[CameraInfo], None]:
        # A plain function: rclpy inspects the callback's signature, which a bound builtin
        # such as deque.append does not have.
        def callback(msg: CameraInfo) -> None:
            cam.infos.append(msg)

        return callback

    def enqueue(self, cam: _Camera, msg: Any) -> bool:
        """Convert one input message and put it in the camera's slot (the subscription
        callback). Returns False when the message was rejected (counted and logged)."""
        codec_warnings: list[str] = []
        try:
            if isinstance(msg, CompressedImage):
                frame = compressed_to_rgb(msg, codec_warnings)
            else:
                frame = image_to_rgb(msg)
        except ConversionError as err:
            cam.counters.error(err.kind)
            self._errlog(f"{cam.cfg.image_topic}:{err.kind}", f"{cam.cfg.image_topic}: {err}")
            return False
        except Exception as err:  # anything else a malformed message can raise
            cam.counters.error("conversion")
            self._errlog(f"{cam.cfg.image_topic}:conversion", f"{cam.cfg.image_topic}: {err!r}")
            return False
        if codec_warnings:
            # libjpeg recovered (the frame is used) but the data was damaged: counted and
            # logged at the error log's rate instead of one stderr line per frame.
            cam.counters.error("decode_warning")
            self._errlog(
                f"{cam.cfg.image_topic}:decode_warning",
                f"{cam.cfg.image_topic}: {'; '.join(codec_warnings)}",
            )
        now = time.monotonic()
        with self._cond:
            dropped = cam.slot is not None
            cam.slot = _Slot(frame, msg.header, now)
            cam.last_input_wall = now
            cam.frame_id = str(msg.header.frame_id)
            cam.counters.received(dropped)
            self._cond.notify()
        return True

    # ------------------------------------------------------------------ inference thread
    def _inference_loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                work = [(c, c.slot) for c in self.cameras if c.slot is not None]
                if not work:
                    self._cond.wait(timeout=0.1)
                    work = [(c, c.slot) for c in self.cameras if c.slot is not None]
                for c, _ in work:
                    c.slot = None
                    with c.counters.lock:
                        c.counters.frames_taken += 1
            if self._stop.is_set():
                break
            for cam, slot in work:
                assert slot is not None
                try:
                    self._process(cam, slot)
                except Exception as err:  # never let the inference thread die
                    cam.counters.error("internal")
                    self._errlog("internal", f"processing failed: {err!r}")
            # Read on every pass: idle_flush_s is applied live.
            idle = self.params.idle_flush_s if self.params else 0.0
            if idle > 0:
                now = time.monotonic()
                for cam in self.cameras:
                    s = cam.stream
                    if s is not None and s.pending and now - cam.last_input_wall > idle:
                        self._publish(cam, s.flush())

    def _process(self, cam: _Camera, slot: _Slot) -> None:
        stream = cam.stream
        if stream is None:
            return
        try:
            results = stream.step(slot.frame, slot.header)
        except StreamError as err:
            kind = err.kind  # "duplicate_stamp" or "bad_frame" (gmos_core.streaming.StreamError)
            cam.counters.error(kind)
            self._errlog(f"{cam.cfg.image_topic}:{kind}", f"{cam.cfg.image_topic}: {err}")
            return
        except Exception as err:  # a model failure must not kill the thread
            cam.counters.error("inference")
            self._errlog(f"{cam.cfg.image_topic}:inference", f"inference failed: {err!r}")
            return
        resets = stream.segmenter.stats.resets
        if resets != cam.resets_seen:
            with cam.counters.lock:
                cam.counters.stream_resets += resets - cam.resets_seen
            cam.resets_seen = resets
            self.get_logger().warning(
                f"{cam.cfg.image_topic}: stamp went backwards or resolution changed: "
                "stream state reset",
                throttle_duration_sec=5.0,
            )
        self._publish(cam, results)

    def _publish(self, cam: _Camera, results: list[StampedResult]) -> None:
        assert self.params is not None
        for item in results:
            # Arrays first, computed once: the masks are encoded once (in the SLAM encoding),
            # the 3-D states are measured on them and the overlay is drawn from them.
            masks = result_masks(item.result, self.params.max_objects)
            objs = objects_msg(item.result, item.header, self.params.max_objects)
            inst, dyn = self.geometry.mask_images(masks, item.header)
            extra = self.geometry.process(cam, item, masks, objs)  # fills objs' 3-D fields
            outs: list[tuple[Publisher | None, Any]] = [
                (cam.pub_instance, inst),
                (cam.pub_dynamic, dyn),
                (cam.pub_objects, objs),
                *extra,
            ]
            if cam.pub_info is not None:
                info = self._matching_info(cam, stamp_to_ns(item.header))
                if info is not None:
                    outs.append((cam.pub_info, restamp_camera_info(info, item.header)))
            ov = cam.pub_overlay if self.params.publish_overlay else None  # live parameter
            if ov is not None and item.frame is not None and ov.get_subscription_count() > 0:
                drawn = overlay_instances(item.frame, masks.ids, set(masks.moving_ids))
                outs.append((ov, make_image(drawn, "rgb8", item.header)))
            for pub, msg in outs:
                if pub is None:
                    continue
                try:
                    pub.publish(msg)
                except RCLError as err:
                    cam.counters.error("publish")
                    self._errlog(f"{pub.topic_name}:publish", f"publish failed: {err}")
            latency_ms = (self.get_clock().now().nanoseconds - stamp_to_ns(item.header)) / 1e6
            cam.counters.processed(latency_ms)

    @staticmethod
    def _matching_info(cam: _Camera, stamp_ns: int) -> CameraInfo | None:
        infos = list(cam.infos)
        for info in reversed(infos):
            if stamp_to_ns(info.header) == stamp_ns:
                return info
        # No exact match (driver publishes info at another rate): the latest one, re-stamped.
        return infos[-1] if infos else None

    # ------------------------------------------------------------------ parameters
    def _check_parameters(self, changed: list[Parameter]) -> SetParametersResult:
        """Refuse a set that would make the parameters invalid, with the reason (ranges
        and read-only flags are enforced by rclpy from the descriptors before this)."""
        values = self._param_values()
        known = set(values)
        if not any(param.name in known for param in changed):
            # Not one of the table's (e.g. use_sim_time): nothing here depends on it, and an
            # invalid override already in the table is refused at configure, not by this set.
            return SetParametersResult(successful=True)
        for param in changed:
            if param.name in known:
                values[param.name] = None if param.type_ == Parameter.Type.NOT_SET else param.value
        try:
            params_from_values(values)
        except ValueError as err:
            return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    def _apply_live_parameters(self, changed: list[Parameter]) -> None:
        """Apply the live parameters (`ParamSpec.live`) to a configured node at once."""
        if self.params is None:
            return  # read at the next configure
        new = params_from_values(self._param_values())
        old = self.params
        runtime = replace(
            old.runtime, fg_threshold=new.runtime.fg_threshold, propagator=new.runtime.propagator
        )
        self.params = replace(
            old,
            runtime=runtime,
            publish_overlay=new.publish_overlay,
            idle_flush_s=new.idle_flush_s,
            diagnostics_period_s=new.diagnostics_period_s,
            error_log_period_s=new.error_log_period_s,
            health=new.health,
        )
        self._errlog.period_s = new.error_log_period_s
        for cam in self.cameras:
            if cam.stream is not None:
                self._apply_thresholds(cam.stream.segmenter, runtime)
            cam.counters.window.window_s = new.health.window_s
            if new.publish_overlay and cam.pub_overlay is None:
                cam.pub_overlay = self.create_publisher(
                    Image, cam.cfg.output("overlay"), make_qos(old.qos_output)
                )
            if cam.stream is not None:
                # Frames are kept for the overlay only while it is drawn, and always for a
                # camera whose depth odometry needs them.
                cam.stream.keep_frames = (
                    cam.pub_overlay is not None and new.publish_overlay
                ) or self.geometry.needs_frames(cam)
        if new.diagnostics_period_s != old.diagnostics_period_s and self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self.create_timer(new.diagnostics_period_s, self.publish_diagnostics)
        names = ", ".join(f"{p.name}={p.value!r}" for p in changed)
        self.get_logger().info(f"parameters applied live: {names}")

    def _apply_thresholds(self, segmenter: Any, runtime: RuntimeSettings) -> None:
        """Decision thresholds into a running segmenter, resolved as `build_segmenter` does
        (explicit parameters over the model's operating point); used from the next frame."""
        op = getattr(self.model, "operating_point", None) or OperatingPoint()
        if segmenter.mode == "gmos_s":
            fg = runtime.fg_threshold
            segmenter.fg_threshold = op.fg_threshold if fg is None else fg
        elif segmenter.tracking is not None:
            cfg = segmenter.tracking.config  # the propagator holds this same object
            for key, value in {**op.propagator_overrides(), **runtime.propagator}.items():
                if key in _LIVE_PROPAGATOR_KEYS:
                    setattr(cfg, key, float(value))

    # ------------------------------------------------------------------ diagnostics
    def publish_diagnostics(self) -> None:
        """Publish one DiagnosticArray (one status per camera)."""
        if self._diag_pub is None:
            return
        statuses = []
        health = self.params.health if self.params is not None else HealthThresholds()
        for cam in self.cameras:
            extra: dict[str, float] = {}
            stream = cam.stream
            if stream is not None:
                extra["buffered_frames"] = float(stream.segmenter.buffered)
                extra["pending_results"] = float(stream.pending)
                if stream.unmatched:
                    extra["errors.unmatched_header"] = float(stream.unmatched)
            # diagnostic_updater's naming: "<node name>: <task>", hardware_id = the device.
            name = f"{self.get_name()}: {cam.cfg.name or cam.cfg.image_topic}"
            hardware_id = cam.frame_id or cam.cfg.image_topic
            statuses.append(
                camera_status(name, hardware_id, cam.counters, health, self._active, extra)
            )
        msg = build_diagnostics(self.get_clock().now().to_msg(), statuses)
        try:
            self._diag_pub.publish(msg)
        except RCLError as err:
            self._errlog("diagnostics:publish", f"diagnostics publish failed: {err}")

    # ------------------------------------------------------------------ teardown
    def _shutdown_inference(self, flush: bool) -> None:
        self.geometry.deactivate()
        for cam in self.cameras:
            for sub in (cam.sub_image, cam.sub_info):
                if sub is not None:
                    self.destroy_subscription(sub)
            cam.sub_image = cam.sub_info = None
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        for cam in self.cameras:
            if cam.slot is not None and flush and cam.stream is not None:
                # The last frame received is still worth its result.
                self._process(cam, cam.slot)
            cam.slot = None
            if flush and cam.stream is not None:
                try:
                    self._publish(cam, cam.stream.flush())
                except Exception as err:
                    cam.counters.error("inference")
                    self._errlog("flush", f"flush failed: {err!r}")
        self._free_model()
        self._active = False

    def _free_model(self) -> None:
        for cam in self.cameras:
            cam.stream = None
            cam.resets_seen = 0
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _destroy_publishers(self) -> None:
        for cam in self.cameras:
            for pub in (
                cam.pub_instance,
                cam.pub_dynamic,
                cam.pub_objects,
                cam.pub_overlay,
                cam.pub_info,
            ):
                if pub is not None:
                    self.destroy_publisher(pub)
        self.geometry.cleanup()
        self.cameras = []
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None

    @staticmethod
    def _uses_random_weights(s: RuntimeSettings) -> bool:
        official = s.pi3_checkpoint or s.sam2_checkpoint or s.head_checkpoint
        return bool(
            s.allow_random_weights
            and not s.bundle
            and not official
            and s.variant in DEFAULT_BUNDLES  # the baselines have no weights
            and not DEFAULT_BUNDLES[s.variant].is_file()
        )


def autostart(node: GmosNode) -> bool:
    """Configure and activate `node` if its `autostart` parameter is true; True if active."""
    if not node.get_parameter("autostart").value:
        node.get_logger().info("autostart=false: waiting for lifecycle transitions")
        return False
    node.trigger_configure()
    if node.params is None:
        return False
    node.trigger_activate()
    return node.active


def main(args: list[str] | None = None) -> int:
    """Entry point of `gmos_node` (`python -m gmos_ros.node --ros-args ...`)."""
    if hasattr(signal, "SIGUSR1"):
        # `kill -USR1 <pid>` prints every thread's stack: what a stuck node is doing.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    rclpy.init(args=sys.argv if args is None else args)
    node = GmosNode()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        autostart(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node._shutdown_inference(flush=False)
        executor.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
