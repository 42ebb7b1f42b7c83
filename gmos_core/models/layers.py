"""Small transformer layers for the Pi3 encoder (DINOv2 ViT and the Pi3 RoPE decoder).

Attribute names follow the official state-dict layout (``norm1``, ``attn.qkv``, ``attn.q_norm``,
``ls1.gamma``, ``mlp.fc1`` ...) so that official checkpoints load without renaming. The Gmos heads
have their own layers in ``gmos_layers.py``; nothing here is shared with them on purpose, because
the two code bases differ in small details (LayerNorm eps, RoPE base, position offsets).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Attention",
    "Block",
    "LayerScale",
    "Mlp",
    "PatchEmbed",
    "RoPE2D",
    "apply_rope2d",
    "rope2d_cos_sin",
]


class LayerScale(nn.Module):
    """Per-channel residual-branch scale ``x * gamma`` (key ``gamma``, shape (dim,))."""

    def __init__(self, dim: int, init_value: float = 1.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., dim) -> (..., dim)."""
        return x * self.gamma


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` with exact (erf) GELU, as in DINOv2 and Pi3 (no dropout at inference)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()  # approximate="none": the tanh variant is off by ~1e-3 (PARITY §5)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., dim) -> (..., dim)."""
        return self.fc2(self.act(self.fc1(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping patch embedding ``proj`` (Conv2d k=s=patch), flattened row-major.

    Input (M, 3, H, W) with H, W multiples of ``patch``; output (M, (H/patch)·(W/patch), dim) with
    tokens ordered y-outer, x-inner.
    """

    def __init__(self, patch: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(M, 3, H, W) -> (M, h·w, dim)."""
        return self.proj(x).flatten(2).transpose(1, 2)


def rope2d_cos_sin(
    pos: torch.Tensor, head_dim: int, base: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of the 2-D rotary embedding for integer positions.

    Each head is split into two halves of ``D = head_dim/2`` channels: the first rotates with y, the
    second with x. Within a half the layout is "rotate-half": channel ``i`` pairs with ``i + D/2``,
    with frequency ``1 / base**(2j/D)`` for ``j = 0..D/2-1``, and the table is ``cat([θ, θ])``.

    Args:
        pos: (..., L, 2) integer positions, (y, x) in patch units.
        head_dim: attention head dim (a multiple of 4).
        base: frequency base (Pi3 uses 100).
        dtype: dtype of the returned tables (that of q/k).

    Returns:
        ``cos, sin``, each (..., L, head_dim): the y table concatenated with the x table.
    """
    half = head_dim // 2
    # Computed here instead of a buffer so a meta-device construction has nothing to materialise.
    # The float32 arithmetic order (base ** (arange/D), then 1/·, then pos·f) matches the reference
    # bit for bit; a direct pos·f product equals the reference's table lookup at row pos.
    exponent = torch.arange(0, half, 2, device=pos.device).float() / half
    inv_freq = 1.0 / (base**exponent)  # (half/2,)
    angles = pos.to(torch.float32).unsqueeze(-1) * inv_freq  # (..., L, 2, half/2)
    angles = torch.cat((angles, angles), dim=-1).to(dtype)  # (..., L, 2, half)
    cos = angles.cos().flatten(-2)  # (..., L, head_dim): [y-half | x-half]
    sin = angles.sin().flatten(-2)
    return cos, sin


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[a, b] -> [-b, a] over the last dim (pairs (i, i + D/2))."""
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def apply_rope2d(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate q or k with precomputed tables.

    Args:
        x: (B, heads, L, head_dim).
        cos, sin: (L, head_dim) or (B, 1, L, head_dim) from :func:`rope2d_cos_sin`.

    Returns:
        (B, heads, L, head_dim).
    """
    # The rotate-half is done per half (y, then x), not over the whole head: that is what makes the
    # two coordinates independent.
    y, xx = x.chunk(2, dim=-1)
    cy, cx = cos.chunk(2, dim=-1)
    sy, sx = sin.chunk(2, dim=-1)
    y = y * cy + _rotate_half(y) * sy
    xx = xx * cx + _rotate_half(xx) * sx
    return torch.cat((y, xx), dim=-1)


class RoPE2D(nn.Module):
    """Parameter-free 2-D RoPE holder (keeps ``base``); see :func:`rope2d_cos_sin`."""

    def __init__(self, base: float = 100.0) -> None:
        super().__init__()
        self.base = float(base)

    def cos_sin(
        self, pos: torch.Tensor, head_dim: int, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., L, 2) int positions -> cos, sin (..., L, head_dim)."""
        return rope2d_cos_sin(pos, head_dim, self.base, dtype)

    def extra_repr(self) -> str:
        return f"base={self.base}"


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` Linear, optional qk-norm and optional RoPE.

    The qkv output splits as [q | k | v] × heads × head_dim. With ``qk_norm`` a per-head
    ``LayerNorm(head_dim, eps=1e-5)`` with affine parameters (``q_norm``, ``k_norm``) is applied
    before the rotary embedding, as in Pi3's decoder. Attention itself is
    ``F.scaled_dot_product_attention`` with its default scale ``1/sqrt(head_dim)``.
    """

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"Attention: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        # proj is registered before the norms: that is the official state-dict order.
        self.proj = nn.Linear(dim, dim)
        if qk_norm:
            # torch's default LayerNorm eps (1e-5), as the official qk-norm; not the blocks' 1e-6.
            self.q_norm: nn.Module = nn.LayerNorm(self.head_dim, eps=1e-5)
            self.k_norm: nn.Module = nn.LayerNorm(self.head_dim, eps=1e-5)
        else:
            self.q_norm = nn.Identity()
            self.k_norm = nn.Identity()

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Self-attention over the token axis.

        Args:
            x: (B, L, dim).
            rope: optional ``(cos, sin)`` tables, (L, head_dim) or (B, 1, L, head_dim).

        Returns:
            (B, L, dim).
        """
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, L, head_dim)
        q = self.q_norm(q)
        k = self.k_norm(k)
        if rope is not None:
            cos, sin = rope
            q = apply_rope2d(q, cos, sin)
            k = apply_rope2d(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale:
    ``x + ls1(attn(norm1(x)))`` then ``x + ls2(mlp(norm2(x)))``; LayerNorm eps 1e-6.

    Used for the DINOv2 blocks (``qk_norm=False``, no RoPE, LayerScale init 1.0) and for Pi3's
    ``BlockRope`` decoder blocks (``qk_norm=True``, RoPE tables passed to ``forward``, init 0.01).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        init_values: float | None = 1.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm)
        # init_values=None: no LayerScale and no ``ls*.gamma`` keys (π³'s head decoder blocks).
        self.ls1: nn.Module = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2: nn.Module = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """(B, L, dim) -> (B, L, dim); ``rope`` as in :meth:`Attention.forward`."""
        x = x + self.ls1(self.attn(self.norm1(x), rope))
        return x + self.ls2(self.mlp(self.norm2(x)))
