"""π³ (Pi3) geometry heads: local point maps, confidence and camera poses.

The official ``Pi3`` module has three heads on top of its decoder; Gmos' masks do not need them, but
they give each frame a camera-frame point map (up to one scale per window) and a camera pose, which
is what per-object 3-D positions and ego-motion are computed from (``gmos_core.geometry``).

All three heads read the same input: the outputs of the **last two** decoder blocks concatenated on
the channel axis, registers included, one row of tokens per frame: (B·N, R + h·w, 2·D). Every head
block attends within a frame, with the decoder's frame RoPE positions.

- ``point_decoder`` / ``conf_decoder`` (:class:`HeadDecoder`): ``projects`` Linear 2D → 1024, 5
  pre-norm blocks (no qk-norm, no LayerScale), ``linear_out`` 1024 → 1024.
- ``point_head`` / ``conf_head`` (:class:`PatchHead`): Linear 1024 → out·14², then a pixel shuffle to
  full resolution. Points: ``(x, y, z) -> (x·e^z, y·e^z, e^z)`` (positive depth). Confidence is the
  raw logit (apply a sigmoid for a [0, 1] score).
- ``camera_decoder`` (out 512) → ``camera_head`` (:class:`CameraHead`): two residual MLP blocks per
  token, mean over the patch tokens, a 2-layer MLP, ``fc_t`` (3) and ``fc_rot`` (9, projected onto
  SO(3) by SVD). The result is a camera-to-world 4×4 per frame in π³'s own (scale-free) world frame.

Key names and shapes are the official ones (``shared/fixtures/PARITY.md``, ``reference
implementations`` note); parity with the official code is tested against
``test/fixtures/pi3_heads_parity.npz`` (made by ``training/fixtures/make_pi3_heads_fixture.py``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gmos_core.models.layers import Block, rope2d_cos_sin

__all__ = [
    "HEAD_NAMES",
    "CameraHead",
    "HeadDecoder",
    "PatchHead",
    "Pi3Geometry",
    "Pi3HeadSizes",
    "Pi3Heads",
    "svd_orthogonalize",
]

# Official submodule names, in the official state-dict order.
HEAD_NAMES: tuple[str, ...] = (
    "point_decoder",
    "point_head",
    "conf_decoder",
    "conf_head",
    "camera_decoder",
    "camera_head",
)


@dataclass
class Pi3Geometry:
    """What the π³ heads say about a window of N frames (B windows).

    Units: π³ is scale-free; all lengths share one unknown scale per window (metres only after
    alignment with depth). Camera axes are OpenCV's (x right, y down, z forward).

    Attributes:
        local_points: (B, N, H, W, 3) float32 per-pixel points in each frame's camera frame.
        conf: (B, N, H, W) float32 confidence logits (higher = more reliable; sigmoid → [0, 1]).
        camera_poses: (B, N, 4, 4) float32 camera-to-world transforms (world = π³'s window frame).
        points: (B, N, H, W, 3) float32 ``camera_poses · local_points`` (world frame).
    """

    local_points: torch.Tensor
    conf: torch.Tensor
    camera_poses: torch.Tensor
    points: torch.Tensor


@dataclass(frozen=True)
class Pi3HeadSizes:
    """Sizes of the three heads (official: width 1024, depth 5, 16 attention heads, camera 512).

    A bundle stores them in its metadata (``pi3_heads``): the attention head count cannot be
    read from the tensor shapes.
    """

    width: int = 1024
    depth: int = 5
    num_heads: int = 16
    camera_width: int = 512

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Pi3HeadSizes:
        """Parse :meth:`to_json`'s output. Raises ValueError naming a bad or missing field."""
        try:
            raw = json.loads(text)
            return cls(**{f.name: int(raw[f.name]) for f in dataclasses.fields(cls)})
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad π³ head sizes {text!r}: {exc}") from exc

    @classmethod
    def of(cls, model: nn.Module) -> Pi3HeadSizes:
        """The sizes of a module holding the official head submodules (e.g. a π³ with heads)."""
        dec: HeadDecoder = model.point_decoder  # type: ignore[assignment]
        cam: HeadDecoder = model.camera_decoder  # type: ignore[assignment]
        heads = dec.blocks[0].attn.num_heads if len(dec.blocks) else cls.num_heads
        return cls(
            width=int(dec.projects.out_features),
            depth=len(dec.blocks),
            num_heads=int(heads),
            camera_width=int(cam.linear_out.out_features),
        )


class HeadDecoder(nn.Module):
    """Official ``TransformerDecoder``: ``projects`` → ``blocks`` (frame-wise, RoPE) → ``linear_out``.

    Keys: ``projects.{weight,bias}`` (dim, in_dim), ``blocks.{i}.{norm1, attn.qkv, attn.proj, norm2,
    mlp.fc1, mlp.fc2}``, ``linear_out.{weight,bias}`` (out_dim, dim).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        dim: int = 1024,
        depth: int = 5,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.projects = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio, qk_norm=False, init_values=None) for _ in range(depth)
        )
        self.linear_out = nn.Linear(dim, out_dim)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        """(B·N, L, in_dim) → (B·N, L, out_dim); ``rope`` = per-frame (cos, sin), (L, head_dim)."""
        x = self.projects(x)
        for blk in self.blocks:
            x = blk(x, rope)
        return self.linear_out(x)


class PatchHead(nn.Module):
    """Official ``LinearPts3d``: one Linear per token to a patch×patch×out block, pixel-shuffled.

    Key: ``proj.{weight,bias}`` (out_dim·patch², dim).
    """

    def __init__(self, dim: int = 1024, out_dim: int = 3, patch: int = 14) -> None:
        super().__init__()
        self.patch = patch
        self.out_dim = out_dim
        self.proj = nn.Linear(dim, out_dim * patch * patch)

    def forward(self, tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(M, h·w, dim) patch tokens → (M, h·patch, w·patch, out_dim)."""
        m = tokens.shape[0]
        feat = self.proj(tokens).transpose(-1, -2).reshape(m, -1, h, w)
        return F.pixel_shuffle(feat, self.patch).permute(0, 2, 3, 1)


class ResidualMlp(nn.Module):
    """Official ``ResConvBlock`` with equal in/out width: ``x + relu∘L3∘relu∘L2∘relu∘L1(x)``.

    Keys ``res_conv{1,2,3}.{weight,bias}`` (the official names keep "conv"; they are Linear layers).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.res_conv1 = nn.Linear(dim, dim)
        self.res_conv2 = nn.Linear(dim, dim)
        self.res_conv3 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.res_conv1(x))
        y = F.relu(self.res_conv2(y))
        return x + F.relu(self.res_conv3(y))


def svd_orthogonalize(m: torch.Tensor) -> torch.Tensor:
    """Nearest rotation to a 3×3 matrix with unit-norm rows (π³'s 9-D rotation parametrisation).

    Args:
        m: (M, 9) or (M, 3, 3) raw head output.

    Returns:
        (M, 3, 3) rotation matrices (det +1): ``V·diag(1, 1, det(V·Uᵀ))·Uᵀ`` for ``Mᵀ = U·S·Vᵀ``,
        with the rows of M normalised first.
    """
    m = F.normalize(m.reshape(-1, 3, 3), p=2, dim=-1)
    # SVD in float32 even under autocast; the sign ambiguity of singular vectors cancels in V·Uᵀ.
    u, _s, vh = torch.linalg.svd(m.transpose(-1, -2).float())
    v = vh.transpose(-1, -2)
    det = torch.det(v @ u.transpose(-1, -2))
    v = torch.cat((v[..., :-1], v[..., -1:] * det.view(-1, 1, 1)), dim=-1)
    return v @ u.transpose(-1, -2)


class CameraHead(nn.Module):
    """Official ``CameraHead``: per-token residual MLPs, mean pool, MLP, translation + rotation.

    Keys: ``res_conv.{0,1}.res_conv{1,2,3}``, ``more_mlps.{0,2}`` (Linear, ReLU, Linear, ReLU),
    ``fc_t`` (3, dim), ``fc_rot`` (9, dim).
    """

    def __init__(self, dim: int = 512) -> None:
        super().__init__()
        self.res_conv = nn.ModuleList(ResidualMlp(dim) for _ in range(2))
        self.more_mlps = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU()
        )
        self.fc_t = nn.Linear(dim, 3)
        self.fc_rot = nn.Linear(dim, 9)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(M, h·w, dim) patch tokens → (M, 4, 4) float32 camera-to-world transforms."""
        x = tokens
        for blk in self.res_conv:
            x = blk(x)
        x = self.more_mlps(x.mean(dim=1)).float()
        pose = torch.zeros(x.shape[0], 4, 4, dtype=torch.float32, device=x.device)
        pose[:, :3, :3] = svd_orthogonalize(self.fc_rot(x))
        pose[:, :3, 3] = self.fc_t(x)
        pose[:, 3, 3] = 1.0
        return pose


class Pi3Heads(nn.Module):
    """The three π³ heads with their official submodule names (keys ``point_decoder.*`` …).

    Args:
        dec_dim: width D of the π³ decoder (the heads read 2·D channels).
        head_dim: width of the head transformers (1024 in π³).
        depth: blocks per head transformer (5 in π³).
        num_heads: attention heads (16).
        camera_dim: output width of the camera transformer (512).
        patch: π³ patch size (14).
        num_registers: decoder registers at the start of each frame's tokens (5).
    """

    def __init__(
        self,
        dec_dim: int = 1024,
        head_dim: int = 1024,
        depth: int = 5,
        num_heads: int = 16,
        camera_dim: int = 512,
        patch: int = 14,
        num_registers: int = 5,
    ) -> None:
        super().__init__()
        self.num_registers = num_registers
        for name, module in build_heads(
            dec_dim, head_dim, depth, num_heads, camera_dim, patch
        ).items():
            self.add_module(name, module)

    def forward(
        self,
        head_input: torch.Tensor,
        pos: torch.Tensor,
        batch: int,
        h: int,
        w: int,
        rope_base: float = 100.0,
    ) -> Pi3Geometry:
        """Run the heads on one or more windows.

        Args:
            head_input: (B·N, R + h·w, 2·D) concat of the last two decoder block outputs.
            pos: (R + h·w, 2) per-frame RoPE positions (``pi3_positions``).
            batch: B (windows); N is inferred.
            h, w: patch grid.
            rope_base: RoPE frequency base (π³: 100).

        Returns:
            :class:`Pi3Geometry` with H = h·patch, W = w·patch.
        """
        return run_heads(self, head_input, pos, rope_base, batch, h, w, self.num_registers)


def build_heads(
    dec_dim: int = 1024,
    head_dim: int = 1024,
    depth: int = 5,
    num_heads: int = 16,
    camera_dim: int = 512,
    patch: int = 14,
) -> dict[str, nn.Module]:
    """The six official head submodules, by official name and in official order."""
    return {
        "point_decoder": HeadDecoder(2 * dec_dim, head_dim, head_dim, depth, num_heads),
        "point_head": PatchHead(head_dim, 3, patch),
        "conf_decoder": HeadDecoder(2 * dec_dim, head_dim, head_dim, depth, num_heads),
        "conf_head": PatchHead(head_dim, 1, patch),
        "camera_decoder": HeadDecoder(2 * dec_dim, camera_dim, head_dim, depth, num_heads),
        "camera_head": CameraHead(camera_dim),
    }


def run_heads(
    owner: nn.Module,
    head_input: torch.Tensor,
    pos: torch.Tensor,
    rope_base: float,
    batch: int,
    h: int,
    w: int,
    num_registers: int,
) -> Pi3Geometry:
    """Heads forward for any module holding the six official head submodules as attributes.

    The RoPE tables are built for each head transformer's own head dim (π³ shares one RoPE module
    whose tables follow the attention's head dim; at paper size it equals the decoder's, 64).
    """
    m, length, _ = head_input.shape
    if length != num_registers + h * w:
        raise ValueError(
            f"Pi3 heads: {length} tokens per frame, expected {num_registers} registers + {h}x{w}"
        )
    if m % batch:
        raise ValueError(f"Pi3 heads: {m} frames is not a multiple of batch {batch}")
    n = m // batch
    r = num_registers
    tables: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def rope_for(dec: HeadDecoder) -> tuple[torch.Tensor, torch.Tensor] | None:
        if len(dec.blocks) == 0:
            return None
        hd = dec.blocks[0].attn.head_dim
        if hd not in tables:
            tables[hd] = rope2d_cos_sin(pos, hd, rope_base, head_input.dtype)
        return tables[hd]

    point_tok = owner.point_decoder(head_input, rope_for(owner.point_decoder))[:, r:].float()
    conf_tok = owner.conf_decoder(head_input, rope_for(owner.conf_decoder))[:, r:].float()
    cam_tok = owner.camera_decoder(head_input, rope_for(owner.camera_decoder))[:, r:].float()
    raw = owner.point_head(point_tok, h, w)  # (M, H, W, 3)
    xy, log_z = raw.split([2, 1], dim=-1)
    z = torch.exp(log_z)
    local = torch.cat((xy * z, z), dim=-1)
    conf = owner.conf_head(conf_tok, h, w)[..., 0]
    poses = owner.camera_head(cam_tok)  # (M, 4, 4)
    points = torch.einsum("mij,mhwj->mhwi", poses[:, :3, :3], local) + poses[:, None, None, :3, 3]
    hh, ww = local.shape[1], local.shape[2]
    return Pi3Geometry(
        local_points=local.reshape(batch, n, hh, ww, 3),
        conf=conf.reshape(batch, n, hh, ww),
        camera_poses=poses.reshape(batch, n, 4, 4),
        points=points.reshape(batch, n, hh, ww, 3),
    )
