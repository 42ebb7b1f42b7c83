"""Typed results of the streaming runtime: what the node publishes and the CLIs write."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gmos_core.models.prediction import WindowGeometry

# The one per-object record, built by the propagator (re-exported here for the consumers of
# results: node, CLIs).
from gmos_core.propagation.types import ObjectState


@dataclass(frozen=True)
class FrameResult:
    """The result for one input frame.

    Attributes:
        stamp_ns: stamp of the frame this result describes (the input stamp, never now()).
        frame_index: index of that frame since the last stream reset.
        instance_ids: (H, W) uint16 at input resolution, 0 = background, else the object id.
        objects: one entry per id present in `instance_ids` (sorted by id), its box and
            area exactly those of its pixels there (the ROS node's upscaling maps them instead
            of measuring again).
        fg_prob: (H, W) float32 foreground probability (Gmos-S only), else None.
        geometry: the π³ heads' outputs for this frame's window (up-to-scale point maps and
            camera poses, `WindowGeometry`), when the model runs the heads and the window
            decoder ran for this frame; else None.
    """

    stamp_ns: int
    frame_index: int
    instance_ids: np.ndarray
    objects: tuple[ObjectState, ...] = field(default_factory=tuple)
    fg_prob: np.ndarray | None = None
    geometry: WindowGeometry | None = None

    @property
    def dynamic_mask(self) -> np.ndarray:
        """(H, W) bool: pixels of the objects that are moving at this frame (for SLAM)."""
        moving = [o.obj_id for o in self.objects if o.moving]
        if not moving:
            return np.zeros(self.instance_ids.shape, bool)
        return np.isin(self.instance_ids, np.asarray(moving, dtype=self.instance_ids.dtype))


def objects_from_ids(
    instance_ids: np.ndarray,
    moving: dict[int, bool],
    motion_prob: dict[int, float],
    iou: dict[int, float],
) -> tuple[ObjectState, ...]:
    """Build `ObjectState`s for every id present in an (H, W) id map (Gmos-S's single
    foreground object, tests and benchmarks; the propagator builds its own).

    Boxes and areas are measured on the map itself so that `objects` always agrees with
    `instance_ids` (an id that lost all its pixels to an overlap is not listed).
    """
    out = []
    for obj_id in np.unique(instance_ids):
        if obj_id == 0:
            continue
        ys, xs = np.nonzero(instance_ids == obj_id)
        x0, y0 = int(xs.min()), int(ys.min())
        bbox = (x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1)
        k = int(obj_id)
        out.append(
            ObjectState(
                obj_id=k,
                moving=bool(moving.get(k, False)),
                motion_prob=float(motion_prob.get(k, 0.0)),
                iou=float(iou.get(k, 0.0)),
                bbox=bbox,
                area=int(len(xs)),
            )
        )
    return tuple(out)
