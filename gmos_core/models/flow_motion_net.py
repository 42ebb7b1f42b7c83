"""The flow motion net: which pixels of a frame move in the world, from its window's flow geometry.

A small U-Net (three poolings, ~0.5 M parameters) over the planes of
`gmos_core.geometry.flow_features.window_planes`: per pixel, the flow to each of four
neighbours and what a homography and a fundamental matrix fitted to that flow leave
unexplained. A fitted model alone cannot tell a near static object's parallax from an object's
own motion; with the whole image in view the net learns where the parallax field goes and which
regions leave it (docs/training.md, session 14). It is this package's own module (the paper
reads motion from π³, which the micro π³ trained on a CPU does not give) and is used by the
``flow_motion`` motion decision (`gmos_core.geometry.flow_decision`).

Pure torch; no ROS.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmos_core.geometry.flow_features import NUM_FEATURES

__all__ = ["FlowMotionNet"]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.GroupNorm(8, cout),
        nn.GELU(),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.GroupNorm(8, cout),
        nn.GELU(),
    )


class FlowMotionNet(nn.Module):
    """U-Net from flow-geometry planes to a per-pixel "moves in the world now" logit.

    Args:
        in_planes: input planes (`NUM_FEATURES`).
        width: channels of the first level (doubled at the next two; a multiple of 8).
    """

    def __init__(self, in_planes: int = NUM_FEATURES, width: int = 24) -> None:
        super().__init__()
        if width <= 0 or width % 8:
            raise ValueError(f"FlowMotionNet: width must be a positive multiple of 8, got {width}")
        c = width
        self.enc1, self.enc2 = _block(in_planes, c), _block(c, 2 * c)
        self.enc3, self.enc4 = _block(2 * c, 4 * c), _block(4 * c, 4 * c)
        self.dec3, self.dec2, self.dec1 = _block(8 * c, 2 * c), _block(4 * c, c), _block(2 * c, c)
        self.out = nn.Conv2d(c, 1, 1)

    def forward(self, planes: Tensor) -> Tensor:
        """(B, in_planes, h, w) float planes, h and w multiples of 8 → (B, h, w) logits."""
        if planes.ndim != 4 or planes.shape[2] % 8 or planes.shape[3] % 8:
            raise ValueError(
                f"FlowMotionNet: expected (B, C, h, w) with h, w multiples of 8, got "
                f"{tuple(planes.shape)}"
            )
        a = self.enc1(planes)
        b = self.enc2(F.max_pool2d(a, 2))
        c = self.enc3(F.max_pool2d(b, 2))
        d = self.enc4(F.max_pool2d(c, 2))
        u = self.dec3(torch.cat([F.interpolate(d, scale_factor=2.0), c], 1))
        u = self.dec2(torch.cat([F.interpolate(u, scale_factor=2.0), b], 1))
        u = self.dec1(torch.cat([F.interpolate(u, scale_factor=2.0), a], 1))
        return self.out(u)[:, 0]
