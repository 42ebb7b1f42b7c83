"""Synthetic parallax-scene generator: determinism, exact labels, geometry, motion states,
hard-parallax and static scenes, and the DAVIS / Gmos-2K writers."""

from __future__ import annotations

import ast
import csv
import dataclasses

import numpy as np
import pytest
from PIL import Image

from gmos_core.data.synthetic import (
    SceneConfig,
    SceneLayout,
    Sprite,
    generate_dataset,
    generate_scene,
    intrinsics_from_fov,
    main,
    motion_intervals,
    project_points,
    render_layout,
    sample_layout,
)
from gmos_core.data.synthetic_writers import load_npz, save_npz, write_davis_style, write_mp4
from gmos_core.data.time_anno import read_time_anno

ARRAYS = (
    "frames",
    "instance_masks",
    "depth",
    "intrinsics",
    "cam_to_world",
    "stamps_ns",
    "object_ids",
    "object_is_dynamic",
    "motion_state",
    "object_centroid_world",
    "object_normal_world",
)
BASE = SceneConfig()


@pytest.fixture(scope="module")
def scenes() -> list:
    """A few default scenes of each kind (shared: generation is the slow part)."""
    kinds = ["dynamic"] * 4 + ["static"] * 2 + ["hard_parallax"] * 4
    return [
        generate_scene(dataclasses.replace(BASE, seed=100 + i, scene_kind=kind))
        for i, kind in enumerate(kinds)
    ]


def test_shapes_and_dtypes(scenes):
    s = scenes[0]
    T, H, W, K = BASE.num_frames, BASE.height, BASE.width, s.num_objects
    assert s.frames.shape == (T, H, W, 3) and s.frames.dtype == np.uint8
    assert s.instance_masks.shape == (T, H, W) and s.instance_masks.dtype == np.uint16
    assert s.depth.shape == (T, H, W) and s.depth.dtype == np.float32
    assert s.intrinsics.shape == (3, 3) and s.cam_to_world.shape == (T, 4, 4)
    assert s.stamps_ns.dtype == np.int64
    np.testing.assert_array_equal(np.diff(s.stamps_ns), 100_000_000)  # 10 fps
    np.testing.assert_array_equal(s.object_ids, np.arange(1, K + 1))
    assert s.object_is_dynamic.shape == (K,) and s.motion_state.shape == (T, K)
    assert s.instance_masks.max() <= K
    # The back plane fills the view: every pixel has a finite depth beyond the near clip.
    assert np.isfinite(s.depth).all() and s.depth.min() >= BASE.near_clip_m


def test_deterministic_by_seed():
    cfg = dataclasses.replace(BASE, seed=7)
    a, b = generate_scene(cfg), generate_scene(cfg)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.scene_kind == b.scene_kind
    c = generate_scene(cfg.with_seed(8))
    assert a.frames.shape == c.frames.shape and not np.array_equal(a.frames, c.frames)
    # The dataset iterator is the same function per seed.
    (d,) = list(generate_dataset(BASE, [7]))
    (e,) = list(generate_dataset([cfg]))
    np.testing.assert_array_equal(a.frames, d.frames)
    np.testing.assert_array_equal(a.instance_masks, e.instance_masks)


def _square_sprite(
    T: int, centre: np.ndarray, size_m: float, instance_id: int, colour: int, tex: int = 32
) -> Sprite:
    rgba = np.full((tex, tex, 4), 255, np.uint8)
    rgba[..., :3] = colour
    step = size_m / tex
    origin = np.asarray(centre, float) - (tex - 1) / 2 * step * np.array([1.0, 1.0, 0.0])
    return Sprite(
        rgba,
        np.array([step, 0.0, 0.0]),
        np.array([0.0, step, 0.0]),
        np.tile(origin, (T, 1)),
        instance_id=instance_id,
    )


def test_occlusion_exact_visible_parts():
    """A far object entirely behind a nearer one has no pixels; overlaps go to the nearer."""
    cfg = SceneConfig(height=64, width=64, num_frames=3, num_background_planes=1)
    T = cfg.num_frames
    poses = np.tile(np.eye(4), (T, 1, 1))
    poses[:, 0, 3] = [0.0, 0.02, 0.04]  # small sideways travel
    back = _square_sprite(T, [0, 0, 50.0], 200.0, 0, 20)
    near = _square_sprite(T, [0, 0, 4.0], 2.0, 1, 200)  # 2 m square at 4 m
    hidden = _square_sprite(T, [0, 0, 8.0], 1.0, 2, 120)  # 1 m at 8 m: same angle / 4
    partial = _square_sprite(T, [1.5, 0, 6.0], 1.0, 3, 80)  # straddles `near`'s right edge
    layout = SceneLayout(
        cfg,
        intrinsics_from_fov(cfg.width, cfg.height, cfg.fov_deg),
        poses,
        [back],
        [near, hidden, partial],
        np.zeros((T, 3), bool),
    )
    s = render_layout(layout)
    for t in range(T):
        ids = s.instance_masks[t]
        assert (ids == 2).sum() == 0  # fully hidden
        assert (ids == 1).sum() > 0 and (ids == 3).sum() > 0
        # Id-3 pixels are only where the near square is not: render id 3 alone to compare.
        alone = render_layout(
            dataclasses.replace(layout, objects=[partial], motion_state=np.zeros((T, 1), bool))
        ).instance_masks[t]
        assert ((alone == 3) & (ids == 1)).sum() > 0  # it is partly covered...
        assert ((ids == 3) & ~(alone == 3)).sum() == 0  # ...and never grows
        # Depth and colour follow the visible surface (fronto-parallel planes: constant z).
        np.testing.assert_allclose(s.depth[t][ids == 1], 4.0, rtol=1e-5)
        np.testing.assert_allclose(s.depth[t][ids == 3], 6.0, rtol=1e-5)
        np.testing.assert_allclose(s.depth[t][ids == 0], 50.0, rtol=1e-5)
        assert (s.frames[t][ids == 1] == 200).all() and (s.frames[t][ids == 3] == 80).all()


def test_depth_matches_object_planes(scenes):
    """Every labelled pixel's depth lies on its object's plane (z-buffer + plane geometry)."""
    for s in scenes[:4]:
        k_inv = np.linalg.inv(s.intrinsics)
        H, W = s.instance_masks.shape[1:]
        ys, xs = np.mgrid[0:H, 0:W]
        rays = np.stack([xs, ys, np.ones_like(xs)], -1).astype(float) @ k_inv.T  # z = 1
        for t in (0, s.num_frames - 1):
            rot, c = s.cam_to_world[t, :3, :3], s.cam_to_world[t, :3, 3]
            for k in range(s.num_objects):
                m = s.instance_masks[t] == k + 1
                if not m.any():
                    continue
                n_world = s.object_normal_world[k]
                d = n_world @ (s.object_centroid_world[t, k] - c)
                z = d / (rays[m] @ (rot.T @ n_world))
                np.testing.assert_allclose(s.depth[t][m], z, rtol=1e-4)
            # Objects are in front of whatever background plane is behind them.
            assert (s.depth[t][s.instance_masks[t] > 0] < BASE.back_plane_depth_m[1]).all()


def test_static_objects_move_only_by_parallax(scenes):
    """Unoccluded static masks move exactly as the re-projected 3-D centroid predicts."""
    checked = 0
    errors: list[float] = []
    for s in scenes:
        layout = sample_layout(s.config)
        K = s.intrinsics
        for k in np.flatnonzero(~s.object_is_dynamic):
            alone = render_layout(
                dataclasses.replace(
                    layout,
                    background=[],
                    objects=[layout.objects[k]],
                    motion_state=layout.motion_state[:, k : k + 1],
                )
            ).instance_masks
            uv = np.stack(
                [
                    project_points(s.object_centroid_world[t, k], s.cam_to_world[t], K)[0]
                    for t in range(s.num_frames)
                ]
            )
            ok = []
            for t in range(s.num_frames):
                full = alone[t] > 0
                vis = s.instance_masks[t] == k + 1
                border = full[0].any() | full[-1].any() | full[:, 0].any() | full[:, -1].any()
                # Unoccluded and uncropped: the visible mask is the whole object.
                if full.sum() > 30 and not border and np.array_equal(full, vis):
                    ok.append(t)
            if len(ok) < 2:
                continue
            cents = {}
            for t in ok:
                ys, xs = np.nonzero(s.instance_masks[t] == k + 1)
                cents[t] = np.array([xs.mean(), ys.mean()])
            t0 = ok[0]
            for t in ok[1:]:
                disp_mask = cents[t] - cents[t0]
                disp_proj = uv[t] - uv[t0]
                errors.append(float(np.linalg.norm(disp_mask - disp_proj)))
                # Residual: the centroid of a perspective-distorted (tilted) shape is not the
                # projection of its centroid, plus pixel quantisation of the mask.
                assert errors[-1] < 2.0, (s.config.seed, k, t)
            checked += 1
    assert checked >= 5
    assert np.median(errors) < 0.5


def test_motion_state_matches_trajectories(scenes):
    cfg = BASE
    n_dynamic = 0
    for s in scenes:
        step = np.linalg.norm(np.diff(s.object_centroid_world, axis=0), axis=2)  # (T-1, K)
        expected = np.concatenate([step > 1e-9, step[-1:] > 1e-9], axis=0)
        np.testing.assert_array_equal(s.motion_state, expected)
        np.testing.assert_array_equal(s.object_is_dynamic, s.motion_state.any(axis=0))
        for k in np.flatnonzero(s.object_is_dynamic):
            n_dynamic += 1
            runs = motion_intervals(s.motion_state[:-1, k])
            assert runs, "a dynamic object moves at least once"
            for a, b in runs:
                assert b - a + 1 >= cfg.min_move_frames
            # Rests strictly between two move segments respect the minimum rest length.
            for (_, b0), (a1, _) in zip(runs, runs[1:]):
                assert a1 - b0 - 1 >= cfg.min_rest_frames
            # At rest the object is exactly still (its mask moves only by parallax).
            rest = ~s.motion_state[:-1, k]
            assert (step[rest, k] == 0).all()
    assert n_dynamic >= 4


def test_mos_i_labels(scenes):
    s = next(x for x in scenes if x.scene_kind == "dynamic" and x.object_is_dynamic.sum() >= 2)
    mos = s.mos_i_labels()
    M = int(s.object_is_dynamic.sum())
    np.testing.assert_array_equal(mos.original_ids, s.dynamic_ids)
    assert set(mos.intervals) == set(range(1, M + 1))
    for m, orig in enumerate(mos.original_ids, start=1):
        np.testing.assert_array_equal(mos.labels == m, s.instance_masks == orig)
        states = np.zeros(s.num_frames, bool)
        for a, b in mos.intervals[m]:
            states[a : b + 1] = True
        np.testing.assert_array_equal(states, s.motion_state[:, orig - 1])
    # Static objects are removed.
    static_px = np.isin(s.instance_masks, s.object_ids[~s.object_is_dynamic])
    assert (mos.labels[static_px] == 0).all()
    for t in range(s.num_frames):
        np.testing.assert_array_equal(s.moving_masks(t), mos.labels[t])
        inst = s.moving_masks(t, instantaneous=True)
        for m, orig in enumerate(mos.original_ids, start=1):
            assert (inst == m).any() == (s.motion_state[t, orig - 1] and (mos.labels[t] == m).any())


def test_static_scene(scenes):
    for s in (x for x in scenes if x.scene_kind == "static"):
        assert s.num_objects > 0 and not s.object_is_dynamic.any() and not s.motion_state.any()
        assert s.mos_i_labels().labels.max() == 0 and s.mos_i_labels().intervals == {}
        travel = np.linalg.norm(s.cam_to_world[-1, :3, 3] - s.cam_to_world[0, :3, 3])
        assert travel > 0.1  # metres: the camera does move
        assert not np.array_equal(s.instance_masks[0], s.instance_masks[-1])  # parallax
    # The random mix produces static scenes at about the configured rate.
    kinds = [sample_layout(BASE.with_seed(i)).scene_kind for i in range(40)]
    assert 0 < kinds.count("static") < 20 and kinds.count("hard_parallax") > 0


def test_hard_parallax(scenes):
    hard = [x for x in scenes if x.scene_kind == "hard_parallax"]
    for s in hard:
        T = s.num_frames
        uv = np.stack(
            [
                project_points(s.object_centroid_world[t], s.cam_to_world[t], s.intrinsics)[0]
                for t in range(T)
            ]
        )  # (T, K, 2)
        speed = np.linalg.norm(np.diff(uv, axis=0), axis=2)  # (T-1, K) px/frame
        z = np.stack(
            [
                project_points(s.object_centroid_world[t], s.cam_to_world[t], s.intrinsics)[1]
                for t in range(T)
            ]
        ).mean(0)
        static = np.flatnonzero(~s.object_is_dynamic)
        near = static[np.argmin(z[static])]
        for k in np.flatnonzero(s.object_is_dynamic):
            assert z[near] < z[k]  # the static object is the near one
            assert speed[:, near].mean() >= 2.0 * speed[:, k].max()
            # ...and the "far" object does move in the world.
            assert s.motion_state[:, k].any()
        # Cross-check in pixels: the near object's mask moves more than the far movers'.
        ys, xs = np.nonzero(s.instance_masks[0] == near + 1)
        ye, xe = np.nonzero(s.instance_masks[-1] == near + 1)
        if len(xs) > 30 and len(xe) > 30:
            shift = np.hypot(xe.mean() - xs.mean(), ye.mean() - ys.mean())
            assert shift > 3.0


def test_writers_and_npz(tmp_path):
    cfg = SceneConfig(height=48, width=64, num_frames=6, scene_kind="dynamic")
    samples = list(generate_dataset(cfg, [3, 4]))
    names = ["seq_a", "seq_b"]
    root = tmp_path / "davis"
    assert write_davis_style(samples, root, names, dataset="synthetic", progress=False) == names
    for seq, s in zip(names, samples):
        for folder in (
            root / "JPEGImages" / "480p" / seq,
            root / "Annotations" / "480p" / seq,
            root / "Annotations_unsupervised" / "480p" / seq,
            root / "annotations" / seq,
        ):
            files = sorted(p.name for p in folder.iterdir())
            ext = ".jpg" if "JPEG" in str(folder) else ".png"
            assert files == [f"{t:05d}{ext}" for t in range(cfg.num_frames)]
        with Image.open(root / "Annotations" / "480p" / seq / "00002.png") as im:
            assert im.mode == "P" and im.size == (64, 48)
            np.testing.assert_array_equal(np.array(im), s.instance_masks[2])
            assert im.getpalette()[3:6] == [128, 0, 0]  # DAVIS palette, id 1
        with Image.open(root / "annotations" / seq / "00002.png") as im:
            assert im.mode == "P"
            np.testing.assert_array_equal(np.array(im), s.moving_masks(2))
        with Image.open(root / "JPEGImages" / "480p" / seq / "00000.jpg") as im:
            assert im.size == (64, 48)
    assert (root / "ImageSets" / "2017" / "val.txt").read_text().split() == names
    with (root / "time_annotation.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "seq_name",
        "time_anno",
        "ann_frames",
        "vid_frames",
        "dataset",
        "split",
    ]
    for row, s in zip(rows, samples):
        anno = ast.literal_eval(row["time_anno"])
        expected = {
            str(m): [list(iv) for iv in ivs] for m, ivs in s.mos_i_labels().intervals.items()
        }
        assert anno == expected
        assert row["dataset"] == "synthetic" and row["split"] == "test"
        assert int(row["ann_frames"]) == int(row["vid_frames"]) == cfg.num_frames
    assert [
        r.seq_name for r in read_time_anno(root / "time_annotation.csv", drop_empty=False)
    ] == names

    save_npz(samples[0], tmp_path / "s.npz")
    back = load_npz(tmp_path / "s.npz")
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(samples[0], name))
    assert back.config == samples[0].config and back.scene_kind == samples[0].scene_kind

    write_mp4(samples[0], tmp_path / "s.mp4")
    assert (tmp_path / "s.mp4").stat().st_size > 0


def test_cli_writes_davis_folder(tmp_path):
    out = tmp_path / "cli"
    assert (
        main(
            [
                "--out",
                str(out),
                "--num-scenes",
                "2",
                "--seed",
                "5",
                "--num-frames",
                "4",
                "--size",
                "32",
                "32",
            ]
        )
        == 0
    )
    assert (out / "ImageSets" / "2017" / "val.txt").read_text().split() == [
        "synth_000005",
        "synth_000006",
    ]
    assert len(list((out / "JPEGImages" / "480p" / "synth_000006").iterdir())) == 4


def test_config_validation():
    with pytest.raises(ValueError):
        SceneConfig(camera_speed_mps=(0.0, 1.0))
    with pytest.raises(ValueError):
        SceneConfig(p_static_scene=0.8, p_hard_parallax=0.5)
    with pytest.raises(ValueError):
        SceneConfig(num_moving_objects=(1, 30))


def test_mos_i_intervals_cover_only_visible_motion() -> None:
    """Gmos-2K rule: moving frames of an invisible object are static in the labels."""
    hits = 0
    for seed in range(40):
        s = generate_scene(SceneConfig(seed=seed, scene_kind="dynamic", num_frames=16))
        mos = s.mos_i_labels()
        for m, ivs in mos.intervals.items():
            assert ivs, "no empty interval lists"
            for a, b in ivs:
                for t in range(a, b + 1):
                    assert (mos.labels[t] == m).any(), (seed, m, t)
        k_dyn = np.flatnonzero(s.object_is_dynamic)
        for k in k_dyn.tolist():
            invisible = ~(s.instance_masks == s.object_ids[k]).any(axis=(1, 2))
            hits += int((s.motion_state[:, k] & invisible).any())
    assert hits > 0, "the scenes should include moving-but-invisible frames to exercise this"
