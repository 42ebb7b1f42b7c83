"""Streaming runtime: frame-by-frame Gmos / Gmos-S with a timestamped ring buffer."""

from gmos_core.models.prediction import ForegroundPrediction, ProposalPrediction, WindowGeometry
from gmos_core.streaming.segmenter import (
    FrameModel,
    OnlineTracking,
    StreamError,
    StreamingSegmenter,
    StreamStats,
)
from gmos_core.streaming.types import FrameResult, ObjectState, objects_from_ids

__all__ = [
    "ForegroundPrediction",
    "FrameModel",
    "FrameResult",
    "ObjectState",
    "OnlineTracking",
    "ProposalPrediction",
    "StreamError",
    "StreamStats",
    "StreamingSegmenter",
    "WindowGeometry",
    "objects_from_ids",
]
