"""Losses of the micro π³'s point and camera heads against the renderer's exact geometry.

π³ is scale-free, so both losses are scale-invariant per window:

- depth: the scale-invariant log loss ``mean(d²) − mean(d)²`` with ``d = log ẑ − log z`` over the
  valid pixels of the window's N frames (the mean removes the window's unknown scale);
- camera: poses relative to the window's first frame; rotation by the Frobenius distance of the
  relative rotations, translation by the L1 distance after dividing the predicted translations
  by the window's depth scale ``exp(mean(d))``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gmos_core.models.pi3_heads import Pi3Geometry

__all__ = ["geometry_loss"]


def _relative(poses: Tensor) -> tuple[Tensor, Tensor]:
    """(B, N, 4, 4) camera-to-world → rotations (B, N, 3, 3) and translations (B, N, 3) of every
    frame in the first frame's camera."""
    r0 = poses[:, :1, :3, :3]
    t0 = poses[:, :1, :3, 3]
    r0t = r0.transpose(-1, -2)
    rel_r = r0t @ poses[..., :3, :3]
    rel_t = (r0t @ (poses[..., :3, 3] - t0).unsqueeze(-1)).squeeze(-1)
    return rel_r, rel_t


def geometry_loss(
    geom: Pi3Geometry, depth: Tensor, cam_to_world: Tensor
) -> tuple[Tensor, dict[str, float]]:
    """Scale-invariant depth + relative camera pose loss.

    Args:
        geom: π³ head outputs for B windows of N frames (H', W' = the π³ input size).
        depth: (B, N, H', W') true z-depth, m, NaN where no surface.
        cam_to_world: (B, N, 4, 4) true poses, m.

    Returns:
        (scalar loss, {"geo_depth", "geo_rot", "geo_trans", "geo_scale_err"}).
    """
    z = geom.local_points[..., 2]
    if z.shape != depth.shape:
        raise ValueError(f"geometry_loss: predicted depth {tuple(z.shape)} vs {tuple(depth.shape)}")
    valid = torch.isfinite(depth) & (depth > 0)
    d = torch.log(z.clamp_min(1e-6)) - torch.log(torch.where(valid, depth, torch.ones_like(depth)))
    d = torch.where(valid, d, torch.zeros_like(d))
    n = valid.flatten(1).sum(1).clamp_min(1)  # (B,)
    mean_d = d.flatten(1).sum(1) / n
    silog = (d.flatten(1) ** 2).sum(1) / n - mean_d**2
    depth_loss = silog.mean()
    pr, pt = _relative(geom.camera_poses)
    gr, gt = _relative(cam_to_world.to(pr.dtype))
    rot = (pr - gr).flatten(2).norm(dim=-1).mean()
    scale = torch.exp(mean_d).detach()  # predicted / true, per window
    trans = (pt / scale[:, None, None] - gt).abs().sum(-1).mean()
    loss = depth_loss + rot + trans
    return loss, {
        "geo_depth": float(depth_loss.detach()),
        "geo_rot": float(rot.detach()),
        "geo_trans": float(trans.detach()),
        "geo_scale_err": float(silog.detach().sqrt().mean()),
    }
