"""The node's 3-D and SLAM-facing outputs: object positions/velocities, ego-motion, markers.

One :class:`GeometryOutputs` per node, one :class:`CameraGeometry` per camera. The node calls it at
five points (declare, configure, activate, each published result, teardown); everything else
lives here so the node's own code stays about frames and masks.

Per camera, optionally:
- an aligned depth topic (``geometry.depth_topics``, one entry per camera, ``""`` = none):
  ``16UC1`` (mm) or ``32FC1`` (m), paired with a result by **equal stamp** (within
  ``geometry.depth_stamp_tolerance_s``, default 0). With depth + ``camera_info`` the objects get
  metric positions, extents and ego-motion-compensated velocities (the ego-motion from
  :class:`~gmos_core.geometry.visual_odometry.DepthVisualOdometry` on the non-moving pixels).
  A result with no depth of its stamp gets no 3-D state (``has_position`` false) and counts
  ``errors.depth_unmatched``: never a wrong pairing. The π³ heads are not run for such a camera.
- without a depth topic, when the model runs the π³ geometry heads (a π³ whose heads were loaded:
  official checkpoints, bundles saved with heads) and ``geometry.pi3_heads`` is ``auto`` (the
  default; ``off`` never runs them): **up-to-scale** states (``metric`` false) from
  the π³ point map of each result's window and ego-motion from its camera head
  (:class:`~gmos_core.geometry.window_states.Pi3ObjectStates`: units of the current window's
  point map, consecutive windows chained by a depth ratio). Without heads, or with ``off``: no
  3-D state (``has_position`` false), logged once at activation.
- outputs ``~/ego_motion`` (gmos_msgs/EgoMotion) and ``~/markers`` (visualization_msgs/MarkerArray:
  a box per object, its id, a velocity arrow; built only while someone subscribes), for cameras
  with depth or with the π³ heads run.

The parameters (``geometry.*``, ``slam.*``) are in the node's table (`gmos_ros.params.PARAMS`),
validated into :class:`~gmos_ros.params.GeometrySettings`.

The metric path from the depth and camera_info messages (`depth_states_from_messages`, over
:class:`~gmos_core.geometry.depth_states.DepthObjectStates`) is also what ``gmos-bag eval
--depth-topic`` runs, so a bag evaluated offline gets the node's 3-D states.

With ``motion_decision: depth_warp`` the frame being stepped needs its depth (and pose) at once,
but separate topics arrive in no set order: the inference thread waits for them up to
``geometry.sensor_wait_s`` (default 0.1 s), and stops waiting as soon as a newer depth (pose)
shows that the frame's own will not come; a frame still without one is counted
(``errors.warp_depth_missing`` / ``warp_pose_missing``) and carried by the tracker.

Bad input is counted, never fatal: ``errors.depth_invalid`` (unknown encoding, wrong size,
truncated data), ``errors.camera_info_missing`` (depth but no intrinsics yet).

SLAM parameters (they change the existing mask outputs):
- ``slam.dynamic_mask_dilation_px``: grow ``~/dynamic_mask`` by this many pixels (DynaSLAM-style
  consumers drop features near object borders; DynaSLAM uses 15). nvblox takes the mono8 mask as is
  (0 = no dilation, the default).
- ``slam.instance_mask_encoding``: ``mono16`` (default) or ``32SC1`` (DynOSAM-style consumers read
  a ``CV_32SC1`` instance image); ids are the node's persistent object ids either way.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import PoseStamped
from gmos_msgs.msg import EgoMotion as EgoMotionMsg
from gmos_msgs.msg import MovingObjectArray
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image
from visualization_msgs.msg import Marker, MarkerArray

from gmos_core.geometry import (
    DepthError,
    EgoMotion,
    ObjectState,
    Pi3ObjectStates,
    PinholeIntrinsics,
    decode_depth,
    dilate_mask,
    encode_instance_mask,
)
from gmos_core.geometry.depth_states import DepthObjectStates, DepthStatesUpdate
from gmos_core.geometry.warp_decision import DepthOdometryPoses, SensorFrame
from gmos_ros.messages import ResultMasks, copy_header, make_image, stamp_to_ns
from gmos_ros.params import GeometrySettings

__all__ = [
    "CameraGeometry",
    "GeometryOutputs",
    "depth_image_to_array",
    "depth_states_from_messages",
    "ego_motion_msg",
    "fill_object_states",
    "markers_msg",
]

_DEPTH_KEEP = (
    32  # depth images kept per camera for stamp pairing (results come ~half a window late)
)


def depth_image_to_array(msg: Any) -> tuple[np.ndarray, str]:
    """sensor_msgs/Image (16UC1 / mono16 / 32FC1) → ((H, W) array of the encoding's dtype, encoding).

    Raises:
        DepthError: unknown encoding, or data inconsistent with height/width/step.
    """
    enc = str(msg.encoding)
    dtypes = {"16UC1": np.uint16, "mono16": np.uint16, "32FC1": np.float32}
    if enc not in dtypes:
        raise DepthError(f"depth encoding {enc!r} is not supported (16UC1, mono16 or 32FC1)")
    dt = np.dtype(dtypes[enc]).newbyteorder(">" if msg.is_bigendian else "<")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0 or step < w * dt.itemsize:
        raise DepthError(f"depth image {w}x{h} with step {step} is malformed")
    raw = np.frombuffer(bytes(msg.data), np.uint8)
    if raw.size < h * step:
        raise DepthError(f"depth data has {raw.size} bytes, {h * step} expected")
    rows = raw[: h * step].reshape(h, step)[:, : w * dt.itemsize]
    return np.ascontiguousarray(rows).view(dt).reshape(h, w).astype(dtypes[enc]), enc


@dataclass
class CameraGeometry:
    """One camera's depth buffer, state estimator, odometry and publishers."""

    depth_topic: str
    depths: deque[tuple[int, Any]] = field(default_factory=lambda: deque(maxlen=_DEPTH_KEEP))
    # The camera's pose topic (geometry_msgs/PoseStamped, "" = none) and its recent messages.
    pose_topic: str = ""
    pose_msgs: deque[tuple[int, Any]] = field(default_factory=lambda: deque(maxlen=_DEPTH_KEEP))
    sub_pose: Any = None
    depth_states: DepthObjectStates = field(default_factory=DepthObjectStates)
    # Up-to-scale states from the π³ heads (no depth topic, a model with loaded heads).
    pi3: Pi3ObjectStates | None = None
    pub_ego: Any = None
    pub_markers: Any = None
    sub_depth: Any = None
    last_stamp_ns: int | None = None
    # Camera poses of the input frames for the depth_warp motion decision (depth odometry).
    poses: DepthOdometryPoses = field(default_factory=DepthOdometryPoses)
    # Notified whenever a depth or pose message is buffered (`wait_for_sensor`).
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def add_depth(self, stamp_ns: int, msg: Any) -> None:
        """Buffer a depth message (the subscription's callback) and wake any waiter."""
        with self.arrived:
            self.depths.append((stamp_ns, msg))
            self.arrived.notify_all()

    def add_pose(self, stamp_ns: int, msg: Any) -> None:
        """Buffer a pose message (the subscription's callback) and wake any waiter."""
        with self.arrived:
            self.pose_msgs.append((stamp_ns, msg))
            self.arrived.notify_all()

    def wait_for_sensor(self, stamp_ns: int, tolerance_ns: int, timeout_s: float) -> bool:
        """Wait up to `timeout_s` until the depth of `stamp_ns` (and, with a pose topic, its
        pose) is buffered or known not to come (a newer message of that topic is there: topics
        arrive in stamp order). Returns whether that was settled in time."""

        def settled() -> bool:
            return _settled(self.depths, stamp_ns, tolerance_ns) and (
                not self.pose_topic or _settled(self.pose_msgs, stamp_ns, tolerance_ns)
            )

        with self.arrived:
            return self.arrived.wait_for(settled, timeout=max(timeout_s, 0.0))

    def depth_for(self, stamp_ns: int, tolerance_ns: int) -> Any | None:
        """The buffered depth message closest to ``stamp_ns`` within the tolerance, or None."""
        return _closest(self.depths, stamp_ns, tolerance_ns)

    def pose_for(self, stamp_ns: int, tolerance_ns: int) -> Any | None:
        """The buffered pose message closest to ``stamp_ns`` within the tolerance, or None."""
        return _closest(self.pose_msgs, stamp_ns, tolerance_ns)


def _settled(buffer: deque[tuple[int, Any]], stamp_ns: int, tolerance_ns: int) -> bool:
    """Whether `buffer` holds a message within the tolerance of `stamp_ns`, or a newer one
    (so the one of `stamp_ns` will not come any more)."""
    return any(s >= stamp_ns - tolerance_ns for s, _ in list(buffer))


def _closest(buffer: deque[tuple[int, Any]], stamp_ns: int, tolerance_ns: int) -> Any | None:
    """The message of (stamp, message) `buffer` closest to `stamp_ns` within the tolerance."""
    best, best_d = None, tolerance_ns + 1
    for s, msg in list(buffer):  # a copy: the subscription callback appends concurrently
        d = abs(s - stamp_ns)
        if d < best_d:
            best, best_d = msg, d
    return best


class GeometryOutputs:
    """Geometry side of :class:`~gmos_ros.node.GmosNode` (see the module docstring)."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.settings = GeometrySettings()
        self.cams: dict[int, CameraGeometry] = {}
        self._out_qos: Any = None

    # ---- lifecycle -------------------------------------------------------------------------------
    def configure(self, cameras: list[Any], out_qos: Any, settings: GeometrySettings) -> None:
        """Take the validated settings (`NodeParams.geometry`), create ~/ego_motion and
        ~/markers for the cameras with a depth topic."""
        self.settings = s = settings
        self._out_qos = out_qos
        self.cams = {}
        for i, cam in enumerate(cameras):
            topic = s.depth_topics[i] if i < len(s.depth_topics) else ""
            g = CameraGeometry(
                topic,
                depth_states=DepthObjectStates(s.min_points, s.velocity_window_s),
                pose_topic=s.pose_topics[i] if i < len(s.pose_topics) else "",
            )
            if topic:
                g.pub_ego = self.node.create_publisher(
                    EgoMotionMsg, cam.cfg.output("ego_motion"), out_qos
                )
                g.pub_markers = self.node.create_publisher(
                    MarkerArray, cam.cfg.output("markers"), out_qos
                )
            self.cams[id(cam)] = g

    def needs_frames(self, cam: Any) -> bool:
        """Whether results must keep their RGB frame (the odometry needs it)."""
        g = self.cams.get(id(cam))
        return bool(g and g.depth_topic)

    def activate(self, cameras: list[Any], in_qos: Any, window_geometry: bool = False) -> None:
        """Subscribe to the depth topics; set up the up-to-scale path of the other cameras.

        Args:
            cameras: the node's cameras (their streams are built).
            in_qos: QoS of the depth subscriptions.
            window_geometry: the loaded model runs the π³ heads (`BackendFrameModel.
                window_geometry`). With ``geometry.pi3_heads: auto`` the cameras without depth
                get up-to-scale states from them; every other camera's segmenter skips the
                heads (a camera with depth is metric without them; ``off`` never runs them).
        """
        s = self.settings
        run_heads = window_geometry and s.pi3_heads == "auto"
        without = []
        for cam in cameras:
            g = self.cams.get(id(cam))
            if g is None:
                continue
            g.depth_states.reset()
            g.poses.reset()
            g.pi3 = None
            g.last_stamp_ns = None
            seg = cam.stream.segmenter if cam.stream is not None else None
            heads_here = run_heads and not g.depth_topic
            if seg is not None and seg.window_geometry and not heads_here:
                seg.window_geometry = False  # the heads are not run: they cost nothing here
            if g.depth_topic:
                g.depths.clear()

                def callback(msg: Image, g: CameraGeometry = g) -> None:
                    g.add_depth(stamp_to_ns(msg.header), msg)

                g.sub_depth = self.node.create_subscription(Image, g.depth_topic, callback, in_qos)
                if g.pose_topic:  # the depth_warp decision's camera poses
                    g.pose_msgs.clear()

                    def on_pose(msg: PoseStamped, g: CameraGeometry = g) -> None:
                        g.add_pose(stamp_to_ns(msg.header), msg)

                    g.sub_pose = self.node.create_subscription(
                        PoseStamped, g.pose_topic, on_pose, in_qos
                    )
            elif heads_here:
                g.pi3 = Pi3ObjectStates(
                    min_points=s.min_points, velocity_window_s=s.velocity_window_s
                )
                if g.pub_ego is None:
                    g.pub_ego = self.node.create_publisher(
                        EgoMotionMsg, cam.cfg.output("ego_motion"), self._out_qos
                    )
                if g.pub_markers is None:
                    g.pub_markers = self.node.create_publisher(
                        MarkerArray, cam.cfg.output("markers"), self._out_qos
                    )
            else:
                without.append(cam.cfg.name or cam.cfg.image_topic)
        if without:
            why = (
                "geometry.pi3_heads is off (the model's π³ heads are not run)"
                if window_geometry
                else "the model has no π³ geometry heads (official π³ checkpoints and bundles "
                "saved with heads have them)"
            )
            self.node.get_logger().info(
                f"no 3-D object states for {', '.join(without)}: no depth topic "
                f"(geometry.depth_topics) and {why}; has_position stays false"
            )

    def deactivate(self) -> None:
        for g in self.cams.values():
            for sub in (g.sub_depth, g.sub_pose):
                if sub is not None:
                    self.node.destroy_subscription(sub)
            g.sub_depth = g.sub_pose = None

    def cleanup(self) -> None:
        self.deactivate()
        for g in self.cams.values():
            for pub in (g.pub_ego, g.pub_markers):
                if pub is not None:
                    self.node.destroy_publisher(pub)
        self.cams = {}

    # ---- per result ------------------------------------------------------------------------------
    def mask_images(self, masks: ResultMasks, header: Any) -> tuple[Image, Image]:
        """``~/instance_mask`` and ``~/dynamic_mask`` of a result, encoded once per the SLAM
        parameters (instance encoding, dynamic-mask dilation) from the node's arrays."""
        s = self.settings
        if s.instance_encoding == "32SC1":
            inst = _int32_image(encode_instance_mask(masks.ids, "32SC1"), header)
        else:
            inst = make_image(masks.ids, "mono16", header)
        dynamic = masks.dynamic
        if s.dilation_px > 0:
            dynamic = dilate_mask(dynamic, s.dilation_px)
        return inst, make_image(dynamic, "mono8", header)

    def process(
        self, cam: Any, item: Any, masks: ResultMasks, objs: MovingObjectArray
    ) -> list[tuple[Any, Any]]:
        """Fill ``objs``' 3-D fields from the result's masks (the arrays the node encodes).

        Args:
            cam: the node's camera.
            item: the `StampedResult` (header, RGB frame when kept).
            masks: `result_masks` of the result (``ids`` (H, W) uint16, capped like ``objs``).
            objs: the result's objects message, filled in place.

        Returns:
            extra (publisher, message) pairs (ego-motion, markers).
        """
        g = self.cams.get(id(cam))
        if g is None:
            return []
        if g.depth_topic:
            return self._process_depth(cam, g, item, masks, objs)
        if g.pi3 is not None:
            return self._process_pi3(g, item, masks, objs)
        return []

    def _process_pi3(
        self, g: CameraGeometry, item: Any, masks: ResultMasks, objs: MovingObjectArray
    ) -> list[tuple[Any, Any]]:
        """Up-to-scale states from the result's π³ window (no state where the decoder did
        not run, e.g. between proposer strides)."""
        assert g.pi3 is not None
        geom = item.result.geometry
        if geom is None:
            return []
        stamp = stamp_to_ns(item.header)
        up = g.pi3.update(stamp, geom, masks.ids, [int(o.id) for o in objs.objects])
        prev_stamp = g.last_stamp_ns
        g.last_stamp_ns = stamp
        fill_object_states(objs, up.states)
        return self._extras(g, objs, up.ego, item.header, prev_stamp)

    def _extras(
        self,
        g: CameraGeometry,
        objs: MovingObjectArray,
        ego: EgoMotion | None,
        header: Any,
        prev_stamp: int | None,
    ) -> list[tuple[Any, Any]]:
        """The ego-motion message (when known) and the markers (while subscribed)."""
        extra: list[tuple[Any, Any]] = []
        if ego is not None and prev_stamp is not None and g.pub_ego is not None:
            extra.append((g.pub_ego, ego_motion_msg(ego, header, prev_stamp)))
        pm = g.pub_markers
        if pm is not None and pm.get_subscription_count() > 0:
            extra.append((pm, markers_msg(objs)))
        return extra

    def sensor_frame(
        self, cam: Any, frame: np.ndarray, in_hw: tuple[int, int], stamp_ns: int
    ) -> SensorFrame | None:
        """The depth and camera pose of an input frame for the depth_warp motion decision.

        Args:
            cam: the node's camera.
            frame: (h, w, 3) the frame as the segmenter sees it (maybe downscaled).
            in_hw: the input frame's (H, W): the depth image must have it.
            stamp_ns: the frame's stamp.

        Returns:
            None (counted: ``warp_depth_missing``, ``warp_pose_missing``,
            ``camera_info_missing``, ``depth_invalid``) when the depth (or, with a pose topic,
            the camera pose) of that stamp has not arrived or cannot be used: the segmenter
            then carries the objects on that frame.
        """
        g = self.cams.get(id(cam))
        if g is None or not g.depth_topic:
            return None
        tolerance = self.settings.depth_stamp_tolerance_ns
        # The image may have come before its depth / pose: wait for them (bounded).
        g.wait_for_sensor(stamp_ns, tolerance, self.settings.sensor_wait_s)
        msg = g.depth_for(stamp_ns, tolerance)
        if msg is None:
            cam.counters.error("warp_depth_missing")
            return None
        info = self.node._matching_info(cam, stamp_ns)
        if info is None:
            cam.counters.error("camera_info_missing")
            return None
        pose = None
        if g.pose_topic:
            pose = g.pose_for(stamp_ns, tolerance)
            if pose is None:
                cam.counters.error("warp_pose_missing")
                return None
        try:
            return sensor_frame_from_messages(g.poses, frame, in_hw, stamp_ns, msg, info, pose)
        except (DepthError, ValueError) as err:
            cam.counters.error("depth_invalid")
            self.node._errlog(f"{g.depth_topic}:depth", f"{g.depth_topic}: {err}")
            return None

    def _process_depth(
        self, cam: Any, g: CameraGeometry, item: Any, masks: ResultMasks, objs: MovingObjectArray
    ) -> list[tuple[Any, Any]]:
        """Metric states from the aligned depth image of the result's stamp."""
        s = self.settings
        stamp = stamp_to_ns(item.header)
        depth_msg = g.depth_for(stamp, s.depth_stamp_tolerance_ns)
        if depth_msg is None:
            cam.counters.error("depth_unmatched")
            return []
        info = self.node._matching_info(cam, stamp)
        if info is None:
            cam.counters.error("camera_info_missing")
            return []
        try:
            up = depth_states_from_messages(
                g.depth_states,
                stamp,
                depth_msg,
                info,
                masks,
                [o.id for o in objs.objects],
                item.frame,
            )
        except (DepthError, ValueError) as err:
            cam.counters.error("depth_invalid")
            self.node._errlog(f"{g.depth_topic}:depth", f"{g.depth_topic}: {err}")
            return []
        prev_stamp = g.last_stamp_ns
        g.last_stamp_ns = stamp
        fill_object_states(objs, up.states)
        return self._extras(g, objs, up.ego, item.header, prev_stamp)


def depth_states_from_messages(
    states: DepthObjectStates,
    stamp_ns: int,
    depth_msg: Any,
    info: CameraInfo,
    masks: ResultMasks,
    object_ids: list[int],
    frame_rgb: np.ndarray | None,
) -> DepthStatesUpdate:
    """Metric states of one result from its depth image and camera_info messages (the node's
    and ``gmos-bag eval``'s one path).

    Raises:
        DepthError: unknown encoding, malformed data, or a depth image of another size.
        ValueError: camera_info with no size.
    """
    raw, enc = depth_image_to_array(depth_msg)
    depth = decode_depth(raw, enc, expected_hw=masks.ids.shape)
    intr = _intrinsics(info, masks.ids.shape)
    return states.update(stamp_ns, depth, intr, masks.ids, object_ids, masks.dynamic > 0, frame_rgb)


def pose_to_matrix(msg: Any) -> np.ndarray:
    """geometry_msgs/Pose (or PoseStamped) → (4, 4) float64 transform (frame → parent).

    Raises:
        ValueError: a quaternion of zero or non-finite length.
    """
    pose = getattr(msg, "pose", msg)
    q = np.array([pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w])
    n = float(np.linalg.norm(q))
    if not np.isfinite(n) or n < 1e-9:
        raise ValueError(f"pose orientation {q.tolist()} is not a rotation quaternion")
    t = np.eye(4)
    t[:3, :3] = Rotation.from_quat(q / n).as_matrix()
    t[:3, 3] = (pose.position.x, pose.position.y, pose.position.z)
    if not np.isfinite(t).all():
        raise ValueError("pose position is not finite")
    return t


def matrix_to_pose(t: np.ndarray, header: Any) -> PoseStamped:
    """(4, 4) transform → geometry_msgs/PoseStamped with `header` (copied)."""
    msg = PoseStamped()
    msg.header = copy_header(header)
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in t[:3, 3])
    x, y, z, w = Rotation.from_matrix(np.asarray(t)[:3, :3]).as_quat()
    msg.pose.orientation.x, msg.pose.orientation.y = float(x), float(y)
    msg.pose.orientation.z, msg.pose.orientation.w = float(z), float(w)
    return msg


def sensor_frame_from_messages(
    poses: DepthOdometryPoses,
    frame: np.ndarray,
    in_hw: tuple[int, int],
    stamp_ns: int,
    depth_msg: Any,
    info: CameraInfo,
    pose_msg: Any = None,
) -> SensorFrame | None:
    """The depth_warp decision's `SensorFrame` of one input frame from its depth image,
    camera_info and (optionally) camera pose messages (the node's and ``gmos-bag eval``'s one
    path): the depth decoded at the input size, brought to the size the segmenter sees
    (nearest: depths are never mixed across an edge); the camera pose from `pose_msg` (a
    geometry_msgs/PoseStamped of the camera's optical frame in a fixed frame: odometry), else
    from the camera's depth odometry chain `poses`.

    Raises:
        DepthError: unknown encoding, malformed data, or a depth image of another size.
        ValueError: camera_info with no size.
    """
    raw, enc = depth_image_to_array(depth_msg)
    depth = decode_depth(raw, enc, expected_hw=in_hw)
    h, w = frame.shape[:2]
    intr = _intrinsics(info, (h, w))
    if depth.shape != (h, w):
        depth = cv2.resize(depth, (w, h), interpolation=cv2.INTER_NEAREST)
    if pose_msg is not None:
        return SensorFrame(depth, pose_to_matrix(pose_msg), intr)
    return poses.step(frame, depth, intr, stamp_ns)


def fill_object_states(objs: MovingObjectArray, states: list[ObjectState]) -> None:
    """Write the 3-D fields of the listed objects that have a state (the others keep
    has_position / has_velocity false)."""
    by_id = {st.object_id: st for st in states}
    for o in objs.objects:
        st = by_id.get(int(o.id))
        if st is None:
            continue
        o.has_position = True
        o.metric = st.metric
        o.position.x, o.position.y, o.position.z = (float(v) for v in st.position)
        o.extent.x, o.extent.y, o.extent.z = (float(v) for v in st.extent)
        o.has_velocity = bool(st.velocity_valid)
        o.velocity.x, o.velocity.y, o.velocity.z = (float(v) for v in st.velocity)


def _intrinsics(info: CameraInfo, hw: tuple[int, int]) -> PinholeIntrinsics:
    """Intrinsics for the mask size; camera_info of another size is rescaled (no crop assumed)."""
    w, h = int(info.width), int(info.height)
    if w <= 0 or h <= 0:
        raise ValueError(f"camera_info has size {w}x{h}")
    intr = PinholeIntrinsics.from_matrix(np.asarray(info.k, dtype=np.float64), w, h)
    return intr if (h, w) == tuple(hw) else intr.resized(hw[1], hw[0])


def _int32_image(arr: np.ndarray, header: Any) -> Image:
    msg = Image()
    msg.header = copy_header(header)
    a = np.ascontiguousarray(arr, dtype="<i4")
    msg.height, msg.width = int(a.shape[0]), int(a.shape[1])
    msg.encoding = "32SC1"
    msg.is_bigendian = 0
    msg.step = msg.width * 4
    msg.data = a.tobytes()
    return msg


def ego_motion_msg(ego: EgoMotion, header: Any, prev_stamp_ns: int) -> EgoMotionMsg:
    msg = EgoMotionMsg()
    msg.header = copy_header(header)
    msg.previous_stamp.sec, msg.previous_stamp.nanosec = divmod(int(prev_stamp_ns), 1_000_000_000)
    t = ego.prev_from_curr
    tr = msg.prev_from_curr.translation
    tr.x, tr.y, tr.z = (float(v) for v in t[:3, 3])
    q = Rotation.from_matrix(t[:3, :3]).as_quat()  # x, y, z, w
    rot = msg.prev_from_curr.rotation
    rot.x, rot.y, rot.z, rot.w = (float(v) for v in q)
    lin, ang = ego.camera_linear_velocity(), ego.camera_angular_velocity()
    msg.velocity.linear.x, msg.velocity.linear.y, msg.velocity.linear.z = (float(v) for v in lin)
    msg.velocity.angular.x, msg.velocity.angular.y, msg.velocity.angular.z = (float(v) for v in ang)
    msg.metric = bool(ego.metric)
    msg.source = ego.source
    return msg


def markers_msg(objs: MovingObjectArray) -> MarkerArray:
    """A box, a text id and a velocity arrow (1 s of motion) per object with a 3-D position.

    The first marker is a DELETEALL so that objects that disappeared do not linger in RViz.
    """
    out = MarkerArray()
    clear = Marker()
    clear.header = copy_header(objs.header)
    clear.action = Marker.DELETEALL
    out.markers.append(clear)
    for o in objs.objects:
        if not o.has_position:
            continue
        r, gr, b = (1.0, 0.2, 0.1) if o.moving else (0.2, 0.6, 1.0)
        base = dict(ns="gmos", header=copy_header(objs.header), lifetime=Duration(sec=1))
        box = Marker(id=3 * int(o.id), type=Marker.CUBE, action=Marker.ADD, **base)
        box.pose.position = o.position
        box.pose.orientation.w = 1.0
        box.scale.x, box.scale.y, box.scale.z = (
            max(v, 0.01) for v in (o.extent.x, o.extent.y, o.extent.z)
        )
        box.color.r, box.color.g, box.color.b, box.color.a = r, gr, b, 0.4
        text = Marker(id=3 * int(o.id) + 1, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, **base)
        text.pose.position.x, text.pose.position.y = o.position.x, o.position.y - o.extent.y / 2
        text.pose.position.z = o.position.z
        text.pose.orientation.w = 1.0
        text.scale.z = 0.3
        text.color.r = text.color.g = text.color.b = text.color.a = 1.0
        text.text = f"{o.id}" + ("" if o.metric else " (up to scale)")
        out.markers.append(box)
        out.markers.append(text)
        if o.has_velocity:
            arrow = Marker(id=3 * int(o.id) + 2, type=Marker.ARROW, action=Marker.ADD, **base)
            start = o.position
            end = type(start)(
                x=start.x + o.velocity.x, y=start.y + o.velocity.y, z=start.z + o.velocity.z
            )
            arrow.points = [start, end]
            arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.05, 0.1, 0.1
            arrow.color.r, arrow.color.g, arrow.color.b, arrow.color.a = r, gr, b, 1.0
            out.markers.append(arrow)
    return out
