"""Losses of the micro π³'s point and camera heads against the renderer's exact geometry.

π³ is scale-free, so both losses are scale-invariant per window:

- depth: the scale-invariant log loss ``mean(d²) − mean(d)²`` with ``d = log ẑ − log z`` over the
  valid pixels of the window's N frames (the mean removes the window's unknown scale);
- camera: poses relative to the window's first frame; rotation by the Frobenius distance of the
  relative rotations, translation by the L1 distance after dividing the predicted translations
  by the window's depth scale ``exp(mean(d))``;
- confidence: BCE of the confidence logits against "this pixel's depth is within
  `CONF_TOLERANCE` of the truth after the window's scale alignment" (0 where no surface).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gmos_core.models.pi3_heads import Pi3Geometry

__all__ = ["CONF_TOLERANCE", "geometry_loss"]

#: |log ẑ − log z − mean| below which a pixel's depth counts as right for the confidence target
#: (0.1 ≈ 10 % depth error after the window's scale alignment).
CONF_TOLERANCE = 0.1


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
        (scalar loss, {"geo_depth", "geo_rot", "geo_trans", "geo_scale_err", "geo_conf"}).
        The confidence head learns, by BCE, which pixels' depth is within `CONF_TOLERANCE`
        (log ratio) of the truth after the window's scale alignment (no surface: 0), so
        ``sigmoid(conf)`` ranks pixels as the runtime's ``min_conf`` filter assumes.
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
    # Confidence: is this pixel's aligned depth right? (targets from the detached depth error)
    good = valid & ((d - mean_d[:, None, None, None]).abs() < CONF_TOLERANCE)
    conf = F.binary_cross_entropy_with_logits(geom.conf, good.to(geom.conf.dtype).detach())
    loss = depth_loss + rot + trans + conf
    return loss, {
        "geo_depth": float(depth_loss.detach()),
        "geo_rot": float(rot.detach()),
        "geo_trans": float(trans.detach()),
        "geo_scale_err": float(silog.detach().sqrt().mean()),
        "geo_conf": float(conf.detach()),
    }
