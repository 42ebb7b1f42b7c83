"""StreamingSegmenter: window by time, look-ahead, caching, resets, bounded memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from gmos_core.propagation import PropagationFrame, TrackedObject
from gmos_core.streaming import (
    ForegroundPrediction,
    ProposalPrediction,
    StreamError,
    StreamingSegmenter,
)

MS = 1_000_000


class FakeModel:
    """Encodes a frame as its stamp-coded pixel value and records every window it sees."""

    def __init__(self, proposals: bool = False) -> None:
        self.proposals = proposals
        self.windows: list[list[int]] = []
        self.geometry_calls = 0
        self.segmentation_calls = 0

    def geometry_features(self, frame_rgb: np.ndarray) -> Any:
        self.geometry_calls += 1
        return int(frame_rgb[0, 0, 0]) | (int(frame_rgb[0, 0, 1]) << 8)

    def segmentation_features(self, frame_rgb: np.ndarray) -> Any:
        self.segmentation_calls += 1
        return ("seg", int(frame_rgb[0, 0, 0]) | (int(frame_rgb[0, 0, 1]) << 8))

    def predict(
        self, geometry: Sequence[Any], segmentation: Any, out_hw: tuple[int, int]
    ) -> ForegroundPrediction | ProposalPrediction:
        self.windows.append(list(geometry))
        h, w = out_hw
        if self.proposals:
            m = np.zeros((1, h, w), bool)
            m[0, 2:5, 3:7] = True
            return ProposalPrediction(m, np.array([0.9], np.float32), np.array([0.8], np.float32))
        prob = np.zeros((h, w), np.float32)
        prob[1:3, 1:4] = 0.9
        return ForegroundPrediction(prob, iou=0.7)


class FakeTracking:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def step(
        self, frame_index: int, proposals: ProposalPrediction | None, tracker_input: Any, out_hw
    ):
        # Records "update" (proposals) / "carry" (tracker only) as the propagator would see it.
        if proposals is not None:
            self.calls.append(("update", frame_index))
            self.last = proposals.masks[0]
            iou = 0.8
        else:
            self.calls.append(("carry", frame_index))
            iou = 0.5
        obj = TrackedObject.from_mask(3, self.last, moving=True, motion_prob=0.9, iou=iou)
        ids = self.last.astype(np.uint16) * 3
        return PropagationFrame(frame_index, None, [obj], ids, ids)


def frame_for(i: int, hw: tuple[int, int] = (8, 10)) -> np.ndarray:
    f = np.zeros((*hw, 3), np.uint8)
    f[..., 0] = i & 255
    f[..., 1] = i >> 8
    return f


def run(seg: StreamingSegmenter, stamps: list[int]) -> list:
    out = []
    for i, s in enumerate(stamps):
        out.extend(seg.step(frame_for(i), s))
    out.extend(seg.flush())
    return out


def test_every_frame_gets_one_result_with_its_own_stamp() -> None:
    stamps = [i * 100 * MS for i in range(20)]  # 10 fps
    seg = StreamingSegmenter(FakeModel(), "gmos_s", span_s=0.4)
    results = run(seg, stamps)
    assert [r.stamp_ns for r in results] == stamps
    assert [r.frame_index for r in results] == list(range(20))
    r = results[5]
    assert r.instance_ids.dtype == np.uint16 and r.instance_ids.shape == (8, 10)
    assert r.objects[0].bbox == (1, 1, 3, 2) and r.objects[0].area == 6
    assert r.dynamic_mask.sum() == 6


def test_window_is_chosen_by_time_and_clamped_at_the_ends() -> None:
    # 10 fps, span 0.4 s: window of frame t is t-2..t+2 (indices), clamped at the ends.
    stamps = [i * 100 * MS for i in range(10)]
    model = FakeModel()
    run(StreamingSegmenter(model, "gmos_s", span_s=0.4), stamps)
    assert model.windows[0] == [0, 0, 0, 1, 2]
    assert model.windows[5] == [3, 4, 5, 6, 7]
    assert model.windows[9] == [7, 8, 9, 9, 9]


def test_variable_frame_rate_picks_nearest_stamps() -> None:
    # Irregular stamps (ms): the window of the frame at 400 ms spans ~200..600 ms.
    stamps_ms = [0, 90, 210, 290, 400, 430, 520, 610, 700, 1000]
    model = FakeModel()
    run(StreamingSegmenter(model, "gmos_s", span_s=0.4), [s * MS for s in stamps_ms])
    # targets 200, 300, 400, 500, 600 -> frames at 210, 290, 400, 520, 610
    assert model.windows[4] == [2, 3, 4, 6, 7]


def test_results_wait_for_the_half_window_look_ahead() -> None:
    seg = StreamingSegmenter(FakeModel(), "gmos_s", span_s=0.4)
    assert seg.latency_ns == 200 * MS
    assert seg.step(frame_for(0), 0) == []
    assert seg.step(frame_for(1), 100 * MS) == []
    got = seg.step(frame_for(2), 200 * MS)  # frame 0's last target (200 ms) is here
    assert [r.stamp_ns for r in got] == [0]


def test_each_frame_is_encoded_once() -> None:
    model = FakeModel()
    stamps = [i * 50 * MS for i in range(40)]
    seg = StreamingSegmenter(model, "gmos_s", span_s=0.5)
    run(seg, stamps)
    assert model.geometry_calls == 40  # not 5 x 40
    assert model.segmentation_calls == 40
    assert seg.stats.geometry_encodes == 40


def test_buffer_stays_bounded_over_a_long_stream() -> None:
    seg = StreamingSegmenter(FakeModel(), "gmos_s", span_s=0.5)
    sizes = []
    for i in range(600):
        seg.step(frame_for(i), i * 33 * MS)  # 30 fps
        sizes.append(seg.buffered)
    assert max(sizes[100:]) == max(sizes[:100])  # flat
    assert max(sizes) <= 0.5 * 30 + 3


def test_backwards_stamp_finishes_pending_then_resets() -> None:
    tracking = FakeTracking()
    seg = StreamingSegmenter(FakeModel(proposals=True), "gmos", tracking, span_s=0.4)
    out = []
    for i in range(6):
        out += seg.step(frame_for(i), (1000 + i * 100) * MS)
    out += seg.step(frame_for(99), 0)  # bag looped
    assert [r.stamp_ns for r in out] == [(1000 + i * 100) * MS for i in range(6)]
    assert tracking.resets == 1 and seg.stats.resets == 1
    out = seg.step(frame_for(100), 100 * MS) + seg.flush()
    assert [r.stamp_ns for r in out] == [0, 100 * MS]
    assert [r.frame_index for r in out] == [0, 1]


def test_resolution_change_resets() -> None:
    seg = StreamingSegmenter(FakeModel(), "gmos_s", span_s=0.2)
    out = seg.step(frame_for(0), 0) + seg.step(frame_for(1), 100 * MS)
    out += seg.step(frame_for(2, hw=(6, 6)), 200 * MS)
    out += seg.flush()
    assert [r.stamp_ns for r in out] == [0, 100 * MS, 200 * MS]
    assert out[-1].instance_ids.shape == (6, 6) and out[-1].frame_index == 0


def test_bad_frames_are_rejected_without_touching_state() -> None:
    seg = StreamingSegmenter(FakeModel(), "gmos_s")
    seg.step(frame_for(0), 0)
    for bad in (np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3))):
        with pytest.raises(StreamError):
            seg.step(bad, 10)
    with pytest.raises(StreamError, match="duplicate stamp"):
        seg.step(frame_for(1), 0)
    assert seg.buffered == 1 and seg.stats.rejected == 1


def test_proposer_stride_runs_the_head_on_every_kth_frame() -> None:
    tracking = FakeTracking()
    model = FakeModel(proposals=True)
    seg = StreamingSegmenter(model, "gmos", tracking, span_s=0.4, proposer_stride=3)
    results = run(seg, [i * 100 * MS for i in range(9)])
    kinds = [k for k, _ in tracking.calls]
    assert kinds == ["update", "carry", "carry"] * 3
    assert seg.stats.proposer_runs == 3
    # π³ per-frame encoding only for frames inside a proposer window
    assert model.geometry_calls <= 9
    assert all(r.objects and r.objects[0].obj_id == 3 for r in results)


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="propagator"):
        StreamingSegmenter(FakeModel(), "gmos")
    with pytest.raises(ValueError, match="odd"):
        StreamingSegmenter(FakeModel(), "gmos_s", num_frames=4)
    with pytest.raises(ValueError, match="mode"):
        StreamingSegmenter(FakeModel(), "other")  # type: ignore[arg-type]
