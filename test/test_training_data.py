"""Training windows: synthetic scenes on the fly and the Gmos-2K layout (with corrupt samples)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from gmos_core.data.palette import write_indexed_png
from gmos_core.data.time_anno import TimeAnnoRow, write_time_anno
from training.datasets import (
    Gmos2KDataConfig,
    Gmos2KWindowDataset,
    SyntheticDataConfig,
    SyntheticWindowDataset,
    WindowSpec,
    collate_windows,
    sample_stride,
)

SPEC = WindowSpec(pi3_pixel_limit=16384, sam_size=256, mask_size=64)


def _synth(**kw):
    base = dict(num_scenes=6, windows_per_scene=2, fps_choices=(10.0, 20.0), duration_s=1.2)
    return SyntheticWindowDataset(SyntheticDataConfig(**{**base, **kw}), SPEC)


def test_synthetic_items_shapes_and_determinism():
    a, b = _synth(), _synth()
    it = a[3]
    assert it["pi3"].shape == (5, 3, 126, 126)
    assert 0.0 <= float(it["pi3"].min()) and float(it["pi3"].max()) <= 1.0
    assert it["sam"].shape == (3, 256, 256)
    g = it["gt_masks"].shape[0]
    assert it["gt_masks"].shape == (g, 64, 64) and it["gt_motion"].shape == (g,)
    again = b[3]  # a fresh dataset, same item: same arrays (no hidden state)
    for k in ("pi3", "sam", "gt_masks", "gt_motion", "gt_fg"):
        assert torch.equal(it[k], again[k])
    assert not torch.equal(a[2]["sam"], a[4]["sam"])


def test_synthetic_targets_follow_motion_state():
    ds = _synth(num_scenes=12)
    seen_static = seen_moving = seen_still_px = False
    for i in range(0, 24, 3):
        it = ds[i]
        scene = ds.scene(i // 2)
        seed, t = it["key"].split("/")
        t = int(t[1:])
        dyn = np.flatnonzero(scene.object_is_dynamic)
        assert it["gt_masks"].shape[0] == len(dyn)  # every dynamic object is a target
        for j, k in enumerate(dyn):
            area = it["gt_masks"][j].sum().item()
            if not scene.motion_state[t, k]:
                assert area == 0 and it["gt_motion"][j] == 0  # static now: empty mask
                seen_static = True
            elif it["gt_motion"][j] == 1:
                assert area > 0
                seen_moving = True
        union = it["gt_masks"].amax(0) if len(dyn) else torch.zeros(64, 64)
        assert torch.equal(it["gt_fg"], union)
        # Dense pretraining target: the moving foreground of every window frame, middle = gt_fg.
        assert it["gt_fg_window"].shape == (5, 64, 64)
        assert torch.equal(it["gt_fg_window"][2], it["gt_fg"])
        # Hard negatives: the objects visible and NOT moving at the middle frame, exactly.
        still = [int(o) for o, mv in zip(scene.object_ids, scene.motion_state[t]) if not mv]
        lab = np.isin(scene.instance_masks[t], still).astype(np.float32)
        expect = (cv2.resize(lab, (64, 64), interpolation=cv2.INTER_AREA) >= 0.5).astype(np.float32)
        assert it["gt_static_window"].shape == (5, 64, 64)
        assert torch.equal(it["gt_static_window"][2], torch.from_numpy(expect))
        seen_still_px = seen_still_px or bool(expect.any())
    assert seen_static and seen_moving and seen_still_px


def test_window_length_sampled_in_paper_range():
    rng = np.random.default_rng(0)
    spans = [4 * sample_stride(rng, 100.0, SPEC) / 100.0 for _ in range(500)]
    assert min(spans) >= 0.16 - 0.0125 and max(spans) <= 1.0 + 0.0125
    assert max(spans) - min(spans) > 0.7  # the whole range is used
    # At 10 fps the shortest window is one frame per step (0.4 s), never a zero stride.
    assert all(sample_stride(rng, 10.0, SPEC) >= 1 for _ in range(100))


def test_collate():
    ds = _synth()
    batch = collate_windows([ds[0], ds[1], ds[2]])
    assert batch["pi3"].shape == (3, 5, 3, 126, 126)
    assert batch["sam"].shape == (3, 3, 256, 256) and batch["gt_fg"].shape == (3, 64, 64)
    assert len(batch["gt_masks"]) == 3 and batch["skipped"] == 0


def _write_gmos2k(root, corrupt: bool):
    rng = np.random.default_rng(0)
    rows = []
    for s, seq in enumerate(("seq_a", "seq_b")):
        img_dir = root / "JPEGImages" / "davis" / "train" / seq
        ann_dir = root / "annotations" / "davis" / "train" / seq
        img_dir.mkdir(parents=True)
        for t in range(8):
            img = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
            cv2.imwrite(str(img_dir / f"{t:05d}.jpg"), img)
            lab = np.zeros((40, 48), np.uint8)
            lab[5:20, 5:20] = 1
            lab[25:35, 30:45] = 2
            write_indexed_png(ann_dir / f"{t:05d}.png", lab)
        if corrupt and s == 1:
            (img_dir / "00003.jpg").write_bytes(b"not a jpeg")
            (ann_dir / "00004.png").write_bytes(b"\x89PNG broken")
        rows.append(
            TimeAnnoRow(seq, {1: [(0, 3)], 2: [(2, 7)]}, 8, 8, dataset="davis", split="train")
        )
    write_time_anno(root / "time_annotation.csv", rows)


def test_gmos2k_layout_targets(tmp_path):
    _write_gmos2k(tmp_path, corrupt=False)
    ds = Gmos2KWindowDataset(
        Gmos2KDataConfig(root=str(tmp_path), windows_per_sequence=6), SPEC, seed=0
    )
    assert len(ds) == 12
    for i in range(len(ds)):
        it = ds[i]
        t = int(it["key"].split("/")[1])
        assert it["pi3"].shape[0] == 5 and it["sam"].shape == (3, 256, 256)
        moving = [0 <= t <= 3, 2 <= t <= 7]
        assert it["gt_motion"].tolist() == [float(m) for m in moving]
        for j, m in enumerate(moving):
            assert (it["gt_masks"][j].sum() > 0) == m
    assert ds.num_skipped == 0


def test_gmos2k_corrupt_samples_skipped_and_counted(tmp_path):
    _write_gmos2k(tmp_path, corrupt=True)
    ds = Gmos2KWindowDataset(
        Gmos2KDataConfig(root=str(tmp_path), windows_per_sequence=6), SPEC, seed=0
    )
    skipped = 0
    for i in range(len(ds)):
        it = ds[i]
        skipped += it["skipped"]
        assert it["key"].startswith("seq_a") or it["skipped"] == 0
    assert skipped > 0 and ds.num_skipped == skipped


def test_gmos2k_all_corrupt_is_an_error(tmp_path):
    _write_gmos2k(tmp_path, corrupt=False)
    for p in (tmp_path / "JPEGImages").rglob("*.jpg"):
        p.write_bytes(b"junk")
    ds = Gmos2KWindowDataset(
        Gmos2KDataConfig(root=str(tmp_path), windows_per_sequence=2, max_skip=5), SPEC
    )
    with pytest.raises(ValueError, match="corrupt samples in a row"):
        ds[0]


def test_frame_differencing_and_instance_linking():
    from gmos_core.baselines_extra import FrameDifferencingBaseline, link_instances

    # A static textured background with one square moving right by 3 px per frame.
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 40, (48, 48, 3), dtype=np.uint8)
    frames = []
    for t in range(5):
        f = bg.copy()
        f[10:22, 5 + 3 * t : 17 + 3 * t] = 230
        frames.append(f)
    labels = FrameDifferencingBaseline(diff_threshold=20).segment(np.stack(frames), 2)
    assert labels.max() >= 1
    ys, xs = np.nonzero(labels)
    assert 8 <= ys.min() and ys.max() <= 24  # only around the square
    # Linking: the same blob shifting by 2 px keeps its id; a new blob gets a new one.
    seq = np.zeros((3, 20, 20), np.uint8)
    seq[0, 2:8, 2:8] = 5
    seq[1, 2:8, 4:10] = 1
    seq[2, 2:8, 6:12] = 3
    seq[2, 14:18, 14:18] = 1
    tracks, motion = link_instances(seq)
    assert set(np.unique(tracks[:2])) == {0, 1} and tracks[2, 4, 7] == 1
    assert tracks[2, 15, 15] == 2
    assert motion.shape == (3, 20) and motion[:, 0].tolist() == [1, 1, 1]
    assert motion[:, 1].tolist() == [0, 0, 1]
