"""Typed containers exchanged by the propagator (no dicts of dicts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np


@dataclass
class FrameProposals:
    """The proposer's post-processed top-k proposals for one frame.

    Attributes:
        masks: (K, H, W) bool, one binary mask per proposal (K may be 0).
        motion_prob: (K,) float32, sigmoid of the motion logit.
        iou_pred: (K,) float32, the proposer's predicted mask IoU.
    """

    masks: np.ndarray
    motion_prob: np.ndarray
    iou_pred: np.ndarray

    def __post_init__(self) -> None:
        self.masks = np.asarray(self.masks, dtype=bool)
        if self.masks.ndim != 3:
            raise ValueError(f"masks must be (K,H,W), got {self.masks.shape}")
        self.motion_prob = np.asarray(self.motion_prob, dtype=np.float32).reshape(-1)
        self.iou_pred = np.asarray(self.iou_pred, dtype=np.float32).reshape(-1)
        k = self.masks.shape[0]
        if self.motion_prob.shape[0] != k or self.iou_pred.shape[0] != k:
            raise ValueError("motion_prob and iou_pred must have one entry per mask")

    @property
    def num(self) -> int:
        """Number of proposals K."""
        return int(self.masks.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the masks."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @classmethod
    def empty(cls, height: int, width: int) -> FrameProposals:
        """A frame with no proposals."""
        return cls(np.zeros((0, height, width), bool), np.zeros(0), np.zeros(0))

    def moving_union(self, motion_threshold: float) -> np.ndarray:
        """(H, W) bool union of the proposals with motion_prob > motion_threshold."""
        sel = self.motion_prob > motion_threshold
        if not sel.any():
            return np.zeros(self.shape, dtype=bool)
        return self.masks[sel].any(axis=0)


class TrackOutput(NamedTuple):
    """One tracker slot's output on one frame: (H, W) bool mask and the tracker's object IoU."""

    mask: np.ndarray
    iou: float


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight (x, y, w, h) box of an (H, W) bool mask; (0, 0, 0, 0) when empty."""
    ys = np.flatnonzero(mask.any(axis=1))
    if ys.size == 0:
        return (0, 0, 0, 0)
    xs = np.flatnonzero(mask.any(axis=0))
    return (int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1))


@dataclass(frozen=True)
class ObjectState:
    """One object in one frame: the one per-object record from the propagator to the message.

    `OnlinePropagator.step` builds these (as `TrackedObject`s), `StreamingSegmenter` hands
    them on in `FrameResult.objects`, and `gmos_ros.conversions` writes them into
    `gmos_msgs/MovingObject` without recomputing anything.

    Attributes:
        obj_id: persistent id (>= 1) for the life of the stream; equals its value in the
            instance map.
        moving: gated motion state at this frame (moving in the world frame now).
        motion_prob: motion probability in [0, 1] before gating.
        iou: predicted mask IoU (tracker or proposer quality score).
        bbox: (x, y, width, height) in input pixels of the object's mask; (0, 0, 0, 0) when
            the mask is empty.
        area: number of mask pixels.
    """

    obj_id: int
    moving: bool
    motion_prob: float
    iou: float
    bbox: tuple[int, int, int, int]
    area: int


@dataclass(frozen=True)
class TrackedObject(ObjectState):
    """An `ObjectState` plus what the propagator itself needs: the mask and the gate's input.

    Attributes:
        mask: (H, W) bool full track mask after overlap resolution (also when static);
            `bbox` and `area` are measured on it.
        motion_score: the score the motion gate was applied to (smoothed in paper mode).
        num_prompts: prompts given to this object so far (overlap priority).
    """

    mask: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    motion_score: float = 0.0
    num_prompts: int = 0

    @classmethod
    def from_mask(
        cls,
        obj_id: int,
        mask: np.ndarray,
        moving: bool,
        motion_prob: float,
        iou: float,
        motion_score: float = 0.0,
        num_prompts: int = 0,
    ) -> TrackedObject:
        """Measure `bbox` and `area` on the (H, W) bool `mask`."""
        return cls(
            obj_id=obj_id,
            moving=moving,
            motion_prob=motion_prob,
            iou=iou,
            bbox=mask_bbox(mask),
            area=int(np.count_nonzero(mask)),
            mask=mask,
            motion_score=motion_score,
            num_prompts=num_prompts,
        )

    def state(self) -> ObjectState:
        """The record without the mask (results stay light; the mask is in the id map)."""
        return ObjectState(
            self.obj_id, self.moving, self.motion_prob, self.iou, self.bbox, self.area
        )


@dataclass
class PropagationFrame:
    """Propagator output for one frame.

    Attributes:
        frame_idx: index of the frame in the stream.
        stamp_ns: stamp of the frame (ns), copied from the input; None if unknown.
        objects: per-object results, sorted by obj_id.
        instance_map: (H, W) uint16, obj_id of the *moving* object covering each pixel
            (MOS-I output), 0 elsewhere.
        full_instance_map: (H, W) uint16, obj_id of any tracked object (MOS output).
    """

    frame_idx: int
    stamp_ns: int | None
    objects: list[TrackedObject] = field(default_factory=list)
    instance_map: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint16))
    full_instance_map: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint16))

    def get(self, obj_id: int) -> TrackedObject | None:
        """The object with this id, or None."""
        for obj in self.objects:
            if obj.obj_id == obj_id:
                return obj
        return None

    @property
    def moving_ids(self) -> list[int]:
        """Ids of the objects labelled moving on this frame, ascending."""
        return [o.obj_id for o in self.objects if o.moving]

    def visible_states(self) -> tuple[ObjectState, ...]:
        """The objects present in `full_instance_map` (area > 0), sorted by id, without masks:
        what `FrameResult.objects` holds (an id that lost all its pixels is not listed)."""
        return tuple(o.state() for o in sorted(self.objects, key=lambda o: o.obj_id) if o.area)
