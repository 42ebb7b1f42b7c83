"""Gmos propagator: lifts per-frame proposals into persistent, motion-labelled object tracks.

Paper Sec. 2.2 / Appendix A.2 (Algorithm 1). `OnlinePropagator` is the causal stage (MOS-I),
`offline_propagate` the bidirectional second stage (MOS and MOS-I). Trackers implement the
`Tracker` protocol: `Sam2Tracker` (streaming SAM2 video predictor) or `MaskIoUTracker`
(weight-free).
"""

from .config import PropagatorConfig
from .propagator import (
    OnlinePropagator,
    iter_offline_propagate,
    mask_precision,
    max_precision,
    official_seed_frame,
    offline_propagate,
    resolve_overlaps,
    run_online,
    smooth_scores,
)
from .registry import ObjectRegistry
from .trackers import MaskIoUTracker, Sam2Tracker, Tracker, pairwise_iou, shift_mask
from .types import (
    FrameProposals,
    ObjectState,
    PropagationFrame,
    TrackedObject,
    TrackOutput,
    mask_bbox,
)

__all__ = [
    "FrameProposals",
    "MaskIoUTracker",
    "ObjectRegistry",
    "ObjectState",
    "OnlinePropagator",
    "PropagationFrame",
    "PropagatorConfig",
    "Sam2Tracker",
    "TrackOutput",
    "TrackedObject",
    "Tracker",
    "mask_bbox",
    "mask_precision",
    "max_precision",
    "iter_offline_propagate",
    "offline_propagate",
    "official_seed_frame",
    "pairwise_iou",
    "resolve_overlaps",
    "run_online",
    "shift_mask",
    "smooth_scores",
]
