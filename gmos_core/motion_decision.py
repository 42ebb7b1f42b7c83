"""Which proposals move: the motion decisions a Gmos proposer can run with.

The paper's proposer decides with its own motion head. A micro model trained on a CPU does not
tell moving from static objects with it (docs/training.md, sessions 9-13), so the streaming
runtime can hand each frame's proposals to another decision that replaces only their motion
probabilities (masks, predicted IoU and the propagator stay):

* ``head``: the model's motion head (the paper's; no decision object);
* ``depth_warp``: the warp residual of an RGB-D camera's depth and the camera's pose
  (`gmos_core.geometry.warp_decision.WarpMotionDecision`; every frame needs a `SensorFrame`);
* ``flow_motion``: the flow motion net on the window's optical-flow geometry (RGB only,
  `gmos_core.models.flow_decision.FlowMotionDecision`).

Settings may also ask for ``auto`` (the node's default): the decision measured best for the
model, resolved before anything is built (`gmos_core.streaming.build.resolve_motion_decision`).

Every decision is stateless per stream and follows `MotionDecision`; a bundle keeps one
calibrated operating point per decision (`gmos_core.bundle`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from gmos_core.models.prediction import ProposalPrediction

__all__ = ["AUTO", "MOTION_DECISIONS", "MOTION_DECISION_CHOICES", "MotionDecision"]

#: The decisions the runtime runs.
MOTION_DECISIONS = ("head", "depth_warp", "flow_motion")
#: "Whichever decision is measured best for the model" (resolved to one of MOTION_DECISIONS).
AUTO = "auto"
#: What a `RuntimeSettings.motion_decision` / node parameter / command-line option may say.
MOTION_DECISION_CHOICES = (AUTO, *MOTION_DECISIONS)


class MotionDecision(Protocol):
    """What the streaming runtime calls, per frame of a window."""

    def grey(self, frame_rgb: np.ndarray) -> np.ndarray:
        """The decision's image of one (H, W, 3) uint8 RGB frame, made once per frame and
        kept with it (each frame is in ~5 windows)."""
        ...

    def evidence(
        self, greys: Sequence[np.ndarray], sensors: Sequence[Any], center: int
    ) -> np.ndarray | None:
        """The per-pixel evidence map of the window's centre frame, or None when there is none
        (the frame is then carried by the tracker). `greys` are `grey`'s images of the window
        (a frame repeated at a stream end is the same array); `sensors` each frame's sensor
        data or None."""
        ...

    def decide(self, pred: ProposalPrediction, evidence: np.ndarray) -> ProposalPrediction:
        """`pred` with its motion probabilities replaced from the evidence (any size: resized
        to the masks' by the decision)."""
        ...
