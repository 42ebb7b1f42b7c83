"""The Gmos heads: ``GmosProposer`` (multi-object queries) and ``GmosS`` (one foreground mask).

Both fuse a Pi3 feature of the middle frame with SAM2 image features on a shared ``g x g`` grid
(g = 64 in the official models, i.e. SAM2's stride-16 map of a 1024x1024 image) and refine the
fusion with a post-norm RoPE transformer encoder. Their parameter names equal the official
checkpoints of ``GMOSProposer`` (211 keys) and ``GMOS_S`` (80 keys); 72 keys are shared.

Inputs (official sizes in brackets):
    token: (B, h, w, pi3_dim) Pi3 middle-frame feature, channels-last, any h, w [1024].
    sam_btn: (B, sam_dim, g, g) SAM2 bottleneck with ``no_mem_embed`` added [256, 64].
    high_res_features: [feat_s0 (B, C/8, 4g, 4g), feat_s1 (B, C/4, 2g, 2g)], SAM2's level-0/1
        maps after ``conv_s0`` / ``conv_s1``; C = embed_dim [32 @ 256, 64 @ 128]. The official
        code ties these channel counts to ``embed_dim`` (``transformer_dim // 8`` and ``// 4``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmos_core.models.gmos_layers import (
    DEFAULT_ROPE_BASE,
    MLP,
    RotaryPositionEmbedding2D,
    TokenProjector,
    TransformerEncoder,
    TwoWayTransformer,
    UpSampling,
    grid_positions,
    make_upscaler,
    run_upscaler,
)

__all__ = ["GmosProposer", "GmosS"]


class _GmosTrunk(nn.Module):
    """Shared input fusion + encoder. Subclasses call ``_build_trunk`` in ``__init__``.

    Not a public class: the official checkpoints have no prefix for these modules, so they must
    be direct attributes of each head.
    """

    embed_dim: int
    pi3_dim: int
    sam_dim: int
    grid: int

    def _build_trunk(
        self,
        embed_dim: int,
        pi3_dim: int,
        sam_dim: int,
        encoder_depth: int,
        num_heads: int,
        mlp_dim: int,
        rope_base: float,
        grid: int,
        p_drop: float,
    ) -> None:
        for name, value in (
            ("embed_dim", embed_dim),
            ("pi3_dim", pi3_dim),
            ("sam_dim", sam_dim),
            ("num_heads", num_heads),
            ("mlp_dim", mlp_dim),
            ("grid", grid),
        ):
            if int(value) != value or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if embed_dim % 8 != 0:
            raise ValueError(f"embed_dim must be divisible by 8 (mask head), got {embed_dim}")
        # Encoder heads are embed_dim/num_heads wide, the decoder cross-attentions half that;
        # 2-D RoPE needs both divisible by 4.
        if embed_dim % (num_heads * 8) != 0:
            raise ValueError(
                f"embed_dim / num_heads must be divisible by 8 for the 2-D RoPE of the 2x "
                f"down-projected cross-attention, got embed_dim={embed_dim}, num_heads={num_heads}"
            )
        self.embed_dim = embed_dim
        self.pi3_dim = pi3_dim
        self.sam_dim = sam_dim
        self.grid = grid
        self.rope = RotaryPositionEmbedding2D(rope_base)
        self.pi3_projector = TokenProjector(pi3_dim, embed_dim, p_drop)
        self.sam_projector = TokenProjector(sam_dim, embed_dim, p_drop)
        self.merge_projector = TokenProjector(2 * embed_dim, embed_dim, p_drop)
        self.trans_encoder = TransformerEncoder(
            encoder_depth, embed_dim, num_heads, mlp_dim, rope=self.rope
        )

    @property
    def high_res_shapes(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """(C, H, W) expected for ``feat_s0`` and ``feat_s1``."""
        c, g = self.embed_dim, self.grid
        return (c // 8, 4 * g, 4 * g), (c // 4, 2 * g, 2 * g)

    def _check_inputs(
        self, token: Tensor, sam_btn: Tensor, high_res_features: Sequence[Tensor] | None
    ) -> tuple[Tensor, Tensor]:
        """Validate shapes; return (feat_s0, feat_s1)."""
        if token.dim() != 4 or token.shape[-1] != self.pi3_dim:
            raise ValueError(
                f"token must be (B, h, w, {self.pi3_dim}) channels-last Pi3 features, "
                f"got {tuple(token.shape)}"
            )
        b = token.shape[0]
        g = self.grid
        if tuple(sam_btn.shape) != (b, self.sam_dim, g, g):
            raise ValueError(
                f"sam_btn must be (B={b}, {self.sam_dim}, {g}, {g}) SAM2 bottleneck features, "
                f"got {tuple(sam_btn.shape)}"
            )
        if high_res_features is None or len(high_res_features) != 2:
            raise ValueError(
                "high_res_features must be [feat_s0, feat_s1] (SAM2 conv_s0 / conv_s1 outputs); "
                f"got {None if high_res_features is None else len(high_res_features)} tensors"
            )
        feat_s0, feat_s1 = high_res_features
        for name, feat, shape in zip(
            ("high_res_features[0] (feat_s0)", "high_res_features[1] (feat_s1)"),
            (feat_s0, feat_s1),
            self.high_res_shapes,
        ):
            if tuple(feat.shape) != (b, *shape):
                raise ValueError(f"{name} must be {(b, *shape)}, got {tuple(feat.shape)}")
        return feat_s0, feat_s1

    def _encode(self, token: Tensor, sam_btn: Tensor) -> tuple[Tensor, Tensor]:
        """Fuse Pi3 and SAM2 features and run the encoder.

        Args:
            token: (B, h, w, pi3_dim); sam_btn: (B, sam_dim, g, g).
        Returns:
            (encoded (B, C, g, g), positions (g*g, 2) int64).
        """
        dtype = self.pi3_projector.proj.weight.dtype
        g = self.grid
        # Project the Pi3 tokens at their native resolution first and resize afterwards: the
        # official order (resizing 1024-d features would be 4x the work and different numbers).
        pi3 = self.pi3_projector(token.to(dtype))  # (B, h, w, C)
        pi3 = F.interpolate(
            pi3.permute(0, 3, 1, 2), size=(g, g), mode="bilinear", align_corners=False
        )  # (B, C, g, g)
        sam = self.sam_projector(sam_btn.to(dtype).permute(0, 2, 3, 1))  # (B, g, g, C)
        # Concatenation order [pi3, sam] fixes the meaning of merge_projector's input columns.
        merged = torch.cat([pi3.permute(0, 2, 3, 1), sam], dim=-1)  # (B, g, g, 2C)
        merged = self.merge_projector(merged).permute(0, 3, 1, 2)  # (B, C, g, g)
        pos = grid_positions(g, g, device=merged.device)
        return self.trans_encoder(merged, pos), pos


class GmosProposer(_GmosTrunk):
    """Gmos proposer: ``num_obj_tokens`` object queries, each with a mask, motion, IoU, confidence.

    Defaults are the official sizes (9,911,941 parameters, 211 keys). Every size is a constructor
    argument so that small configurations can be tested; the mask resolution is ``4 * grid``.
    """

    def __init__(
        self,
        embed_dim: int = 256,
        pi3_dim: int = 1024,
        sam_dim: int = 256,
        encoder_depth: int = 3,
        decoder_depth: int = 3,
        num_heads: int = 8,
        num_obj_tokens: int = 100,
        conf_max: float = 5.0,
        mlp_dim: int = 2048,
        rope_base: float = DEFAULT_ROPE_BASE,
        grid: int = 64,
        p_drop: float = 0.2,
    ) -> None:
        super().__init__()
        if num_obj_tokens <= 0:
            raise ValueError(f"num_obj_tokens must be positive, got {num_obj_tokens}")
        # Official init (matters only for training): tiny query tokens, motion offset that starts
        # as ~0 (weight N(0, 0.01)) and a bias of 1 that suppresses static objects.
        self.obj_token = nn.Parameter(torch.empty(1, num_obj_tokens, embed_dim))
        nn.init.normal_(self.obj_token, std=1e-6)
        self.motion_bias = nn.Parameter(torch.tensor(1.0))
        self.motion_weight = nn.Parameter(torch.empty(1))
        nn.init.normal_(self.motion_weight, std=0.01)
        self._build_trunk(
            embed_dim, pi3_dim, sam_dim, encoder_depth, num_heads, mlp_dim, rope_base, grid, p_drop
        )
        self.trans_decoder = TwoWayTransformer(
            decoder_depth, embed_dim, num_heads, mlp_dim, rope=self.rope
        )
        self.upsampling = UpSampling(embed_dim)
        self.motion_head = MLP(embed_dim, embed_dim, 1, 3)
        self.conf_head = MLP(embed_dim, embed_dim, 1, 3)
        self.iou_head = MLP(embed_dim, embed_dim, 1, 3)
        self.num_obj_tokens = num_obj_tokens
        self.conf_max = float(conf_max)

    def forward(
        self,
        token: Tensor,
        sam_btn: Tensor,
        high_res_features: Sequence[Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Propose masks.

        Args:
            token: (B, h, w, pi3_dim) Pi3 middle-frame feature (channels-last).
            sam_btn: (B, sam_dim, g, g) SAM2 bottleneck (+ no_mem_embed).
            high_res_features: [feat_s0 (B, C/8, 4g, 4g), feat_s1 (B, C/4, 2g, 2g)]; required.
        Returns:
            dict with ``mask`` (B, Q, 4g, 4g) logits *after* the motion offset,
            ``motion_logits`` (B, Q, 1), ``iou_pred`` (B, Q, 1) raw,
            ``conf_pred`` (B, Q, 1) in [1, conf_max].
        """
        feat_s0, feat_s1 = self._check_inputs(token, sam_btn, high_res_features)
        dtype = self.obj_token.dtype
        encoded, pos = self._encode(token, sam_btn)
        queries = self.obj_token.expand(token.shape[0], -1, -1)
        obj_out, dense_out = self.trans_decoder(encoded, pos, queries)
        mask = self.upsampling(dense_out, obj_out, feat_s0.to(dtype), feat_s1.to(dtype))

        motion_logits = self.motion_head(obj_out)  # (B, Q, 1)
        # Per-query additive logit offset: pushes static queries (sigmoid < motion_bias) down.
        offset = self.motion_weight * (motion_logits.sigmoid() - self.motion_bias)
        mask = mask + offset[..., None]  # (B, Q, 1, 1) broadcast over pixels
        iou_pred = self.iou_head(obj_out)
        conf_pred = self.conf_head(obj_out).sigmoid() * (self.conf_max - 1.0) + 1.0
        return {
            "mask": mask,
            "motion_logits": motion_logits,
            "iou_pred": iou_pred,
            "conf_pred": conf_pred,
        }


class GmosS(_GmosTrunk):
    """Gmos-S: one foreground logit map per frame, plus image-level IoU and confidence.

    Defaults are the official sizes (4,743,939 parameters, 80 keys).
    """

    def __init__(
        self,
        embed_dim: int = 256,
        pi3_dim: int = 1024,
        sam_dim: int = 256,
        encoder_depth: int = 3,
        num_heads: int = 8,
        conf_max: float = 5.0,
        mlp_dim: int = 2048,
        rope_base: float = DEFAULT_ROPE_BASE,
        grid: int = 64,
        p_drop: float = 0.2,
    ) -> None:
        super().__init__()
        self._build_trunk(
            embed_dim, pi3_dim, sam_dim, encoder_depth, num_heads, mlp_dim, rope_base, grid, p_drop
        )
        self.fg_upscaling = make_upscaler(embed_dim)
        self.fg_out = nn.Conv2d(embed_dim // 8, 1, kernel_size=1)
        self.iou_head = MLP(embed_dim, embed_dim, 1, 3)
        self.conf_head = MLP(embed_dim, embed_dim, 1, 3)
        self.conf_max = float(conf_max)

    def forward(
        self,
        token: Tensor,
        sam_btn: Tensor,
        high_res_features: Sequence[Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Segment the moving foreground.

        Args:
            token: (B, h, w, pi3_dim); sam_btn: (B, sam_dim, g, g);
            high_res_features: [feat_s0 (B, C/8, 4g, 4g), feat_s1 (B, C/4, 2g, 2g)]; required.
        Returns:
            dict with ``fg_mask`` (B, 1, 4g, 4g) logits, ``iou_pred`` (B, 1) raw,
            ``conf_pred`` (B, 1) in [1, conf_max].
        """
        feat_s0, feat_s1 = self._check_inputs(token, sam_btn, high_res_features)
        dtype = self.fg_out.weight.dtype
        encoded, _ = self._encode(token, sam_btn)
        x = run_upscaler(self.fg_upscaling, encoded, feat_s0.to(dtype), feat_s1.to(dtype))
        fg_mask = self.fg_out(x)
        # The image-level heads see the encoder output averaged over the grid.
        pooled = encoded.flatten(2).mean(dim=2)  # (B, C)
        iou_pred = self.iou_head(pooled)
        conf_pred = self.conf_head(pooled).sigmoid() * (self.conf_max - 1.0) + 1.0
        return {"fg_mask": fg_mask, "iou_pred": iou_pred, "conf_pred": conf_pred}
