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


@dataclass
class TrackedObject:
    """State of one tracked object on one frame.

    Attributes:
        obj_id: persistent external id (1, 2, ...; never reused within a stream).
        mask: (H, W) bool full track mask after overlap resolution (also when static).
        moving: final (gated) motion state on this frame.
        motion_prob: motion probability of the proposal that best covers the track (0 if none).
        iou: the tracker's object IoU (SAM2: max over the multimask IoU predictions).
        bbox: (x, y, w, h) of `mask`.
        motion_score: the score the motion gate was applied to (smoothed in paper mode).
        num_prompts: prompts given to this object so far (overlap priority).
    """

    obj_id: int
    mask: np.ndarray
    moving: bool
    motion_prob: float
    iou: float
    bbox: tuple[int, int, int, int]
    motion_score: float = 0.0
    num_prompts: int = 0


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
