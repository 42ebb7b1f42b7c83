"""The flow motion decision: flow-geometry planes, the net, its decision, its training."""

from __future__ import annotations

import csv
import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import torch

from gmos_core.geometry.flow_features import (
    NUM_FEATURES,
    PLANES_PER_NEIGHBOUR,
    FlowPairCache,
    feature_size,
    flow_grey,
    pair_planes,
    window_planes,
)
from gmos_core.models.flow_decision import (
    DEFAULT_FLOW_MOTION_WEIGHTS,
    FlowMotionDecision,
    clamped_window,
    clip_motion_maps,
    load_flow_motion_net,
)
from gmos_core.models.flow_motion_net import FlowMotionNet
from gmos_core.models.prediction import ProposalPrediction
from gmos_core.streaming.build import (
    DEFAULT_BUNDLES,
    RuntimeSettings,
    build_segmenter,
    resolve_motion_decision,
)
from training.train_flow_motion import (
    FlowMotionConfig,
    FlowPlaneDataset,
    build_cache,
    export_net,
    flow_config_from_dict,
    train_flow_motion,
)
from training.trainer import OptimConfig


def _texture(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (h // 4, w // 4)).astype(np.float32)
    return cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)


def _shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, img.shape[1::-1], borderMode=cv2.BORDER_REFLECT)


def test_a_patch_moving_against_the_camera_pan_leaves_homography_and_epipolar_error():
    bg = _texture()
    patch = _texture(24, 24, seed=1)
    g0 = bg.copy()
    g0[36:60, 52:76] = patch
    g1 = _shift(bg, 2.0, 0.0)  # the camera pans: the whole background moves 2 px right
    g1[36:60, 50:74] = patch  # the patch moves 2 px left instead
    p = pair_planes(g0, g1)
    assert p.shape == (PLANES_PER_NEIGHBOUR, *g0.shape) and p.dtype == np.float32
    valid = p[5] > 0
    assert valid.mean() > 0.6
    inner_bg = valid.copy()
    inner_bg[30:66, 44:84] = False
    inner_patch = valid[40:56, 56:72]
    flow_x = p[0] * 8
    assert np.median(flow_x[inner_bg]) == pytest.approx(2.0, abs=0.3)
    assert np.median(flow_x[40:56, 56:72][inner_patch]) == pytest.approx(-2.0, abs=0.5)
    h_err = np.hypot(p[2], p[3]) * 4
    assert np.median(h_err[inner_bg]) < 0.3
    assert np.median(h_err[40:56, 56:72][inner_patch]) > 3.0
    # Every plane is zero where the flow is not valid.
    assert np.all(p[:, ~valid] == 0)


def test_window_planes_shape_and_no_evidence_for_a_repeated_centre():
    frames = [_shift(_texture(), 1.5 * k, 0.0) for k in range(5)]
    x = window_planes(frames, 2)
    assert x.shape == (NUM_FEATURES, *feature_size(96, 128)) and x.dtype == np.float32
    assert feature_size(96, 128) == (48, 64) and feature_size(480, 640) == (48, 64)
    assert feature_size(128, 128) == (64, 64)
    # The stream's first frame: its window repeats it on the left (the same array).
    window, center = clamped_window(frames, 0)
    assert center == 2 and window[0] is frames[0] and window[1] is frames[0]
    x0 = window_planes(window, center)
    assert np.all(x0[: 2 * PLANES_PER_NEIGHBOUR] == 0)  # neighbours −2, −1: none
    assert x0[2 * PLANES_PER_NEIGHBOUR + 5].mean() > 0.5  # +1 is there
    with pytest.raises(ValueError, match="outside"):
        window_planes(frames, 5)
    with pytest.raises(ValueError, match="outside"):
        clamped_window(frames, 7)
    with pytest.raises(ValueError, match="positive"):
        feature_size(0, 10)


def test_flow_cache_gives_the_same_planes_computing_each_pair_once_and_stays_bounded():
    bg = _texture()
    patch = _texture(24, 24, seed=1)
    frames = []
    for k in range(9):  # a pan, and a patch moving the other way
        g = _shift(bg, 1.5 * k, 0.0)
        g[30:54, 60 - 2 * k : 84 - 2 * k] = patch
        frames.append(g)
    flows = FlowPairCache(capacity=12)
    asked = 0
    for t in range(len(frames)):
        window, center = clamped_window(frames, t)
        cached = window_planes(window, center, flows)
        assert np.array_equal(cached, window_planes(window, center))
        assert len(flows) <= 12
        asked += 2 * sum(w is not window[center] for w in window)
    # Each unordered pair at offsets 1 and 2 gives two flows, each computed once: 2 · (8 + 7)
    # of the 64 asked for (the clamped windows at the ends ask for some pairs twice).
    assert (flows.misses, flows.hits) == (30, asked - 30) and asked == 64
    # Pairs are matched by the arrays themselves: an equal copy is another frame.
    a, b = frames[0], frames[1]
    f_ab = flows.flow(a, b)
    assert flows.flow(a, b) is f_ab and not f_ab.flags.writeable
    assert flows.flow(a.copy(), b) is not f_ab
    with pytest.raises(ValueError, match="capacity"):
        FlowPairCache(capacity=0)


def test_neighbour_pairs_on_threads_give_the_same_planes_and_evidence():
    frames = [_shift(_texture(), 1.5 * k, 0.5 * k) for k in range(5)]
    with ThreadPoolExecutor(4) as pool:
        for t in (0, 2, 4):
            window, center = clamped_window(frames, t)
            assert np.array_equal(
                window_planes(window, center, FlowPairCache(), pool), window_planes(window, center)
            )
    net = FlowMotionNet(width=8)
    one, four = FlowMotionDecision(net=net), FlowMotionDecision(net=net, threads=4)
    assert one.pool is None and four.pool is not None
    window, center = clamped_window(frames, 2)
    assert np.array_equal(
        four.evidence(window, [None] * 5, center), one.evidence(window, [None] * 5, center)
    )
    with pytest.raises(ValueError, match="threads"):
        FlowMotionDecision(net=net, threads=0)


def test_flow_grey_brings_the_long_side_to_the_working_size():
    assert flow_grey(np.zeros((480, 640, 3), np.uint8)).shape == (96, 128)
    assert flow_grey(np.zeros((128, 128, 3), np.uint8)).shape == (128, 128)
    with pytest.raises(ValueError, match="uint8"):
        flow_grey(np.zeros((8, 8), np.uint8))


def test_net_shapes_and_refusals():
    net = FlowMotionNet(width=8)
    assert net(torch.zeros(2, NUM_FEATURES, 16, 24)).shape == (2, 16, 24)
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.zeros(1, NUM_FEATURES, 12, 16))
    with pytest.raises(ValueError, match="multiple of 8"):
        FlowMotionNet(width=12)


def test_exported_weights_load_and_foreign_files_are_refused(tmp_path):
    net = FlowMotionNet(width=8)
    path = export_net(net, tmp_path / "net.safetensors", step=3)
    back = load_flow_motion_net(path)
    x = torch.randn(1, NUM_FEATURES, 16, 16)
    with torch.no_grad():  # float16 storage: equal to within its precision
        assert torch.allclose(back(x), net.eval()(x), atol=2e-2)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"), metadata={"format": "x"})
    with pytest.raises(ValueError, match="format"):
        load_flow_motion_net(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError):
        load_flow_motion_net(tmp_path / "none.safetensors")


def test_decide_replaces_only_the_motion_probability_with_the_mean_under_each_mask():
    dec = FlowMotionDecision(net=FlowMotionNet(width=8))
    masks = np.zeros((3, 96, 128), bool)
    masks[0, :48] = True  # top half
    masks[1, 48:] = True  # bottom half
    evidence = np.zeros((48, 64), np.float32)
    evidence[24:] = 0.8  # the bottom half moves
    pred = ProposalPrediction(
        masks, np.full(3, 0.5, np.float32), np.array([0.1, 0.2, 0.3], np.float32)
    )
    out = dec.decide(pred, evidence)
    # (bilinear resizing blends the one row at the boundary)
    assert out.motion_prob[0] == pytest.approx(0.0, abs=0.01)
    assert out.motion_prob[1] == pytest.approx(0.8, abs=0.01)
    assert out.motion_prob[2] == 0.0  # an empty mask: no evidence, never moving
    assert out.masks is masks and np.array_equal(out.iou, pred.iou)
    frames = [_texture()] * 5
    assert dec.evidence(frames, [None] * 5, 2) is None  # one frame repeated: nothing to compare
    e = dec.evidence([_shift(frames[0], k, 0) for k in range(5)], [None] * 5, 2)
    assert e.shape == (48, 64) and np.all((e >= 0) & (e <= 1))


@pytest.mark.skipif(not DEFAULT_FLOW_MOTION_WEIGHTS.is_file(), reason="no shipped flow motion net")
def test_the_shipped_net_ranks_moving_objects_above_static_ones_better_than_the_homography():
    from training.probe_motion_cues import auroc, homography_cue
    from training.splits import SplitSpec, held_out_scenes

    dec = FlowMotionDecision()
    net_scores, hom_scores, moving = [], [], []
    scenes, _ = held_out_scenes(SplitSpec(num_seqs=6, seed=800_000))
    for s in scenes:
        for t, prob in clip_motion_maps(dec, s.frames, range(2, s.num_frames - 2, 4)):
            hom = homography_cue(s, t)
            for k, oid in enumerate(s.object_ids):
                m = s.instance_masks[t] == oid
                if m.sum() >= 20:
                    net_scores.append(prob[m].mean())
                    hom_scores.append(np.nanmean(hom[m]))
                    moving.append(bool(s.motion_state[t, k]))
    mv = np.array(moving)
    a_net = auroc(np.array(net_scores)[mv], np.array(net_scores)[~mv])
    a_hom = auroc(np.array(hom_scores)[mv], np.array(hom_scores)[~mv])
    assert a_net > 0.7 and a_net > a_hom + 0.03, (a_net, a_hom)


def _tiny_cfg(tmp_path, out: str, **kw) -> FlowMotionConfig:
    base = dict(
        max_steps=4, batch_size=2, threads=1, log_every=1, plot_every=100, ckpt_every=1,
        width=8, train_clips=2, chunk_clips=1, cache_dir=str(tmp_path / "cache"),
        val_clips=0, out_dir=str(tmp_path / out), resume_fp16="",
        optim=OptimConfig(lr=1e-3, warmup_fraction=0.25),
    )  # fmt: skip
    base.update(kw)
    return FlowMotionConfig(**base)


def _losses(path) -> list[float]:
    with (path / "log.csv").open() as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_training_in_two_chunks_equals_one_run_and_the_cache_is_reused(tmp_path):
    torch.set_num_threads(1)
    straight = train_flow_motion(_tiny_cfg(tmp_path, "a"))
    assert straight["step"] == 4
    chunks = sorted((tmp_path / "cache").glob("planes_*.npz"))
    assert len(chunks) == 2
    stamp = [c.stat().st_mtime_ns for c in chunks]
    cfg = _tiny_cfg(tmp_path, "b")
    first = train_flow_motion(dataclasses.replace(cfg, stop_at_step=2))
    assert first["step"] == 2 and first["stopped_early"]
    second = train_flow_motion(cfg)
    assert second["started_from"]["kind"] == "full" and second["step"] == 4
    assert [c.stat().st_mtime_ns for c in build_cache(cfg)] == stamp  # not rebuilt
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["net"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["net"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    # The exported net is what the decision loads.
    assert load_flow_motion_net(tmp_path / "b" / "flow_motion.safetensors").out.in_channels == 8
    # A fresh clone with the committed state of a finished run: nothing to train, no planes.
    done = train_flow_motion(
        _tiny_cfg(
            tmp_path,
            "c",
            cache_dir=str(tmp_path / "no_cache"),
            resume_fp16=str(tmp_path / "b" / "state_fp16.safetensors"),
        )
    )
    assert done["step"] == 4 and done["started_from"]["kind"] == "fp16"
    assert not (tmp_path / "no_cache").exists()


def test_mirrored_samples_negate_x_motion_and_the_x_coordinate(tmp_path):
    cfg = _tiny_cfg(tmp_path, "m", train_clips=1)
    ds = FlowPlaneDataset(build_cache(cfg))
    n = len(ds) // 2
    assert sorted(ds.order) == list(range(2 * n)) and list(ds.order[:8]) != list(range(8))
    where = {int(j): i for i, j in enumerate(ds.order)}  # item of each entry
    a, b = ds[where[3]], ds[where[3 + n]]
    assert torch.equal(b["target"], a["target"].flip(-1))
    assert torch.allclose(b["planes"][0], -a["planes"][0].flip(-1))  # flow x
    assert torch.allclose(b["planes"][1], a["planes"][1].flip(-1))  # flow y
    assert torch.allclose(b["planes"][4], a["planes"][4].flip(-1))  # Sampson distance
    assert torch.allclose(b["planes"][NUM_FEATURES - 2], -a["planes"][NUM_FEATURES - 2].flip(-1))


def test_training_seeds_may_not_reach_the_validation_clips():
    with pytest.raises(ValueError, match="validation"):
        flow_config_from_dict({"train_seed": 799_000, "train_clips": 240})
    with pytest.raises(ValueError, match="unknown"):
        flow_config_from_dict({"no_such_key": 1})


def test_the_calibration_sweep_computes_each_windows_evidence_once():
    from training.calibrate import _MemoDecision

    class Counting:
        calls = 0

        def grey(self, frame):
            return frame[..., 0].copy()

        def evidence(self, greys, sensors, center):
            Counting.calls += 1
            return np.full((4, 4), float(greys[center].mean()), np.float32)

        def decide(self, pred, evidence):
            return pred

    memo = _MemoDecision(Counting())
    frames = [np.full((8, 8, 3), k, np.uint8) for k in range(5)]
    for _ in range(3):  # three replays of one clip: new grey arrays, same content
        greys = [memo.grey(f) for f in frames]
        assert memo.evidence(greys, [None] * 5, 2)[0, 0] == 2.0
    other = [memo.grey(f + 1) for f in frames]
    assert memo.evidence(other, [None] * 5, 2)[0, 0] == 3.0
    assert Counting.calls == 2


def test_a_segmenter_with_the_flow_decision_takes_motion_from_the_net(tmp_path):
    from gmos_core.errors import ModelSetupError
    from gmos_core.streaming.build import RuntimeSettings, build_motion_decision, build_segmenter

    weights = export_net(FlowMotionNet(width=8), tmp_path / "net.safetensors", step=0)
    settings = RuntimeSettings(motion_decision="flow_motion", flow_motion_weights=str(weights))
    assert isinstance(build_motion_decision(settings), FlowMotionDecision)
    with pytest.raises(ModelSetupError, match="not found"):
        build_motion_decision(
            dataclasses.replace(settings, flow_motion_weights=str(tmp_path / "none"))
        )
    seg = build_segmenter(settings)
    decided = []
    decide = seg.motion_decision.decide

    def spy(pred, evidence):
        out = decide(pred, evidence)
        decided.append(out.motion_prob)
        return out

    seg.motion_decision.decide = spy
    frames = [_shift(np.dstack([_texture()] * 3), k, 0) for k in range(8)]
    results = []
    for k, f in enumerate(frames):
        results += seg.step(f, 10**8 * k)
    results += seg.flush()
    assert [r.stamp_ns for r in results] == [10**8 * k for k in range(8)]
    assert len(decided) == 8  # every frame's proposals were decided by the net
    assert all(np.all((p >= 0) & (p <= 1)) for p in decided)
    # One decision object shared between streams (calibration's memo): used as given.
    shared = FlowMotionDecision(net=FlowMotionNet(width=8))
    assert (
        build_segmenter(settings, model=seg.model, motion_decision=shared).motion_decision is shared
    )
    with pytest.raises(ValueError, match="'head'"):
        build_segmenter(RuntimeSettings(), model=seg.model, motion_decision=shared)


@pytest.mark.skipif(not DEFAULT_FLOW_MOTION_WEIGHTS.is_file(), reason="no shipped flow motion net")
def test_the_speed_benchmark_reports_every_part_per_input_size(tmp_path):
    import json

    from training.bench_flow_motion import main

    assert main(["--frames", "3", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "bench_flow_motion.json").read_text())
    assert [r["working"] for r in report["rows"]] == ["128x128", "128x96"]
    for r in report["rows"]:
        for part in ("grey_ms", "planes_uncached_ms", "planes_ms", "net_ms", "evidence_ms"):
            assert 0 < r[part]["p50"] <= r[part]["p95"]
    assert (tmp_path / "bench_flow_motion.png").stat().st_size > 0


def test_the_fusion_probe_keeps_a_track_once_it_moved_and_scores_in_range(tmp_path):
    from training.probe_gmos_s_fusion import gated, main

    # Two objects; the flow net fires on object 1 at frame 0 only, never on object 2.
    labels = np.zeros((3, 8, 8), np.uint8)
    labels[:, :4, :4] = 1
    labels[:, 4:, 4:] = 2
    flow = np.zeros((3, 8, 8), np.float32)
    flow[0, :4, :4] = 0.9
    now = gated(lambda k: labels[k], flow, 0.5, memory=False, link=False)
    kept = gated(lambda k: labels[k], flow, 0.5, memory=True, link=False)
    assert now[0].sum() == 16 and not now[1:].any()
    assert all(kept[k].sum() == 16 and kept[k][:4, :4].all() for k in range(3))

    assert main(["--out", str(tmp_path), "--num-seqs", "1"]) == 0
    report = json.loads((tmp_path / "results.json").read_text())
    assert set(report["best_mos_j"]) >= {"gmos_s", "flow>t", "exact_objects_memory"}
    values = [v for row in report["mos_j_by_threshold"].values() for v in row.values()]
    assert values and all(0.0 <= v <= 100.0 for v in values)
    assert list(report["mos_j_by_threshold"]["gmos_s"]) == [f"{report['gmos_s_fg_threshold']:g}"]
    assert (tmp_path / "results.png").stat().st_size > 0
    with pytest.raises(SystemExit):  # never tuned on the held-out split
        main(["--out", str(tmp_path), "--seed", "900000"])


@pytest.mark.skipif(
    not DEFAULT_BUNDLES["gmos_online"].is_file(), reason="no shipped micro Gmos bundle"
)
def test_auto_decision_is_the_flow_net_for_the_shipped_micro_gmos_only():
    shipped = DEFAULT_BUNDLES["gmos_online"]
    auto = RuntimeSettings(motion_decision="auto")
    assert resolve_motion_decision(auto).motion_decision == "flow_motion"
    named = dataclasses.replace(auto, bundle=str(shipped))  # the same file, named
    assert resolve_motion_decision(named).motion_decision == "flow_motion"
    for other in (
        dataclasses.replace(auto, bundle="my_model.safetensors"),
        dataclasses.replace(auto, head_checkpoint="gmos.pth"),
        dataclasses.replace(auto, variant="gmos_s"),
        dataclasses.replace(auto, variant="frame_diff"),
    ):
        assert resolve_motion_decision(other).motion_decision == "head"
    explicit = RuntimeSettings(motion_decision="head")
    assert resolve_motion_decision(explicit) is explicit
    # The segmenter built from "auto" runs the flow decision.
    seg = build_segmenter(auto)
    assert isinstance(seg.motion_decision, FlowMotionDecision)
