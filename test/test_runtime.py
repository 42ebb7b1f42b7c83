"""The runtime wiring: StreamingSegmenter + OnlinePropagator (MaskIoUTracker) on scripted
proposals, proposer stride carry, the offline second pass, and model loading rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from gmos_core.errors import ModelSetupError
from gmos_core.streaming import ProposalPrediction, StreamingSegmenter
from gmos_core.streaming.build import (
    PropagatorTracking,
    RuntimeSettings,
    build_segmenter,
    load_frame_model,
)

H, W = 48, 64
MS = 1_000_000


def disc(cy: float, cx: float, r: float = 6) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


class ScriptedModel:
    """A disc moving right 2 px per frame, moving in frames [0, 9] and [16, 25], static in
    between; the proposer sees it (with the motion probability of the schedule) every frame."""

    def __init__(self) -> None:
        self.frame_of: dict[int, int] = {}

    def geometry_features(self, frame_rgb: np.ndarray) -> Any:
        return int(frame_rgb[0, 0, 0])

    def segmentation_features(self, frame_rgb: np.ndarray) -> Any:
        return int(frame_rgb[0, 0, 0])

    @staticmethod
    def moving(t: int) -> bool:
        return t <= 9 or 16 <= t <= 25

    @staticmethod
    def position(t: int) -> float:
        moved = sum(1 for k in range(t) if ScriptedModel.moving(k))
        return 10 + 1.5 * moved

    def predict(
        self, geometry: Sequence[Any], segmentation: Any, out_hw: tuple[int, int]
    ) -> ProposalPrediction:
        t = int(segmentation)
        m = disc(24, self.position(t))[None]
        prob = np.array([0.95 if self.moving(t) else 0.05], np.float32)
        return ProposalPrediction(m, prob, np.array([0.9], np.float32))


def frames(n: int) -> list[np.ndarray]:
    out = []
    for t in range(n):
        f = np.zeros((H, W, 3), np.uint8)
        f[..., 0] = t
        out.append(f)
    return out


def run(seg: StreamingSegmenter, n: int) -> list:
    res = []
    for t, f in enumerate(frames(n)):
        res += seg.step(f, t * 100 * MS)
    return res + seg.flush()


def settings(**kw: Any) -> RuntimeSettings:
    return RuntimeSettings(variant="gmos_online", span_s=0.4, **kw)


def test_online_runtime_keeps_the_id_through_a_rest_and_labels_motion() -> None:
    seg = build_segmenter(settings(), model=ScriptedModel())  # type: ignore[arg-type]
    res = run(seg, 30)
    assert [r.frame_index for r in res] == list(range(30))
    ids = {o.obj_id for r in res for o in r.objects}
    assert ids == {1}, "the disc keeps one persistent id while it rests"
    moving = [bool(r.objects and r.objects[0].moving) for r in res]
    assert all(moving[2:10]) and all(moving[19:26])
    assert not any(moving[13:16])  # rest frames (the gate lags by up to two frames)
    # dynamic mask only while moving; instance map always holds the tracked disc
    assert res[14].instance_ids.any() and not res[14].dynamic_mask.any()
    assert res[5].dynamic_mask.sum() == res[5].objects[0].area


def test_proposer_stride_carries_tracks_between_proposer_frames() -> None:
    model = ScriptedModel()
    seg = build_segmenter(settings(proposer_stride=3), model=model)  # type: ignore[arg-type]
    res = run(seg, 12)
    assert seg.stats.proposer_runs == 4
    assert all(r.objects and r.objects[0].obj_id == 1 for r in res[1:])
    # a carried frame keeps the last motion state of its object
    assert res[4].objects[0].moving == res[3].objects[0].moving


def test_offline_pass_recovers_every_frame_of_the_track() -> None:
    seg = build_segmenter(settings(), model=ScriptedModel(), offline=True)  # type: ignore[arg-type]
    res = run(seg, 30)
    assert isinstance(seg.tracking, PropagatorTracking)
    full = seg.tracking.offline_results()
    assert len(full) == len(res) == 30
    assert all((m == 1).any() for m in full)  # the disc at every frame, one id


def test_live_stream_state_does_not_grow() -> None:
    seg = build_segmenter(settings(), model=ScriptedModel())  # type: ignore[arg-type]
    run(seg, 40)
    assert isinstance(seg.tracking, PropagatorTracking)
    assert seg.tracking.propagator.history == [] and seg.tracking._proposals is None


def test_offline_pass_keeps_its_frames_on_disk_not_in_ram() -> None:
    """The second pass's inputs are spilled to files and give the in-RAM pass's output."""
    from gmos_core.propagation import MaskIoUTracker, offline_propagate

    seg = build_segmenter(settings(), model=ScriptedModel(), offline=True)  # type: ignore[arg-type]
    run(seg, 20)
    tr = seg.tracking
    assert isinstance(tr, PropagatorTracking)
    assert tr.propagator.history == []  # nothing per frame held by the propagator
    folder = tr._spill.path
    assert len(list((folder / "proposals").glob("*.npz"))) == 20
    props = [tr._proposals[t] for t in range(20)]
    online = [tr._history[t] for t in range(20)]
    ref = offline_propagate(props, MaskIoUTracker, tr.config, online)
    got = list(tr.iter_offline_results())
    assert len(got) == 20 and any((m > 0).any() for m in got)
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b.full_instance_map)
    assert not folder.exists()  # files deleted when the pass ends


def test_missing_weights_is_a_clear_error(tmp_path, monkeypatch) -> None:
    import gmos_core.streaming.build as rt

    monkeypatch.setattr(rt, "DEFAULT_BUNDLES", {k: tmp_path / "none" for k in rt.DEFAULT_BUNDLES})
    with pytest.raises(ModelSetupError, match="no weights"):
        load_frame_model(RuntimeSettings(variant="gmos_s"))
    with pytest.raises(ModelSetupError, match="variant"):
        load_frame_model(RuntimeSettings(variant="other"))  # type: ignore[arg-type]


def test_sam2_tracker_runs_on_the_proposers_cached_sam2_features() -> None:
    """tracker='sam2': the SAM2 tracker consumes the same cached SAM2 features the proposer
    used (each frame encoded once) and carries the scripted object with a persistent id.
    Micro SAM2 with untrained weights: this checks the wiring, not the masks' quality."""
    from gmos_core.models.build import build_frame_model

    micro = build_frame_model("micro", "gmos", seed=0).frame_model(keep_sam2_backbone=True)

    class Sam2Scripted(ScriptedModel):
        sam_model = micro.sam_model  # what build_segmenter hands to the SAM2 tracker

        def segmentation_features(self, frame_rgb: np.ndarray) -> Any:
            from types import SimpleNamespace

            self.encodes = getattr(self, "encodes", 0) + 1
            feats = micro.segmentation_features(frame_rgb)
            assert feats.backbone_out is not None
            return SimpleNamespace(backbone_out=feats.backbone_out, frame_t=int(frame_rgb[0, 0, 0]))

        def predict(self, geometry, segmentation, out_hw):
            return super().predict(geometry, segmentation.frame_t, out_hw)

    model = Sam2Scripted()
    seg = build_segmenter(settings(tracker="sam2"), model=model)  # type: ignore[arg-type]
    res = run(seg, 6)
    assert model.encodes == 6 and seg.stats.segmentation_encodes == 6
    assert [r.frame_index for r in res] == list(range(6))
    assert res[0].objects and res[0].objects[0].obj_id == 1  # seeded from the proposal
    assert all(r.instance_ids.shape == (H, W) for r in res)
    assert {o.obj_id for r in res for o in r.objects} <= set(range(1, 11))


def test_live_stream_keeps_tracking_new_objects_after_max_objects_have_left() -> None:
    """Objects keep entering and leaving; a live stream must release lost tracks, or the
    10-object registry fills up and nothing new is tracked again."""
    from training.bench_memory import ScriptedProposer

    seg = build_segmenter(RuntimeSettings(variant="gmos_online"), model=ScriptedProposer())
    f = np.zeros((128, 128, 3), np.uint8)
    res = []
    for i in range(700):
        res += seg.step(f, i * 100 * MS)
    late = [r for r in res if r.frame_index >= 600]
    assert all(r.objects for r in late), "objects are still tracked late in the stream"
    assert max(o.obj_id for r in late for o in r.objects) > 10  # new ids keep coming
    assert len(seg.tracking.propagator.registry.ids) <= 10


def test_precision_runs_the_network_under_autocast_and_refuses_what_cannot_work(
    tiny_model,
) -> None:
    """bf16 on the CPU (tiny model: bf16 matmuls are ~80x slower than fp32 on this CPU)
    changes the numbers slightly, not the plumbing; fp16 without CUDA and reduced precision
    with the SAM2 tracker are refused by name."""
    import torch

    from gmos_core.errors import ModelSetupError
    from gmos_core.streaming.build import RuntimeSettings, load_frame_model

    frames = [np.random.default_rng(i).integers(0, 255, (40, 48, 3), np.uint8) for i in range(5)]
    out = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = load_frame_model(
            RuntimeSettings(
                variant="gmos_s",
                model_config=tiny_model,
                allow_random_weights=True,
                precision=precision,
            )
        )
        assert model.backend.precision == precision
        geo = [model.geometry_features(f) for f in frames]
        seg = model.segmentation_features(frames[2])
        assert geo[0].tokens.dtype == np.float32 and seg.bottleneck.dtype == np.float32
        out[precision] = model.head_outputs(geo, seg)["fg_mask"]
        assert out[precision].dtype == np.float32
    diff = float(np.abs(out["bf16"] - out["fp32"]).max())
    assert 0.0 < diff < 0.1 * (1.0 + float(np.abs(out["fp32"]).max()))
    base = dict(variant="gmos_s", model_config=tiny_model, allow_random_weights=True)
    with pytest.raises(ModelSetupError, match="fp16.*CUDA"):
        load_frame_model(RuntimeSettings(**base, precision="fp16"))
    with pytest.raises(ModelSetupError, match="precision 'int4'"):
        load_frame_model(RuntimeSettings(**base, precision="int4"))
    with pytest.raises(ModelSetupError, match="SAM2 tracker needs fp32"):
        load_frame_model(
            RuntimeSettings(**{**base, "variant": "gmos_online"}, precision="bf16", tracker="sam2")
        )


def test_offline_pass_with_proposer_stride_spills_the_carried_frames() -> None:
    """A carried frame has no proposals: its empty set (K = 0) must spill and read back."""
    seg = build_segmenter(
        settings(proposer_stride=3),
        model=ScriptedModel(),  # type: ignore[arg-type]
        offline=True,
    )
    res = run(seg, 12)
    tr = seg.tracking
    assert isinstance(tr, PropagatorTracking)
    assert tr._proposals[4].num == 0 and tr._proposals[3].num == 1
    # the carried frame's online record is the frame the segmenter published
    np.testing.assert_array_equal(tr._history[4].full_instance_map, res[4].instance_ids)
    full = tr.offline_results()
    assert len(full) == 12 and all((m == 1).any() for m in full[1:])
