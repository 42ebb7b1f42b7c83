"""training.geometry_losses: scale-invariant depth and relative camera pose losses."""

from __future__ import annotations

import math

import numpy as np
import torch

from gmos_core.models.pi3_heads import Pi3Geometry
from training.geometry_losses import geometry_loss


def _poses(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out = torch.eye(4).repeat(1, n, 1, 1)
    for i in range(n):
        a = 0.05 * i
        out[0, i, :3, :3] = torch.tensor(
            [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]]
        )
        out[0, i, :3, 3] = torch.randn(3, generator=g)
    return out


def _geom(
    depth: torch.Tensor, poses: torch.Tensor, conf: torch.Tensor | None = None
) -> Pi3Geometry:
    z = torch.nan_to_num(depth, nan=1.0)
    local = torch.stack((torch.zeros_like(z), torch.zeros_like(z), z), dim=-1)
    if conf is None:  # a sure confidence: high where there is a surface, low where none
        conf = torch.where(torch.isfinite(depth), 20.0, -20.0)
    return Pi3Geometry(local, conf, poses, local)


def test_scaled_truth_has_zero_loss_and_errors_raise_it():
    depth = torch.rand(1, 3, 14, 28) * 5 + 1
    depth[0, 0, :2] = float("nan")  # no surface: ignored
    poses = _poses(3, 0)
    scale = 0.3
    moved = poses.clone()
    moved[..., :3, 3] *= scale
    # π³'s answer for the same window at another scale, in another world frame.
    shift = torch.eye(4)
    shift[:3, 3] = torch.tensor([1.0, -2.0, 0.5])
    loss, parts = geometry_loss(_geom(depth * scale, shift @ moved), depth, poses)
    assert float(loss) < 1e-5 and parts["geo_rot"] < 1e-5 and parts["geo_trans"] < 1e-5
    bad_depth = depth * scale
    bad_depth[0, 1] *= 2.0  # one frame at the wrong scale
    loss_d, parts_d = geometry_loss(_geom(bad_depth, shift @ moved), depth, poses)
    assert parts_d["geo_depth"] > 0.05
    swapped = moved.clone()
    swapped[0, 2, :3, 3] = -swapped[0, 2, :3, 3]  # a wrong translation
    loss_t, parts_t = geometry_loss(_geom(depth * scale, swapped), depth, poses)
    assert parts_t["geo_trans"] > 0.1 and float(loss_t) > float(loss)


def test_confidence_learns_which_depths_are_right():
    depth = torch.rand(1, 5, 14, 28) * 5 + 1
    poses = _poses(5, 0)
    pred = depth * 0.3
    # Frame 1 30 % off: after the window's alignment (log mean shifts by log(1.3)/5 = 0.05)
    # its error is 0.21 > CONF_TOLERANCE, the others' 0.05 < it.
    pred[0, 1] *= 1.3
    sure = torch.full_like(depth, 20.0)
    doubting = sure.clone()
    doubting[0, 1] = -20.0
    _, trusting = geometry_loss(_geom(pred, poses, sure), depth, poses)
    _, right = geometry_loss(_geom(pred, poses, doubting), depth, poses)
    assert right["geo_conf"] < 1e-3 < 1.0 < trusting["geo_conf"]
    # The confidence gradient reaches the logits (and only the confidence term depends on them).
    conf = torch.zeros_like(depth, requires_grad=True)
    loss, _ = geometry_loss(_geom(pred, poses, conf), depth, poses)
    loss.backward()
    assert conf.grad is not None and conf.grad[0, 1].sum() > 0 > conf.grad[0, 0].sum()


def test_loss_has_gradients_for_points_and_poses():
    depth = torch.rand(1, 2, 4, 4) + 1
    poses = _poses(2, 1)
    z = (depth * 0.5).requires_grad_(True)
    t = poses.clone()
    t[0, 1, :3, 3] += 0.3
    t.requires_grad_(True)
    local = torch.stack((torch.zeros_like(z), torch.zeros_like(z), z), dim=-1)
    loss, _ = geometry_loss(Pi3Geometry(local, torch.zeros_like(z), t, local), depth, poses)
    loss.backward()
    assert t.grad is not None and t.grad.abs().sum() > 0
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_synthetic_windows_carry_exact_depth_and_poses():
    from training.datasets import (
        SyntheticDataConfig,
        SyntheticWindowDataset,
        WindowSpec,
        collate_windows,
    )

    spec = WindowSpec(num_frames=5, pi3_pixel_limit=96 * 96, sam_size=64, mask_size=64)
    ds = SyntheticWindowDataset(SyntheticDataConfig(num_scenes=2, height=96, width=96), spec)
    it = ds[0]
    n, _, ph, pw = it["pi3"].shape
    assert it["gt_depth_window"].shape == (n, ph, pw)
    assert it["gt_cam_to_world"].shape == (n, 4, 4)
    scene = ds.scene(0)
    d = it["gt_depth_window"]
    ok = torch.isfinite(d)
    assert ok.float().mean() > 0.9
    assert float(d[ok].min()) > 0 and float(d[ok].max()) <= float(scene.depth.max()) + 1e-3
    # Poses are the scene's own, in window order.
    rows = [
        int(np.argmin(np.abs(scene.cam_to_world - p.numpy()).sum((1, 2))))
        for p in it["gt_cam_to_world"]
    ]
    assert rows == sorted(rows)
    batch = collate_windows([ds[0], ds[1]])
    assert batch["gt_depth_window"].shape == (2, n, ph, pw)
    assert batch["gt_cam_to_world"].shape == (2, n, 4, 4)
