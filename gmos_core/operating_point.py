"""Operating points: the decision thresholds a trained model is run at.

The paper's thresholds (Gmos-S foreground > 0.5, proposal mask logit > 0, propagator
τ_m = 0.5 and τ_u = 0.7) suit the paper's well-trained, well-calibrated heads. A model trained
briefly (the micro models trained on a 2-core CPU, `training/configs/*_micro.yaml`) ranks
pixels and proposals usefully but is under-confident: its foreground probability rarely
reaches 0.5. `training.calibrate` picks the thresholds on a *validation* split (never the
held-out test split) and stores them in the bundle's metadata; the runtime uses them unless
the caller sets its own. A bundle without one runs at the paper's values.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["OperatingPoint"]


@dataclass(frozen=True)
class OperatingPoint:
    """Decision thresholds of one model (defaults: the paper's / the official code's).

    Attributes:
        fg_threshold: Gmos-S: a pixel is foreground if its probability exceeds this.
        mask_logit_threshold: proposer: a pixel belongs to its best proposal if that
            proposal's (upsampled) mask logit exceeds this (official 0).
        motion_threshold: propagator τ_m: a proposal is moving above this motion probability.
        iou_threshold: propagator τ_u: a proposal's predicted IoU is trusted above this.
        snap_iou: weight-free tracker (`MaskIoUTracker`, the CPU default): a track adopts the
            frame's proposal that overlaps its prediction at IoU ≥ this (else it coasts). Not
            in the paper (its SAM2 tracker matches by appearance; the SAM2 tracker ignores it).
        use_velocity: weight-free tracker: predict a track by shifting its last mask at its
            centroid velocity (False: carry it in place). Noisy masks make noisy velocities.
        source: where the values come from (free text, e.g. the calibration split).
    """

    fg_threshold: float = 0.5
    mask_logit_threshold: float = 0.0
    motion_threshold: float = 0.5
    iou_threshold: float = 0.7
    snap_iou: float = 0.5
    use_velocity: bool = True
    source: str = "paper defaults"

    def __post_init__(self) -> None:
        for name in ("fg_threshold", "motion_threshold"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v < 1.0):
                raise ValueError(f"OperatingPoint.{name} must lie in [0, 1), got {v!r}")
        for name in ("mask_logit_threshold", "iou_threshold"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise ValueError(f"OperatingPoint.{name} must be a finite number, got {v!r}")
        if not (isinstance(self.snap_iou, (int, float)) and 0.0 <= self.snap_iou <= 1.0):
            raise ValueError(f"OperatingPoint.snap_iou must lie in [0, 1], got {self.snap_iou!r}")
        if not isinstance(self.use_velocity, bool):
            raise ValueError(
                f"OperatingPoint.use_velocity must be true or false, got {self.use_velocity!r}"
            )

    def propagator_overrides(self) -> dict[str, float | bool]:
        """The `PropagatorConfig` fields this operating point sets."""
        return {
            "motion_threshold": self.motion_threshold,
            "iou_threshold": self.iou_threshold,
            "snap_iou": self.snap_iou,
            "use_velocity": self.use_velocity,
        }

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> OperatingPoint:
        """From a plain dict; unknown keys are an error (a typo must not pass silently)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ValueError(f"unknown operating-point keys {unknown} (known: {sorted(names)})")
        return cls(**raw)

    @classmethod
    def from_json(cls, text: str) -> OperatingPoint:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"operating point is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"operating point must be a JSON object, got {type(raw).__name__}")
        return cls.from_dict(raw)
