"""Building blocks of the Gmos heads (proposer and Gmos-S).

Everything here is written so that the module tree, and hence the ``state_dict`` key names,
equals the official checkpoints (``Jyxarthur/gmos``, ``core/layers/*``): attribute names such as
``proj`` / ``norm`` / ``layers`` / ``q_proj`` are part of the checkpoint format, not style.

Conventions used in the shape comments:
    B batch, N tokens, C channels, Hd heads, D head dim, g the feature grid side (64 official).

Numerical conventions that the parity fixtures pin down (``shared/fixtures/PARITY.md`` §6.2):
    * transformer LayerNorms use eps 1e-5 (the torch default), the token projectors and
      ``LayerNorm2d`` use eps 1e-6;
    * GELU is the exact erf form (``nn.GELU()`` default), never the tanh approximation;
    * attention is SDPA with its default scale ``1/sqrt(head_dim)``;
    * RoPE is 2-D, frequency base ``100 * 36 / 64 = 56.25``, the first half of every head rotates
      with y and the second half with x, each half in "rotate-half" layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DEFAULT_ROPE_BASE",
    "MLP",
    "Attention",
    "LayerNorm2d",
    "PostNormSelfAttentionBlock",
    "RotaryPositionEmbedding2D",
    "TokenProjector",
    "TransformerEncoder",
    "TwoWayAttentionBlock",
    "TwoWayTransformer",
    "UpSampling",
    "grid_positions",
    "make_upscaler",
    "run_upscaler",
]

# The official heads use the RoPE base of the SAM branch of a 36-patch (504 px) Pi3 grid rescaled
# to the 64x64 fusion grid: 100 * 36 / 64. Using Pi3's 100 instead moves mask logits by ~0.46.
DEFAULT_ROPE_BASE: float = 100.0 * 36.0 / 64.0


def grid_positions(height: int, width: int, device: torch.device | str | None = None) -> Tensor:
    """Integer (y, x) positions of a row-major ``height x width`` grid.

    Gmos positions start at 0 (unlike Pi3, which shifts patches by +1 to make room for its
    register tokens), y outer and x inner, matching ``flatten(2)`` of a (B, C, H, W) map.

    Returns:
        (height*width, 2) int64 tensor, column 0 = y, column 1 = x.
    """
    ys = torch.arange(height, device=device)
    xs = torch.arange(width, device=device)
    return torch.cartesian_prod(ys, xs)


class RotaryPositionEmbedding2D(nn.Module):
    """2-D rotary position embedding (VGGT/Pi3 layout) applied per attention head.

    The head dim ``D`` is split in two halves: the first rotates with the y coordinate, the second
    with x. Within a half of size ``d = D/2`` channel ``i`` is paired with ``i + d/2`` (rotate-half,
    not interleaved) and pair ``j`` turns with frequency ``base ** (-2j / d)``.

    The module has no parameters, so sharing one instance between attention layers adds no
    ``state_dict`` keys (the official model shares one, too).
    """

    def __init__(self, base: float = DEFAULT_ROPE_BASE) -> None:
        super().__init__()
        if base <= 0:
            raise ValueError(f"RoPE frequency base must be positive, got {base}")
        self.base = float(base)

    def extra_repr(self) -> str:
        return f"base={self.base}"

    def _cos_sin(self, pos: Tensor, dim: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """cos/sin tables for one axis.

        Args:
            pos: (..., N) integer positions along one axis.
            dim: channels rotated by this axis (half the head dim); must be even.
        Returns:
            cos, sin: (..., N, dim), laid out as ``cat([angle, angle])`` for rotate-half.
        """
        # Frequencies and angles are computed in float32 whatever the activation dtype, the way
        # the reference builds its tables; the result is cast afterwards.
        inv_freq = 1.0 / (self.base ** (torch.arange(0, dim, 2, device=pos.device).float() / dim))
        angles = pos.to(torch.float32)[..., None] * inv_freq  # (..., N, dim/2)
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos().to(dtype), angles.sin().to(dtype)

    @staticmethod
    def _rotate_half(x: Tensor) -> Tensor:
        first, second = x.chunk(2, dim=-1)
        return torch.cat((-second, first), dim=-1)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        """Rotate ``x`` by its token positions.

        Args:
            x: (B, Hd, N, D) per-head queries or keys; D must be divisible by 4.
            pos: (N, 2) or (B, N, 2) integer (y, x) positions.
        Returns:
            (B, Hd, N, D) rotated tensor, same dtype as ``x``.
        """
        head_dim = x.shape[-1]
        if head_dim % 4 != 0:
            raise ValueError(f"2-D RoPE needs a head dim divisible by 4, got {head_dim}")
        if pos.shape[-1] != 2 or pos.shape[-2] != x.shape[-2]:
            raise ValueError(
                f"RoPE positions must be (N, 2) or (B, N, 2) with N={x.shape[-2]}, "
                f"got {tuple(pos.shape)}"
            )
        half = head_dim // 2
        # (N, 2) -> broadcast over batch and heads; (B, N, 2) -> insert the head axis.
        pos = pos if pos.dim() == 2 else pos[:, None]
        out = []
        for axis, part in enumerate(x.split(half, dim=-1)):  # axis 0: y, axis 1: x
            cos, sin = self._cos_sin(pos[..., axis], half, x.dtype)
            out.append(part * cos + self._rotate_half(part) * sin)
        return torch.cat(out, dim=-1)


class MLP(nn.Module):
    """Stack of ``num_layers`` Linear layers with an activation between them (not after the last).

    Keys: ``layers.{i}.{weight,bias}``.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLP needs at least one layer, got num_layers={num_layers}")
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out))
        self.act = activation()

    def forward(self, x: Tensor) -> Tensor:
        """(..., input_dim) -> (..., output_dim)."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.act(x)
        return x


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) map (SAM / ConvNeXt style), eps 1e-6.

    Keys: ``weight`` (C,), ``bias`` (C,).
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W), normalised per pixel over C (biased variance)."""
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class TokenProjector(nn.Module):
    """Linear -> exact GELU -> Dropout -> LayerNorm(eps 1e-6), applied channels-last.

    Keys: ``proj.{weight,bias}``, ``norm.{weight,bias}``.
    """

    def __init__(self, in_dim: int, embed_dim: int, p_drop: float = 0.2) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, embed_dim)
        self.act = nn.GELU()
        self.drop = nn.Dropout(p_drop)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        # Official init: truncated normal std 0.02 for the projection (only matters for training).
        nn.init.trunc_normal_(self.proj.weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_dim) -> (..., embed_dim)."""
        return self.norm(self.drop(self.act(self.proj(x))))


class Attention(nn.Module):
    """Multi-head attention with an optional internal down-projection and optional 2-D RoPE.

    ``q_proj``/``k_proj``/``v_proj`` map ``embedding_dim -> embedding_dim // downsample_rate`` and
    ``out_proj`` maps back. RoPE (when the layer has one) is applied after the head split, only to
    the side(s) for which positions are passed, so one module serves self-attention (both sides)
    and the decoder's cross-attentions (image side only).
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        downsample_rate: int = 1,
        rope: RotaryPositionEmbedding2D | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        internal_dim = embedding_dim // downsample_rate
        if internal_dim % num_heads != 0:
            raise ValueError(
                f"num_heads={num_heads} must divide the attention width "
                f"{embedding_dim}//{downsample_rate}={internal_dim}"
            )
        self.embedding_dim = embedding_dim
        self.internal_dim = internal_dim
        self.num_heads = num_heads
        self.dropout_p = dropout
        self.q_proj = nn.Linear(embedding_dim, internal_dim)
        self.k_proj = nn.Linear(embedding_dim, internal_dim)
        self.v_proj = nn.Linear(embedding_dim, internal_dim)
        self.out_proj = nn.Linear(internal_dim, embedding_dim)
        # The RoPE instance is shared by every layer of a model; it has no parameters, so
        # registering it here as a child adds no state-dict keys.
        self.rope = rope

    def _split_heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        q_pos: Tensor | None = None,
        k_pos: Tensor | None = None,
    ) -> Tensor:
        """Attend ``q`` to ``k``/``v``.

        Args:
            q: (B, Nq, C); k, v: (B, Nk, C).
            q_pos: (Nq, 2) or (B, Nq, 2) integer positions to RoPE-rotate the queries, or None.
            k_pos: (Nk, 2) or (B, Nk, 2) positions for the keys, or None.
        Returns:
            (B, Nq, C).
        """
        qh = self._split_heads(self.q_proj(q))  # (B, Hd, Nq, D)
        kh = self._split_heads(self.k_proj(k))
        vh = self._split_heads(self.v_proj(v))
        if self.rope is not None:
            if q_pos is not None:
                qh = self.rope(qh, q_pos)
            if k_pos is not None:
                kh = self.rope(kh, k_pos)
        out = F.scaled_dot_product_attention(
            qh, kh, vh, dropout_p=self.dropout_p if self.training else 0.0
        )
        b, _, n, _ = out.shape
        out = out.transpose(1, 2).reshape(b, n, self.internal_dim)
        return self.out_proj(out)


class PostNormSelfAttentionBlock(nn.Module):
    """``norm1(x + attn(x; RoPE on q, k))`` then ``norm2(x + mlp(x))``.

    Keys: ``self_attn.*``, ``norm1``, ``mlp.layers.{0,1}``, ``norm2``.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        rope: RotaryPositionEmbedding2D | None,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads, rope=rope)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, 2, activation=activation)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.rope = rope

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        """(B, N, C) tokens with (N, 2) positions -> (B, N, C)."""
        if self.rope is None:
            # Without RoPE the positions would have to be an additive PE; the official heads
            # always have RoPE, so this path only keeps the block usable on its own.
            attn = self.self_attn(q=x, k=x, v=x)
        else:
            attn = self.self_attn(q=x, k=x, v=x, q_pos=pos, k_pos=pos)
        x = self.norm1(x + attn)
        return self.norm2(x + self.mlp(x))


class TransformerEncoder(nn.Module):
    """Stack of post-norm RoPE self-attention blocks over a dense feature map (``trans_encoder``).

    Keys: ``layers.{i}.*``. No final norm, no additive position embedding.
    """

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        rope: RotaryPositionEmbedding2D | None,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            PostNormSelfAttentionBlock(embedding_dim, num_heads, mlp_dim, rope)
            for _ in range(depth)
        )

    def forward(self, image: Tensor, pos: Tensor) -> Tensor:
        """(B, C, H, W) map with (H*W, 2) row-major positions -> (B, C, H, W)."""
        b, c, h, w = image.shape
        x = image.flatten(2).transpose(1, 2)  # (B, HW, C), row-major tokens
        for layer in self.layers:
            x = layer(x, pos)
        return x.transpose(1, 2).reshape(b, c, h, w)


class TwoWayAttentionBlock(nn.Module):
    """SAM-style two-way block with RoPE on the image side only.

    Order (post-norm): query self-attention -> norm1; token->image cross-attention -> norm2;
    MLP -> norm3; image->token cross-attention -> norm4 (updates the image tokens).

    Keys: ``self_attn``, ``norm1``, ``cross_attn_token_to_image``, ``norm2``, ``mlp.layers``,
    ``norm3``, ``cross_attn_image_to_token``, ``norm4``.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        rope: RotaryPositionEmbedding2D | None,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        # The query self-attention is full width and never rotated: queries have no positions.
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate, rope=rope
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, 2, activation=activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate, rope=rope
        )
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.skip_first_layer_pe = skip_first_layer_pe
        self.rope = rope

    def forward(
        self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pos: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One two-way step.

        Args:
            queries: (B, Q, C) object tokens; query_pe: (B, Q, C) additive query PE.
            keys: (B, N, C) image tokens; key_pos: (N, 2) integer image positions.
        Returns:
            (queries (B, Q, C), keys (B, N, C)).
        """
        if self.skip_first_layer_pe:
            # Layer 0: the queries *are* the PE, so SAM replaces them (no residual, no PE).
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            qpe = queries + query_pe
            queries = queries + self.self_attn(q=qpe, k=qpe, v=queries)
        queries = self.norm1(queries)

        queries = queries + self._token_to_image(queries + query_pe, keys, key_pos)
        queries = self.norm2(queries)

        queries = self.norm3(queries + self.mlp(queries))

        keys = keys + self._image_to_token(keys, queries + query_pe, queries, key_pos)
        keys = self.norm4(keys)
        return queries, keys

    def _token_to_image(self, q: Tensor, keys: Tensor, key_pos: Tensor) -> Tensor:
        if self.rope is None:
            # No RoPE means no position information at all; the official heads never take this.
            return self.cross_attn_token_to_image(q=q, k=keys, v=keys)
        return self.cross_attn_token_to_image(q=q, k=keys, v=keys, k_pos=key_pos)

    def _image_to_token(self, keys: Tensor, k: Tensor, v: Tensor, key_pos: Tensor) -> Tensor:
        if self.rope is None:
            return self.cross_attn_image_to_token(q=keys, k=k, v=v)
        return self.cross_attn_image_to_token(q=keys, k=k, v=v, q_pos=key_pos)


class TwoWayTransformer(nn.Module):
    """The proposer's ``trans_decoder``: two-way blocks, then a final token->image attention.

    Keys: ``layers.{i}.*``, ``final_attn_token_to_image.*``, ``norm_final_attn``.
    """

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        rope: RotaryPositionEmbedding2D | None,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim,
                num_heads,
                mlp_dim,
                rope,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate, rope=rope
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)
        self.rope = rope

    def forward(self, image: Tensor, pos: Tensor, query_tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Decode object queries against a dense map.

        Args:
            image: (B, C, H, W) encoder output.
            pos: (H*W, 2) row-major integer positions of ``image``.
            query_tokens: (B, Q, C) learned tokens; they are both the initial queries and the
                query PE.
        Returns:
            (queries (B, Q, C) after ``norm_final_attn``, image (B, C, H, W) updated).
        """
        b, c, h, w = image.shape
        keys = image.flatten(2).transpose(1, 2)
        queries = query_tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, query_pe=query_tokens, key_pos=pos)
        q = queries + query_tokens
        if self.rope is None:
            attn = self.final_attn_token_to_image(q=q, k=keys, v=keys)
        else:
            attn = self.final_attn_token_to_image(q=q, k=keys, v=keys, k_pos=pos)
        queries = self.norm_final_attn(queries + attn)
        return queries, keys.transpose(1, 2).reshape(b, c, h, w)


def make_upscaler(embed_dim: int) -> nn.Sequential:
    """ConvT(C->C/4, 2x) -> LayerNorm2d -> GELU -> ConvT(C/4->C/8, 2x) -> GELU.

    The indices (0, 1, 3 carry weights) are part of the key names, so the Sequential layout is
    fixed. Callers run the pieces by hand to add the high-res skips between them.
    """
    if embed_dim % 8 != 0:
        raise ValueError(f"embed_dim must be divisible by 8 for the upscaler, got {embed_dim}")
    return nn.Sequential(
        nn.ConvTranspose2d(embed_dim, embed_dim // 4, kernel_size=2, stride=2),
        LayerNorm2d(embed_dim // 4),
        nn.GELU(),
        nn.ConvTranspose2d(embed_dim // 4, embed_dim // 8, kernel_size=2, stride=2),
        nn.GELU(),
    )


def run_upscaler(upscaler: nn.Sequential, src: Tensor, feat_s0: Tensor, feat_s1: Tensor) -> Tensor:
    """Upscale 4x with SAM2 high-res skips.

    Args:
        src: (B, C, g, g); feat_s1: (B, C/4, 2g, 2g); feat_s0: (B, C/8, 4g, 4g).
    Returns:
        (B, C/8, 4g, 4g).
    """
    dc1, ln1, act1, dc2, act2 = upscaler
    x = act1(ln1(dc1(src) + feat_s1))
    return act2(dc2(x) + feat_s0)


class UpSampling(nn.Module):
    """Mask head of the proposer: 4x upscaling with high-res skips plus a hypernetwork MLP.

    Keys: ``output_upscaling.{0,1,3}``, ``output_hypernetwork_mlp.layers.{0,1,2}``.
    """

    def __init__(self, transformer_dim: int) -> None:
        super().__init__()
        self.output_upscaling = make_upscaler(transformer_dim)
        self.output_hypernetwork_mlp = MLP(
            transformer_dim, transformer_dim, transformer_dim // 8, 3
        )

    def forward(self, src: Tensor, obj_tokens: Tensor, feat_s0: Tensor, feat_s1: Tensor) -> Tensor:
        """Per-query mask logits.

        Args:
            src: (B, C, g, g) decoder image output; obj_tokens: (B, Q, C).
            feat_s0: (B, C/8, 4g, 4g); feat_s1: (B, C/4, 2g, 2g) SAM2 high-res features.
        Returns:
            (B, Q, 4g, 4g) mask logits (before the motion offset).
        """
        hyper_in = self.output_hypernetwork_mlp(obj_tokens)  # (B, Q, C/8)
        emb = run_upscaler(self.output_upscaling, src, feat_s0, feat_s1)
        b, c, h, w = emb.shape
        return (hyper_in @ emb.reshape(b, c, h * w)).reshape(b, -1, h, w)
