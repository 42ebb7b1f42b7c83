"""Propagator thresholds (paper Appendix B; official `prop/prop_config.py`).

Where the official code and the paper disagree we follow the paper's intent by default and
reproduce the official behaviour when `official_compat=True`:

* Final motion gate. The official code smooths the per-object motion score (`motions_alter`)
  but then gates the output with the *unsmoothed* binary `motion_global` (precision of the
  track mask w.r.t. the union of moving proposals > 0.5), which makes the 0.2 gate a no-op on
  a 0/1 value. Paper mode gates the causally smoothed motion score of the best-covering
  proposal (the paper's "motion label inherited from the matched proposal") at `motion_gate`.
* Offline anchor. The paper picks ``argmax_t sum_i u_t^i * 1[u_t^i > tau_u]``; the official
  code picks ``argmax_t sum_i u_t^i`` (no threshold).
* Offline object filter. Both drop objects moving in fewer than 3 % of frames; the official
  code counts `motion_global` frames, paper mode counts the gated per-frame motion label.
* Seed frame. The official code seeds from the best of frames 0-2 and still propagates from
  frame 0, i.e. frames before the seed are tracked with a *future* conditioning frame. That is
  not causal; the online propagator here always seeds at the first frame that has a confident
  moving proposal (the paper's "initialise from frame 1"), in both modes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml


@dataclass
class PropagatorConfig:
    """All thresholds of the Gmos propagator (defaults = paper Appendix B / official code)."""

    # tau_m: a proposal is moving if its motion probability exceeds this.
    motion_threshold: float = 0.5
    # tau_u: a proposal's predicted IoU is trusted if it exceeds this.
    iou_threshold: float = 0.7
    # tau_match: matched proposal / tracked-mask IoU above which the proposal re-prompts the track.
    match_iou_threshold: float = 0.95
    # tau_new: a proposal whose max precision w.r.t. every tracked mask is below this is new.
    new_object_max_precision: float = 0.3
    # Precision of a track mask covered by moving proposals above which the track is moving.
    motion_precision_threshold: float = 0.5
    # Final gate on the (smoothed, paper mode) per-object motion score.
    motion_gate: float = 0.2
    # Maximum number of objects alive at once (the official code never frees one).
    max_objects: int = 10
    # Minimum number of frames between two prompts of the same object (reinforcement only).
    min_prompt_frame_distance: int = 5
    # Offline: fraction of an object's tracked frames used as stage-2 prompts (top by IoU).
    offline_prompt_fraction: float = 0.1
    # Offline: minimum online tracker IoU for a frame to be used as a stage-2 prompt.
    offline_prompt_iou_threshold: float = 0.95
    # Offline: objects moving in fewer than this fraction of frames are dropped.
    min_moving_frame_proportion: float = 0.03
    # 5-tap weights for offsets [-2, -1, 0, +1, +2] *in the smoothing convention of the official
    # code*, where offset -2 reads frame t+2 and +2 reads frame t-2: stage 1 is causal.
    online_smoothing_weights: tuple[float, ...] = (0.0, 0.0, 1.0, 0.7, 0.4)
    offline_smoothing_weights: tuple[float, ...] = (0.25, 0.5, 1.0, 0.5, 0.25)
    # Release a track after this many consecutive frames with an empty mask (None: never, as
    # in the paper and the official code). Useful for endless ROS streams with max_objects.
    release_lost_after: int | None = None
    # Weight-free tracker (`MaskIoUTracker`, built by the runtime) only; the SAM2 tracker matches
    # by appearance. A track adopts the proposal overlapping its prediction at IoU >= snap_iou;
    # use_velocity predicts it by shifting its last mask at its centroid velocity (noisy masks
    # make noisy velocities: with a micro proposer, carrying in place tracks better).
    snap_iou: float = 0.5
    use_velocity: bool = True
    # Reproduce the official code where it differs from the paper (see module docstring).
    official_compat: bool = False

    def __post_init__(self) -> None:
        self.online_smoothing_weights = tuple(float(w) for w in self.online_smoothing_weights)
        self.offline_smoothing_weights = tuple(float(w) for w in self.offline_smoothing_weights)
        for name in ("online_smoothing_weights", "offline_smoothing_weights"):
            if len(getattr(self, name)) != 5:
                raise ValueError(f"{name} needs 5 weights (offsets -2..+2)")
        if self.max_objects < 1:
            raise ValueError("max_objects must be >= 1")
        if self.min_prompt_frame_distance < 0:
            raise ValueError("min_prompt_frame_distance must be >= 0")
        if not 0.0 <= self.snap_iou <= 1.0:
            raise ValueError(f"snap_iou must lie in [0, 1], got {self.snap_iou}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists for the weight tuples) suitable for YAML/ROS parameters."""
        out = asdict(self)
        out["online_smoothing_weights"] = list(self.online_smoothing_weights)
        out["offline_smoothing_weights"] = list(self.offline_smoothing_weights)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PropagatorConfig:
        """Build from a flat dict; unknown keys raise ``ValueError``."""
        # Unknown keys fail loudly so a typo in the YAML is not silently ignored.
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown propagator config keys: {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> PropagatorConfig:
        """Load `config/propagator.yaml` (a flat mapping, optionally under a `propagator:` key)."""
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        if "propagator" in data and isinstance(data["propagator"], dict):
            data = data["propagator"]
        return cls.from_dict(data)
