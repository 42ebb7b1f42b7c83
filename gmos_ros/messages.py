"""FrameResult -> ROS messages, and the header bookkeeping shared by the node and `gmos-bag eval`.

`HeaderedStream` wraps one `StreamingSegmenter` and gives every result back the header of
the frame it describes (results come half a window late, possibly several at once), so the
live node and the offline evaluator run exactly the same code from frame to message.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from gmos_msgs.msg import MovingObject, MovingObjectArray
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from gmos_core.geometry.warp_decision import SensorFrame
from gmos_core.streaming import FrameResult, StreamingSegmenter
from gmos_ros.conversions import numpy_to_image_fields
from gmos_ros.scaling import downscale, model_size, upscale_result

__all__ = [
    "HeaderedStream",
    "StampedResult",
    "copy_header",
    "make_image",
    "objects_msg",
    "restamp_camera_info",
    "ResultMasks",
    "result_masks",
    "result_messages",
    "stamp_to_ns",
]


def stamp_to_ns(header: Any) -> int:
    """A header's stamp in integer nanoseconds (the segmenter's clock)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def copy_header(header: Any) -> Header:
    """A fresh std_msgs/Header with the same stamp and frame_id (works for rosbags headers too)."""
    out = Header()
    out.stamp.sec = int(header.stamp.sec)
    out.stamp.nanosec = int(header.stamp.nanosec)
    out.frame_id = str(header.frame_id)
    return out


def make_image(array: np.ndarray, encoding: str, header: Any) -> Image:
    """sensor_msgs/Image of `array` in `encoding` ("mono8", "mono16", "rgb8") with `header`."""
    msg = Image()
    msg.header = copy_header(header)
    msg.height, msg.width, msg.step, data = numpy_to_image_fields(array, encoding)
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.data = data
    return msg


def objects_msg(result: FrameResult, header: Any, max_objects: int = 0) -> MovingObjectArray:
    """gmos_msgs/MovingObjectArray of a result (all objects, or the `max_objects` largest).

    Objects are listed by id; when capped, the largest are kept (by area) and the instance
    mask is capped the same way by `result_messages`, so both always agree.
    """
    msg = MovingObjectArray()
    msg.header = copy_header(header)
    for o in _kept_objects(result, max_objects):
        x, y, w, h = o.bbox
        msg.objects.append(
            MovingObject(
                id=int(o.obj_id),
                moving=bool(o.moving),
                motion_prob=float(o.motion_prob),
                iou=float(o.iou),
                x=int(x),
                y=int(y),
                width=int(w),
                height=int(h),
                area=int(o.area),
            )
        )
    return msg


def _kept_objects(result: FrameResult, max_objects: int) -> list:
    objs = list(result.objects)
    if max_objects > 0 and len(objs) > max_objects:
        keep = sorted(objs, key=lambda o: (-o.area, o.obj_id))[:max_objects]
        objs = sorted(keep, key=lambda o: o.obj_id)
    return objs


def capped_ids(result: FrameResult, max_objects: int) -> np.ndarray:
    """(H, W) uint16 instance map with only the objects `objects_msg` lists."""
    ids = result.instance_ids
    if max_objects <= 0 or len(result.objects) <= max_objects:
        return ids
    keep = np.asarray([o.obj_id for o in _kept_objects(result, max_objects)], ids.dtype)
    return np.where(np.isin(ids, keep), ids, 0).astype(np.uint16)


@dataclass(frozen=True)
class ResultMasks:
    """The arrays a result's messages are encoded from (and the overlay is drawn from).

    Attributes:
        ids: (H, W) uint16 instance map, capped like `objects_msg` (see `capped_ids`).
        dynamic: (H, W) uint8, 255 where a moving object is, else 0.
        moving_ids: ids of the listed objects that move at this frame.
    """

    ids: np.ndarray
    dynamic: np.ndarray
    moving_ids: frozenset[int]


def result_masks(result: FrameResult, max_objects: int = 0) -> ResultMasks:
    """The instance and dynamic masks of one result, as arrays (nothing encoded yet)."""
    ids = capped_ids(result, max_objects)
    moving = [o.obj_id for o in _kept_objects(result, max_objects) if o.moving]
    dyn = np.isin(ids, np.asarray(moving, np.uint16)) if moving else np.zeros(ids.shape, bool)
    return ResultMasks(
        ids.astype(np.uint16), dyn.astype(np.uint8) * 255, frozenset(int(k) for k in moving)
    )


def result_messages(
    result: FrameResult, header: Any, max_objects: int = 0, masks: ResultMasks | None = None
) -> tuple[Image, Image, MovingObjectArray]:
    """(instance_mask mono16, dynamic_mask mono8 0/255, objects) for one result.

    `masks` (from `result_masks` of the same result and `max_objects`) saves recomputing
    them when the caller also draws from them.
    """
    m = masks if masks is not None else result_masks(result, max_objects)
    return (
        make_image(m.ids, "mono16", header),
        make_image(m.dynamic, "mono8", header),
        objects_msg(result, header, max_objects),
    )


def restamp_camera_info(info: CameraInfo, header: Any) -> CameraInfo:
    """A copy of `info` whose header is the image header (for exact-time sync downstream)."""
    out = CameraInfo()
    for name in (
        "height",
        "width",
        "distortion_model",
        "d",
        "k",
        "r",
        "p",
        "binning_x",
        "binning_y",
        "roi",
    ):
        setattr(out, name, getattr(info, name))
    out.header = copy_header(header)
    return out


@dataclass
class StampedResult:
    """A segmenter result with the header and (optionally) the RGB frame it describes."""

    result: FrameResult
    header: Header
    frame: np.ndarray | None


class HeaderedStream:
    """One camera's `StreamingSegmenter` plus a bounded FIFO of the headers in flight.

    Results come out in input order (the segmenter never reorders), so the header of a
    result is found by popping the FIFO up to the entry with its stamp; entries skipped that
    way (none in practice) are discarded rather than guessed. The FIFO never holds more than
    `max_pending` headers: beyond that the oldest is dropped and counted, so memory stays
    bounded even if a segmenter misbehaved.

    Frames above `max_input_pixels` go to the segmenter downscaled (`gmos_ros.scaling`) and
    their results come back at the frame's own resolution.

    Args:
        segmenter: the stream's segmenter.
        keep_frames: also keep each pending frame (for the overlay), at input resolution.
        max_pending: bound of the header FIFO (well above span x fps).
        max_input_pixels: largest frame the segmenter sees (0 = no limit).
        sensor_for: for a "depth_warp" motion decision: ``(frame as the segmenter sees it,
            input (H, W), stamp ns) -> SensorFrame | None`` (None: no depth for this frame).
    """

    def __init__(
        self,
        segmenter: StreamingSegmenter,
        keep_frames: bool = False,
        max_pending: int = 512,
        max_input_pixels: int = 0,
        sensor_for: Callable[[np.ndarray, tuple[int, int], int], SensorFrame | None] | None = None,
    ) -> None:
        self.segmenter = segmenter
        self.keep_frames = keep_frames
        self.max_pending = max_pending
        self.max_input_pixels = max_input_pixels
        self.sensor_for = sensor_for
        # (stamp ns, header, frame for the overlay or None, input (H, W))
        self._pending: deque[tuple[int, Header, np.ndarray | None, tuple[int, int]]] = deque()
        self.unmatched = 0

    @property
    def pending(self) -> int:
        """Headers waiting for their result."""
        return len(self._pending)

    def step(self, frame_rgb: np.ndarray, header: Any) -> list[StampedResult]:
        """Feed one frame; return the results that became ready, each with its own header.

        Raises:
            StreamError: the segmenter refused the frame (duplicate stamp, bad array); the
                header is not kept.
        """
        stamp = stamp_to_ns(header)
        in_hw = (int(frame_rgb.shape[0]), int(frame_rgb.shape[1]))
        kept = frame_rgb if self.keep_frames else None
        self._pending.append((stamp, copy_header(header), kept, in_hw))
        small = downscale(frame_rgb, model_size(*in_hw, self.max_input_pixels))
        try:
            sensor = self.sensor_for(small, in_hw, stamp) if self.sensor_for else None
            results = self.segmenter.step(small, stamp, sensor)
        except Exception:
            self._pending.pop()
            raise
        out = self._match(results)
        while len(self._pending) > self.max_pending:
            self._pending.popleft()
            self.unmatched += 1
        return out

    def flush(self) -> list[StampedResult]:
        """Finish every pending frame (end of stream, deactivation)."""
        return self._match(self.segmenter.flush())

    def _match(self, results: list[FrameResult]) -> list[StampedResult]:
        out = []
        for r in results:
            while self._pending and self._pending[0][0] != r.stamp_ns:
                self._pending.popleft()
                self.unmatched += 1
            if not self._pending:
                # Never publish a result whose header is unknown: a wrong stamp is worse
                # than a missing message.
                self.unmatched += 1
                continue
            _, header, frame, in_hw = self._pending.popleft()
            out.append(StampedResult(upscale_result(r, in_hw), header, frame))
        return out
