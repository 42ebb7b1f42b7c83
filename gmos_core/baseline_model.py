"""The weight-free baselines as a `FrameModel`, so the runtime (and the ROS node) can run them.

For robots with a CPU and no trained weights: `variant: ego_residual` (homography-compensated
frame differencing, `gmos_core.baselines`) or `variant: frame_diff` (plain frame
differencing, `gmos_core.baselines_extra`). The baseline segments the centre frame of the
same 5-frame time window the learned models see; its connected components become proposals
(all moving, confidence 1) for the same online propagator as `gmos_online`, so the node
publishes the same topics (tracked instance ids, dynamic mask, objects, overlay) and the
same diagnostics as with a learned model.

Per-frame "features" are the frames themselves (the baselines need the raw pixels of the
window), so the stream's frame cache is reused as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gmos_core.baselines import EgoMotionResidualBaseline
from gmos_core.streaming.segmenter import ProposalPrediction

__all__ = ["BASELINE_VARIANTS", "BaselineFrameModel"]

#: runtime variant name -> what it runs.
BASELINE_VARIANTS: dict[str, str] = {
    "ego_residual": "homography ego-motion residual (gmos_core.baselines)",
    "frame_diff": "frame differencing (gmos_core.baselines_extra)",
}


class BaselineFrameModel:
    """A non-learned baseline behind the runtime's `FrameModel` protocol.

    Args:
        variant: "ego_residual" or "frame_diff".

    Attributes:
        mode: "gmos" (it returns proposals, like the Gmos proposer).
        operating_point: None (the propagator's defaults apply).
    """

    mode = "gmos"
    operating_point = None

    def __init__(self, variant: str) -> None:
        # baselines_extra imports torch (through models.preprocess): imported here so that the
        # runtime's weight-free path imports without torch.
        from gmos_core.baselines_extra import FrameDifferencingBaseline

        if variant == "ego_residual":
            self.baseline: Any = EgoMotionResidualBaseline()
        elif variant == "frame_diff":
            self.baseline = FrameDifferencingBaseline()
        else:
            raise ValueError(
                f"baseline variant must be one of {', '.join(BASELINE_VARIANTS)}, got {variant!r}"
            )
        self.variant = variant

    def geometry_features(self, frame_rgb: np.ndarray) -> np.ndarray:
        """The (H, W, 3) uint8 frame itself (the baseline reads the window's pixels)."""
        return frame_rgb

    def segmentation_features(self, frame_rgb: np.ndarray) -> None:
        """Nothing: the weight-free tracker needs no image features."""
        return None

    def predict(
        self, geometry: Sequence[Any], segmentation: Any, out_hw: tuple[int, int]
    ) -> ProposalPrediction:
        """Segment the middle frame of the window.

        Args:
            geometry: the window's frames, (H, W, 3) uint8 each, the centre in the middle.
            segmentation: unused.
            out_hw: (H, W) of the frames.

        Returns:
            One proposal per connected component: (K, H, W) bool masks, motion
            probability 1 and predicted IoU 1 (the baseline calls everything it finds moving).
        """
        window = np.stack(list(geometry))
        labels = self.baseline.segment(window, len(geometry) // 2)
        if labels.shape != tuple(out_hw):
            raise ValueError(f"baseline output {labels.shape} differs from the frame {out_hw}")
        k = int(labels.max())
        masks = labels[None] == np.arange(1, k + 1, dtype=labels.dtype)[:, None, None]
        ones = np.ones(k, np.float32)
        return ProposalPrediction(masks=masks, motion_prob=ones, iou=ones.copy())

    def set_precision(self, precision: str) -> None:
        """Baselines have no network: only fp32 is accepted."""
        if precision != "fp32":
            raise ValueError(f"variant {self.variant} has no network precision; use fp32")
