"""Gmos propagator: scripted proposers (moving discs with known motion intervals) and SAM2.

The scripted proposer emits, per frame, one proposal per visible disc: motion 0.9 while the
disc moves and 0.05 while it is static (a real proposer's top-k also contains static
objects, with low motion), predicted IoU 0.9. The weight-free `MaskIoUTracker` gets the same
proposals as candidates, standing in for SAM2's appearance matching.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest

from gmos_core.propagation import (
    FrameProposals,
    MaskIoUTracker,
    ObjectRegistry,
    OnlinePropagator,
    PropagatorConfig,
    TrackOutput,
    offline_propagate,
    resolve_overlaps,
    run_online,
    smooth_scores,
)

H, W, R = 64, 96, 6


def disc(cy: float, cx: float, r: int = R) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@dataclass
class Obj:
    """A disc: `pos[t]` = (cy, cx) or None (invisible); `moving[t]` its motion state."""

    pos: list[tuple[float, float] | None]
    moving: list[bool]


def trajectory(
    n: int, start: tuple[float, float], v: tuple[float, float], moving: list[bool]
) -> Obj:
    """Integrate velocity `v` on frames where the disc moves (it stays put when static)."""
    pos, (cy, cx) = [], start
    for t in range(n):
        if t > 0 and moving[t]:
            cy, cx = cy + v[0], cx + v[1]
        pos.append((cy, cx))
    return Obj(pos, list(moving))


def proposals_for(objs: list[Obj], n: int) -> list[FrameProposals]:
    out = []
    for t in range(n):
        masks, mot, iou = [], [], []
        for o in objs:
            if o.pos[t] is None:
                continue
            masks.append(disc(*o.pos[t]))
            mot.append(0.9 if o.moving[t] else 0.05)
            iou.append(0.9)
        if masks:
            out.append(FrameProposals(np.stack(masks), np.array(mot), np.array(iou)))
        else:
            out.append(FrameProposals.empty(H, W))
    return out


@dataclass
class RecordingTracker:
    """Wraps a tracker and records every prompt (frame, slot)."""

    inner: MaskIoUTracker = field(default_factory=MaskIoUTracker)
    prompts: list[tuple[int, int]] = field(default_factory=list)

    def reset(self) -> None:
        self.inner.reset()
        self.prompts.clear()

    def add_mask(self, frame_idx, slot, mask, frame_input=None) -> TrackOutput:
        self.prompts.append((frame_idx, slot))
        return self.inner.add_mask(frame_idx, slot, mask, frame_input)

    def track(self, frame_idx, frame_input, reverse=False):
        return self.inner.track(frame_idx, frame_input, reverse)

    def remove(self, slot) -> None:
        self.inner.remove(slot)

    @property
    def num_objects(self) -> int:
        return self.inner.num_objects

    @property
    def slots(self) -> list[int]:
        return self.inner.slots


def id_at(frame, pos) -> int:
    return int(frame.instance_map[int(round(pos[0])), int(round(pos[1]))])


def full_id_at(frame, pos) -> int:
    return int(frame.full_instance_map[int(round(pos[0])), int(round(pos[1]))])


# ------------------------------------------------------------------------------------------
# Config, registry, helpers
# ------------------------------------------------------------------------------------------


def test_config_yaml_defaults_and_roundtrip(tmp_path):
    from pathlib import Path

    yaml_path = Path(__file__).resolve().parents[1] / "config" / "propagator.yaml"
    cfg = PropagatorConfig.from_yaml(yaml_path)
    assert cfg == PropagatorConfig()
    assert (cfg.motion_threshold, cfg.iou_threshold, cfg.match_iou_threshold) == (0.5, 0.7, 0.95)
    assert (cfg.new_object_max_precision, cfg.motion_precision_threshold) == (0.3, 0.5)
    assert (cfg.motion_gate, cfg.max_objects, cfg.min_prompt_frame_distance) == (0.2, 10, 5)
    assert (cfg.offline_prompt_fraction, cfg.offline_prompt_iou_threshold) == (0.1, 0.95)
    assert cfg.min_moving_frame_proportion == 0.03
    assert PropagatorConfig.from_dict(cfg.to_dict()) == cfg
    bad = tmp_path / "bad.yaml"
    bad.write_text("motion_treshold: 0.4\n")
    with pytest.raises(ValueError, match="motion_treshold"):
        PropagatorConfig.from_yaml(bad)


def test_registry_ids_never_reused_and_cap():
    reg = ObjectRegistry(max_objects=2)
    a, sa = reg.add(0)
    b, sb = reg.add(0)
    assert (a, b) == (1, 2) and sa != sb and reg.full
    with pytest.raises(RuntimeError):
        reg.add(1)
    assert reg.release(a) == sa
    c, sc = reg.add(3)
    assert c == 3 and sc not in (sa, sb)
    assert reg.id_of_slot(sc) == 3 and reg.id_of_slot(sa) is None
    reg.note_prompt(c, 8)
    assert reg.last_prompt_frame(c) == 8 and reg.num_prompts(c) == 2


def test_overlap_rule_prompt_count_then_lower_id():
    a = np.zeros((4, 4), bool)
    a[:, :3] = True
    b = np.zeros((4, 4), bool)
    b[:, 1:] = True
    (ea, eb), m = resolve_overlaps([1, 2], [a, b], [1, 1], (4, 4))
    assert (m[:, 1:3] == 1).all() and (m[:, 3] == 2).all() and not (ea & eb).any()
    (_, _), m = resolve_overlaps([1, 2], [a, b], [1, 3], (4, 4))
    assert (m[:, 1:] == 2).all() and (m[:, 0] == 1).all()


def test_smoothing_stage1_is_causal():
    v = np.zeros((10, 1))
    v[6] = 1.0
    s = smooth_scores(v, PropagatorConfig().online_smoothing_weights)
    assert np.allclose(s[:6], 0.0)  # nothing leaks into the past
    np.testing.assert_allclose(s[6:9, 0], [1 / 2.1, 0.7 / 2.1, 0.4 / 2.1])


# ------------------------------------------------------------------------------------------
# Online behaviour
# ------------------------------------------------------------------------------------------


def test_addition_of_new_moving_objects():
    n = 12
    a = trajectory(n, (15, 15), (0, 2), [True] * n)
    b = trajectory(n, (45, 20), (0, 2), [True] * n)
    late = trajectory(n, (30, 80), (1, 0), [True] * n)
    late.pos[:6] = [None] * 6
    props = proposals_for([a, b, late], n)
    res = run_online(props, MaskIoUTracker())
    assert sorted(o.obj_id for o in res[0].objects) == [1, 2]
    assert id_at(res[0], a.pos[0]) == 1 and id_at(res[0], b.pos[0]) == 2
    assert [o.obj_id for o in res[5].objects] == [1, 2]
    assert sorted(o.obj_id for o in res[6].objects) == [1, 2, 3]
    assert id_at(res[6], late.pos[6]) == 3 and res[6].get(3).moving
    assert res[6].instance_map.dtype == np.uint16 and res[6].instance_map.shape == (H, W)
    # Static or low-confidence proposals never start objects.
    weak = [
        FrameProposals(np.stack([disc(30, 30)]), np.array([0.9]), np.array([0.6])),
        FrameProposals(np.stack([disc(30, 30)]), np.array([0.3]), np.array([0.9])),
    ]
    assert all(not f.objects for f in run_online(weak, MaskIoUTracker()))


def test_step_without_proposals_carries_objects_and_their_motion_state():
    """`step(idx, proposals=None)`: the tracker alone moves the objects; each keeps its last
    motion state; records agree with the id map (bbox, area measured on the exclusive mask)."""
    n = 4
    a = trajectory(n, (20, 20), (0, 2), [True] * n)
    b = trajectory(n, (44, 60), (0, -2), [True] * n)
    props = proposals_for([a, b], n)
    prop = OnlinePropagator(MaskIoUTracker())
    last = None
    for t in range(3):
        last = prop.step(t, props[t], props[t])
    with pytest.raises(ValueError, match="out_hw"):
        prop.step(3, None, None)
    carried = prop.step(3, None, None, out_hw=(H, W))
    assert [o.obj_id for o in carried.objects] == [1, 2]
    for o in carried.objects:
        before = last.get(o.obj_id)
        assert (o.moving, o.motion_prob) == (before.moving, before.motion_prob)
        np.testing.assert_array_equal(o.mask, carried.full_instance_map == o.obj_id)
        assert o.area == int(o.mask.sum()) > 0
        ys, xs = np.nonzero(o.mask)
        assert o.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    np.testing.assert_array_equal(carried.instance_map, carried.full_instance_map)  # all moving
    states = carried.visible_states()
    assert [type(s).__name__ for s in states] == ["ObjectState", "ObjectState"]
    assert [s.area for s in states] == [o.area for o in carried.objects]


def test_reinforcement_every_5_frames_only_at_high_iou():
    n = 16
    a = trajectory(n, (30, 10), (0, 2), [True] * n)
    props = proposals_for([a], n)
    rec = RecordingTracker()
    run_online(props, rec)
    # Frame 0: addition; then the proposal matches the track at IoU 1 > 0.95 every frame but
    # re-prompts are spaced by min_prompt_frame_distance = 5.
    assert rec.prompts == [(0, 0), (5, 0), (10, 0), (15, 0)]
    rec3 = RecordingTracker()
    run_online(props, rec3, PropagatorConfig(min_prompt_frame_distance=3))
    assert [f for f, _ in rec3.prompts] == [0, 3, 6, 9, 12, 15]
    # A track that lags the object (carried in place, no snapping): IoU with the proposal
    # drops below 0.95 and the proposal (precision >= 0.3) neither re-prompts nor adds.
    slow = trajectory(n, (30, 10), (0, 1), [True] * n)
    rec_lag = RecordingTracker(MaskIoUTracker(use_velocity=False))
    res = run_online(proposals_for([slow], 4), rec_lag, tracker_inputs=[None] * 4)
    assert rec_lag.prompts == [(0, 0)]
    assert [o.obj_id for o in res[3].objects] == [1]


def test_moving_static_moving_keeps_id_and_motion_gate():
    n = 24
    moving = [t < 8 or t >= 16 for t in range(n)]
    a = trajectory(n, (30, 10), (0, 2), moving)
    props = proposals_for([a], n)
    res = run_online(props, MaskIoUTracker())
    assert {o.obj_id for f in res for o in f.objects} == {1}
    flags = [f.get(1).moving for f in res]
    # Paper mode: causal smoothing (1, .7, .4)/2.1 of the motion score (0.9 moving, 0.05
    # static), gate 0.2: static frames 8 and 9 still score (.05 + .7*.9 + .4*.9)/2.1 = 0.50
    # and (.05 + .7*.05 + .4*.9)/2.1 = 0.21; frame 10 scores 0.05.
    assert all(flags[:10]) and not any(flags[10:16]) and all(flags[16:])
    assert res[12].instance_map.max() == 0 and res[12].full_instance_map.max() == 1
    assert id_at(res[20], a.pos[20]) == 1
    # Official compat: unsmoothed motion_global, no lag.
    off = run_online(props, MaskIoUTracker(), PropagatorConfig(official_compat=True))
    assert [f.get(1).moving for f in off] == moving
    # The gate itself: a higher gate suppresses a stopping object one frame sooner.
    strict = [
        f.get(1).moving
        for f in run_online(props, MaskIoUTracker(), PropagatorConfig(motion_gate=0.25))
    ]
    assert strict[8] and not strict[9] and flags[9]


def test_official_seed_frame_is_lookahead_paper_seed_is_causal():
    n = 6
    a = trajectory(n, (30, 10), (0, 2), [True] * n)
    props = proposals_for([a], n)
    # Frame 0's proposal is not trusted (predicted IoU 0.6 < tau_u); frame 1's is.
    props[0] = FrameProposals(props[0].masks, props[0].motion_prob, np.array([0.6]))
    paper = run_online(props, MaskIoUTracker())
    assert paper[0].objects == [] and [o.obj_id for o in paper[1].objects] == [1]
    cfg = PropagatorConfig(official_compat=True)
    from gmos_core.propagation import Tracker, official_seed_frame

    assert official_seed_frame(props, cfg) == 1
    official = run_online(props, MaskIoUTracker(), cfg)
    # Official: seeded on frame 1, tracked from frame 0 (from the future prompt).
    assert official[0].get(1) is not None and official[0].full_instance_map[30, 10] == 1
    assert isinstance(MaskIoUTracker(), Tracker)


def test_static_first_then_moving_recovered_only_offline():
    n = 30
    b = trajectory(n, (15, 10), (0, 2), [True] * n)
    a_moving = [t >= 10 for t in range(n)]
    a = trajectory(n, (45, 20), (0, 2), a_moving)
    props = proposals_for([b, a], n)
    online = run_online(props, MaskIoUTracker())
    assert [o.obj_id for o in online[0].objects] == [1]
    # Online: A is unknown before its first motion (causal) ...
    assert all(f.get(2) is None for f in online[:10])
    assert online[10].get(2) is not None and online[10].get(2).moving
    offline = offline_propagate(props, MaskIoUTracker, PropagatorConfig(), online)
    assert len(offline) == n
    for t in range(10):
        # ... offline recovers its mask (MOS) while MOS-I keeps it gated as static (the
        # symmetric offline smoothing anticipates the motion onset on frames 8-9).
        assert full_id_at(offline[t], a.pos[t]) == 2, t
        obj = offline[t].get(2)
        assert obj is not None
        if t < 8:
            assert id_at(offline[t], a.pos[t]) == 0 and not obj.moving, t
        iou = (obj.mask & disc(*a.pos[t])).sum() / (obj.mask | disc(*a.pos[t])).sum()
        assert iou > 0.95
    for t in range(11, n):
        assert id_at(offline[t], a.pos[t]) == 2 and id_at(offline[t], b.pos[t]) == 1
    for t in range(n):
        assert full_id_at(offline[t], b.pos[t]) == 1


def test_offline_drops_rarely_moving_objects_and_anchor_modes():
    n = 80
    b = trajectory(n, (15, 10), (0, 1), [True] * n)
    props = proposals_for([b], n)
    online = run_online(props, MaskIoUTracker())
    off = offline_propagate(props, MaskIoUTracker, None, online)
    assert all(f.get(1) is not None and f.get(1).moving for f in off[1:])
    # Same track, but the proposer says it moves on frame 0 only: with the symmetric smoothing
    # it is moving on frames 0-1, 2/80 < 3 %: dropped from both outputs.
    still = [FrameProposals(p.masks, np.full(p.num, 0.05), p.iou_pred) for p in props]
    still[0] = props[0]
    off2 = offline_propagate(still, MaskIoUTracker, PropagatorConfig(), online)
    assert all(not f.objects and f.full_instance_map.max() == 0 for f in off2)
    off3 = offline_propagate(props, MaskIoUTracker, PropagatorConfig(official_compat=True), online)
    assert all(full_id_at(f, b.pos[f.frame_idx]) == 1 for f in off3)


def test_occlusion_keeps_id_with_velocity_and_regains_new_id_without():
    n = 24
    a = trajectory(n, (30, 10), (0, 2), [True] * n)
    occluded = Obj([p if not 8 <= t <= 12 else None for t, p in enumerate(a.pos)], a.moving)
    props = proposals_for([occluded], n)
    res = run_online(props, MaskIoUTracker())
    # Constant-velocity carry puts the mask where the disc re-appears: same id, and it is
    # static (no moving proposal on it) only while hidden.
    assert {o.obj_id for f in res for o in f.objects} == {1}
    assert not any(res[t].get(1).moving for t in (10, 11, 12))
    assert all(id_at(res[t], a.pos[t]) == 1 for t in range(14, n))
    # Without the velocity model the carried mask stays at the occlusion point; the
    # re-appearing disc does not overlap it (precision < 0.3) and becomes a new object id 2.
    res2 = run_online(props, MaskIoUTracker(use_velocity=False))
    assert id_at(res2[20], a.pos[20]) == 2
    assert res2[20].get(1) is not None and not res2[20].get(1).moving


def test_max_objects_cap_and_release():
    n = 4
    objs = [
        trajectory(n, (10 + 20 * (i // 4), 10 + 22 * (i % 4)), (0, 1), [True] * n)
        for i in range(12)
    ]
    props = proposals_for(objs, n)
    res = run_online(props, MaskIoUTracker())
    assert sorted(o.obj_id for o in res[-1].objects) == list(range(1, 11))
    res3 = run_online(props, MaskIoUTracker(), PropagatorConfig(max_objects=3))
    assert sorted(o.obj_id for o in res3[-1].objects) == [1, 2, 3]
    # Opt-in release of lost tracks frees a place; the new object gets a fresh id (4).
    m = 12
    first = trajectory(m, (20, 10), (0, 2), [True] * m)
    first.pos[3:] = [None] * (m - 3)
    second = trajectory(m, (45, 60), (0, 1), [True] * m)
    second.pos[:8] = [None] * 8
    cfg = PropagatorConfig(max_objects=1, release_lost_after=2)
    prop = OnlinePropagator(MaskIoUTracker(use_velocity=False), cfg)
    out = [prop.step(t, p, None) for t, p in enumerate(proposals_for([first, second], m))]
    # The carried mask of a lost object stays non-empty with the weight-free tracker, so
    # release needs an empty mask: emulate SAM2's "object gone" by an empty tracker output.
    assert [o.obj_id for o in out[-1].objects] == [1]
    prop2 = OnlinePropagator(_VanishingTracker(), cfg)
    out2 = [prop2.step(t, p, p) for t, p in enumerate(proposals_for([first, second], m))]
    assert [o.obj_id for o in out2[-1].objects] == [2]
    assert id_at(out2[-1], second.pos[-1]) == 2


class _VanishingTracker(MaskIoUTracker):
    """MaskIoUTracker whose coasting tracks are empty (like SAM2 on a vanished object)."""

    def track(self, frame_idx, frame_input, reverse=False):
        out = super().track(frame_idx, frame_input, reverse)
        return {
            s: (o if o.iou >= self.snap_iou else TrackOutput(np.zeros_like(o.mask), o.iou))
            for s, o in out.items()
        }


def test_determinism():
    n = 20
    objs = [
        trajectory(n, (15, 10), (0, 2), [True] * n),
        trajectory(n, (45, 80), (0, -2), [t < 12 for t in range(n)]),
        trajectory(n, (30, 40), (1, 1), [t >= 5 for t in range(n)]),
    ]
    props = proposals_for(objs, n)
    runs = []
    for _ in range(2):
        on = run_online(props, MaskIoUTracker())
        off = offline_propagate(props, MaskIoUTracker, None, on)
        runs.append((on, off))
    for (on1, off1), (on2, off2) in [(runs[0], runs[1])]:
        for f1, f2 in zip(on1 + off1, on2 + off2):
            assert np.array_equal(f1.instance_map, f2.instance_map)
            assert np.array_equal(f1.full_instance_map, f2.full_instance_map)
            assert [(o.obj_id, o.moving, o.iou, o.bbox) for o in f1.objects] == [
                (o.obj_id, o.moving, o.iou, o.bbox) for o in f2.objects
            ]


# ------------------------------------------------------------------------------------------
# SAM2 streaming tracker (random-initialised hiera_t)
# ------------------------------------------------------------------------------------------

# The model runs at image_size 256 instead of 1024: on 2 CPU cores the memory attention over
# 64x64 tokens costs ~15 s per object-frame, over 16x16 tokens ~0.1 s. Nothing in the tracker
# depends on the resolution (it reads `model.image_size`).
SAM_SIZE = 256


@pytest.fixture(scope="module")
def sam2_predictor():
    torch = pytest.importorskip("torch")
    build = pytest.importorskip("sam2.build_sam")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build.build_sam2_video_predictor(
            "configs/sam2.1/sam2.1_hiera_t.yaml",
            None,
            device="cpu",
            hydra_overrides_extra=[f"++model.image_size={SAM_SIZE}"],
        )
    return model


def _write_frames(tmp_path, n: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :w]
    for t in range(n):
        img = (rng.random((h, w, 3)) * 60).astype(np.uint8)
        img[(yy - 20) ** 2 + (xx - 15 - 4 * t) ** 2 < 64] = (200, 50, 50)
        cv2.imwrite(str(tmp_path / f"{t}.jpg"), img)
    m0 = (yy - 20) ** 2 + (xx - 15) ** 2 < 64
    m1 = np.zeros((h, w), bool)
    m1[30:40, 40:55] = True
    return m0, m1


def test_sam2_tracker_equals_video_predictor(sam2_predictor, tmp_path):
    _check_sam2_equality(sam2_predictor, tmp_path)


@pytest.mark.slow
def test_sam2_tracker_equals_video_predictor_1024(tmp_path):
    """The same check at SAM2's native 1024 px (minutes on 2 CPU cores)."""
    torch = pytest.importorskip("torch")
    build = pytest.importorskip("sam2.build_sam")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = build.build_sam2_video_predictor(
            "configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu"
        )
    _check_sam2_equality(pred, tmp_path)


def _check_sam2_equality(pred, tmp_path) -> None:
    from gmos_core.propagation import Sam2Tracker

    n, h, w = 4, 48, 64
    m0, m1 = _write_frames(tmp_path, n, h, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = pred.init_state(str(tmp_path))
        # Reference, prompted like the online propagator: two objects on frame 0; on frame 1
        # a correction of object 0 (a tracked frame -> non-conditioning) and a new object 2
        # (-> conditioning frame), then the generator restarts on frame 2.
        ref: dict[int, dict[int, np.ndarray]] = {}
        _, ids, lg = pred.add_new_mask(state, 0, 0, m0)
        _, ids, lg = pred.add_new_mask(state, 0, 1, m1)
        ref[0] = {i: lg[k, 0].numpy().copy() for k, i in enumerate(ids)}
        for t, ids, lg in pred.propagate_in_video(state, start_frame_idx=0):
            ref[t] = {i: lg[k, 0].numpy().copy() for k, i in enumerate(ids)}
            if t == 1:
                break
        # Each add_new_mask returns a consolidated view; take the prompted object's row from
        # its own call (a later call with another is_cond would show the pre-prompt mask).
        _, ids, lg = pred.add_new_mask(state, 1, 0, m0)
        ref[1][0] = lg[ids.index(0), 0].numpy().copy()
        _, ids, lg = pred.add_new_mask(state, 1, 2, m1)
        ref[1][2] = lg[ids.index(2), 0].numpy().copy()
        for t, ids, lg in pred.propagate_in_video(state, start_frame_idx=2):
            ref[t] = {i: lg[k, 0].numpy().copy() for k, i in enumerate(ids)}
    images = state["images"]  # the predictor's own resized, normalised frames

    trk = Sam2Tracker(pred, (h, w), num_frames=n)
    assert trk.track(0, images[0]) == {}
    mine: dict[int, dict[int, np.ndarray]] = {0: {}}
    o0 = trk.add_mask(0, 0, m0, images[0])
    mine[0][0] = trk.last_logits[0].copy()
    trk.add_mask(0, 1, m1, images[0])
    mine[0][1] = trk.last_logits[1].copy()
    assert o0.iou == 1.0 and o0.mask.shape == (h, w) and o0.mask.dtype == bool
    for t in range(1, n):
        outs = trk.track(t, images[t])
        mine[t] = {s: trk.last_logits[s].copy() for s in outs}
        for o in outs.values():
            assert 0.0 <= o.iou <= 1.0
        if t == 1:
            trk.add_mask(1, 0, m0)  # features of the current frame are cached
            mine[1][0] = trk.last_logits[0].copy()
            trk.add_mask(1, 2, m1)
            mine[1][2] = trk.last_logits[2].copy()
    assert trk.memory_frames(0)[0] == [0] and trk.memory_frames(2)[0] == [1]
    assert 1 in trk.memory_frames(0)[1]  # the correction replaced frame 1's memory
    for t in range(n):
        assert sorted(mine[t]) == sorted(ref[t]), t
        for i in ref[t]:
            np.testing.assert_allclose(mine[t][i], ref[t][i], rtol=0, atol=1e-5, err_msg=f"{t}/{i}")


def test_sam2_tracker_memory_is_bounded_and_exact(sam2_predictor):
    import torch

    from gmos_core.propagation import Sam2Tracker

    pred = sam2_predictor
    n, h, w = 20, 32, 32
    torch.manual_seed(1)
    with torch.inference_mode():
        backbone_out = pred.forward_image(torch.randn(1, 3, SAM_SIZE, SAM_SIZE))
    before = [x.clone() for x in backbone_out["backbone_fpn"]]
    mask = np.zeros((h, w), bool)
    mask[8:20, 10:22] = True
    bounded = Sam2Tracker(pred, (h, w))
    full = Sam2Tracker(pred, (h, w), bounded_memory=False)
    for trk in (bounded, full):
        trk.track(0, backbone_out)
        trk.add_mask(0, 0, mask, backbone_out)
    for t in range(1, n):
        # The proposer's precomputed SAM2 features are fed directly (same for every frame).
        a = bounded.track(t, backbone_out)
        la = bounded.last_logits[0].copy()
        b = full.track(t, backbone_out)
        np.testing.assert_array_equal(la, full.last_logits[0])
        assert a[0].iou == b[0].iou
    cond, with_mem, kept = bounded.memory_frames(0)
    assert cond == [0]
    # num_maskmem = 7 frames with mask memory, 16 with object pointers (all SAM2 reads).
    assert len(with_mem) == bounded.mem_window == 7
    assert len(kept) == bounded.ptr_window == 16 and max(kept) == n - 1
    assert len(full.memory_frames(0)[2]) == n - 1
    for x, y in zip(before, backbone_out["backbone_fpn"]):
        assert torch.equal(x, y)  # the caller's features are not mutated


def test_sam2_tracker_in_online_propagator(sam2_predictor):
    import torch

    from gmos_core.propagation import Sam2Tracker

    pred = sam2_predictor
    n = 3
    a = trajectory(n, (30, 20), (0, 3), [True] * n)
    props = proposals_for([a], n)
    torch.manual_seed(2)
    frames = [torch.randn(3, SAM_SIZE, SAM_SIZE) for _ in range(n)]
    prop = OnlinePropagator(Sam2Tracker(pred, (H, W)), PropagatorConfig())
    out = [prop.step(t, props[t], frames[t], stamp_ns=1000 * t) for t in range(n)]
    assert [f.stamp_ns for f in out] == [0, 1000, 2000]
    assert [o.obj_id for o in out[0].objects] == [1]
    # The prompt frame returns the prompt mask itself (SAM2 mask-as-output, through the
    # model's 1/4-resolution logits), IoU 1.
    m, d = out[0].get(1).mask, disc(*a.pos[0])
    assert (m & d).sum() / (m | d).sum() > 0.8 and out[0].get(1).iou == 1.0
    for f in out:
        assert f.instance_map.shape == (H, W) and f.instance_map.dtype == np.uint16
        for o in f.objects:
            assert o.mask.shape == (H, W) and 0.0 <= o.iou <= 1.0


# ---------------------------------------------------------------- exact fast paths (speed-ups)


def _dense_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The former dense formulation: float32 (N, HW) @ (HW, M)."""
    a2 = a.reshape(a.shape[0], -1).astype(np.float32)
    b2 = b.reshape(b.shape[0], -1).astype(np.float32)
    inter = a2 @ b2.T
    union = a2.sum(1)[:, None] + b2.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-6), 1.0).astype(np.float64)


def test_box_based_counts_and_iou_equal_the_dense_formulation_bit_for_bit():
    from gmos_core.propagation.trackers import intersection_counts, pairwise_iou

    rng = np.random.default_rng(7)
    for trial in range(150):
        h, w = rng.integers(1, 40, 2)
        n, m = rng.integers(1, 6, 2)
        a = rng.random((n, h, w)) < rng.random()
        b = rng.random((m, h, w)) < rng.random()
        if trial % 3 == 0:
            a[0] = False  # empty masks: IoU 1 with another empty one, 0 otherwise
        if trial % 4 == 0:
            b[:, : h // 2] = False  # boxes that miss each other
        dense = np.einsum("nhw,mhw->nm", a.astype(np.int64), b.astype(np.int64))
        assert np.array_equal(intersection_counts(a, b), dense)
        assert np.array_equal(pairwise_iou(a, b), _dense_iou(a, b))


def test_fast_motion_signals_and_max_precision_equal_the_pairwise_loop():
    from gmos_core.propagation.propagator import (
        _motion_signals,
        mask_precision,
        max_precision,
        resolve_overlaps,
    )
    from gmos_core.propagation.trackers import _centroid

    rng = np.random.default_rng(11)
    cfg = PropagatorConfig()
    for trial in range(40):
        h, w = 24, 31
        n, k = int(rng.integers(1, 7)), int(rng.integers(0, 6))
        masks = [rng.random((h, w)) < 0.3 for _ in range(n)]
        if trial % 2 == 0:
            masks[0][:] = False  # an empty track
        ids = sorted(rng.choice(np.arange(1, 50), n, replace=False).tolist())
        excl, id_map = resolve_overlaps(ids, masks, [int(x) for x in rng.integers(0, 3, n)], (h, w))
        props = FrameProposals(
            masks=rng.random((k, h, w)) < 0.4,
            motion_prob=rng.random(k).astype(np.float32),
            iou_pred=np.ones(k, np.float32),
        )
        slow = _motion_signals(excl, props, cfg)
        fast = _motion_signals(excl, props, cfg, id_map, ids)
        assert np.array_equal(slow[0], fast[0]) and np.array_equal(slow[1], fast[1])
        for p in props.masks:
            want = max((mask_precision(p, m) for m in masks), default=0.0)
            assert max_precision(p, masks) == want
        for m in masks:
            ys, xs = np.nonzero(m)
            c = _centroid(m)
            assert (c is None) == (ys.size == 0)
            if c is not None:
                assert c[0] == ys.mean() and c[1] == xs.mean()
