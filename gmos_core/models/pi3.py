"""π³ (Pi3) geometric encoder: DINOv2-L/14-reg + the 36-block alternating RoPE decoder, no heads.

This is the part of Pi3 that Gmos consumes (``PARITY.md`` §6.1): the output of the last decoder block
with the 5 decoder registers dropped and **no** final norm, shape (B, N, h, w, 1024) for N frames.

The computation is split in two so that a streaming node can cache the per-frame part:

- :meth:`Pi3Encoder.encode_frames` — ImageNet normalisation + DINOv2 → ``x_norm_patchtokens``
  (M, h·w, D) per frame, independent of the other frames;
- :meth:`Pi3Encoder.decode_window` — the decoder on a window of N cached frames.

State-dict keys are those of the official ``Pi3`` module minus its heads, so the official
``yyfz233/Pi3`` ``model.safetensors`` loads with :meth:`Pi3Encoder.from_safetensors`.

Units: images are float in [0, 1], channels RGB, pixel sizes multiples of the 14-px patch; ``h, w``
are patch-grid sizes (H/14, W/14).
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from gmos_core.models.checkpoints import CheckpointError
from gmos_core.models.layers import Block, PatchEmbed, rope2d_cos_sin
from gmos_core.models.pi3_heads import Pi3Geometry, Pi3Heads, build_heads, run_heads

__all__ = [
    "IGNORED_HEAD_PREFIXES",
    "DinoV2Encoder",
    "Pi3Decoder",
    "Pi3Encoder",
    "Pi3LoadReport",
    "load_safetensors_file",
    "pi3_positions",
]

# Official Pi3 heads. A plain (mask-only) encoder skips and reports them; a model built with
# ``with_heads=True`` loads them when the checkpoint has them (gmos_core.models.pi3_heads).
IGNORED_HEAD_PREFIXES: tuple[str, ...] = (
    "point_decoder.",
    "point_head.",
    "conf_decoder.",
    "conf_head.",
    "camera_decoder.",
    "camera_head.",
)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------------
# DINOv2
# --------------------------------------------------------------------------------------------------


class DinoV2Encoder(nn.Module):
    """DINOv2 ViT/14 with a cls token and register tokens (``dinov2_vitl14_reg`` at defaults).

    Keys: ``cls_token`` (1,1,D), ``pos_embed`` (1,1+G²,D) for a G×G training grid (G=37 ↔ 518 px),
    ``register_tokens`` (1,R,D), ``patch_embed.proj.*``, ``blocks.{i}.*``, ``norm.*``.

    Token order inside the blocks is [cls, R registers, h·w patches]; the position embedding is
    added to [cls, patches] *before* the registers are inserted, so registers have no position.
    """

    def __init__(
        self,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        patch_size: int = 14,
        num_register_tokens: int = 4,
        pos_grid: int = 37,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        self.pos_grid = pos_grid
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pos_grid * pos_grid, embed_dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
        # DINOv2 uses LayerScale init 1.0 (and drop-path, which is a no-op at inference and whose
        # schedule is what makes the official constructor call .item(); it is omitted here).
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qk_norm=False, init_values=1.0)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        # Optional precomputed position embedding for one fixed grid (see set_fixed_grid). Not
        # persistent: it is derived from pos_embed and must not appear in the state dict.
        self.register_buffer("fixed_pos_embed", None, persistent=False)
        self.fixed_grid: tuple[int, int] | None = None
        self._init_weights()

    def _init_weights(self) -> None:
        # Only matters for training from scratch; official weights overwrite all of it. nn.init
        # functions are no-ops on meta tensors, so meta construction stays allocation free.
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        nn.init.normal_(self.register_tokens, std=1e-6)

    # ---- position embedding ----------------------------------------------------------------------

    def pos_embed_for_grid(
        self, h: int, w: int, pixel_hw: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Position embedding for an h×w patch grid, resized like the official DINOv2 code.

        The G×G patch part of ``pos_embed`` is cast to float32 and resized with
        ``F.interpolate(size=(h, w), mode="bicubic", antialias=True, align_corners=False)``; the cls
        position is kept. The resize is skipped only when the patch count equals G² **and** the
        pixel height equals the pixel width (the official condition; with pixel sizes that are
        multiples of the patch it means "the grid is G×G").

        Args:
            h, w: patch-grid size.
            pixel_hw: (H, W) in pixels for the skip condition; defaults to (h·patch, w·patch).

        Returns:
            (1, 1 + h·w, D) float32: [cls position, h·w patch positions row-major].
        """
        if h <= 0 or w <= 0:
            raise ValueError(f"pos_embed_for_grid: grid must be positive, got {h}x{w}")
        ph, pw = pixel_hw if pixel_hw is not None else (h * self.patch_size, w * self.patch_size)
        g = self.pos_grid
        pos = self.pos_embed.float()
        if h * w == g * g and ph == pw:
            return pos
        cls_pos = pos[:, :1]
        grid = pos[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)  # (1, D, G, G)
        # size= (not scale_factor): the reg models use interpolate_offset 0, which selects this path.
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
        grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)
        return torch.cat((cls_pos, grid), dim=1)

    @torch.no_grad()
    def set_fixed_grid(self, h: int, w: int) -> None:
        """Precompute the position embedding for one h×w grid and use it instead of the resize.

        Needed for ONNX/TensorRT export, where antialiased bicubic interpolation has no exportable
        equivalent. Call it *after* loading weights (``Pi3Encoder.load_official_state_dict``
        recomputes it automatically). While set, inputs with any other grid raise an error.
        """
        self.fixed_pos_embed = self.pos_embed_for_grid(h, w).detach().clone()
        self.fixed_grid = (int(h), int(w))

    def clear_fixed_grid(self) -> None:
        """Go back to resizing the position embedding in the graph for every input size."""
        self.fixed_pos_embed = None
        self.fixed_grid = None

    def _pos_embed(self, h: int, w: int, pixel_hw: tuple[int, int]) -> torch.Tensor:
        if self.fixed_pos_embed is None:
            return self.pos_embed_for_grid(h, w, pixel_hw)
        if self.fixed_grid != (h, w):
            raise ValueError(
                f"DinoV2Encoder: input grid {h}x{w} (pixels {pixel_hw[0]}x{pixel_hw[1]}) differs "
                f"from the fixed grid {self.fixed_grid}; call clear_fixed_grid() or set_fixed_grid()"
            )
        return self.fixed_pos_embed

    # ---- forward ---------------------------------------------------------------------------------

    def _check_images(self, x: torch.Tensor) -> tuple[int, int]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"DinoV2Encoder: expected (M, 3, H, W) images, got {tuple(x.shape)}")
        if not torch.is_floating_point(x):
            raise TypeError(f"DinoV2Encoder: expected a floating-point image tensor, got {x.dtype}")
        hh, ww = int(x.shape[-2]), int(x.shape[-1])
        p = self.patch_size
        if hh % p or ww % p or hh == 0 or ww == 0:
            raise ValueError(
                f"DinoV2Encoder: image size {hh}x{ww} (H x W) is not a positive multiple of the "
                f"{p}-px patch; resize with gmos_core.models.preprocess.pi3_preprocess"
            )
        return hh, ww

    def forward_features(
        self, x: torch.Tensor, pos_embed: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Run the ViT.

        Args:
            x: (M, 3, H, W) already-normalised images, H and W multiples of the patch.
            pos_embed: optional (1, 1 + h·w, D) position embedding to use instead of the resize
                (e.g. from :meth:`pos_embed_for_grid`).

        Returns:
            dict with ``x_norm_clstoken`` (M, D), ``x_norm_regtokens`` (M, R, D),
            ``x_norm_patchtokens`` (M, h·w, D) (after ``norm``) and ``x_prenorm`` (M, 1+R+h·w, D).
        """
        hh, ww = self._check_images(x)
        h, w = hh // self.patch_size, ww // self.patch_size
        tokens = self.patch_embed(x)  # (M, hw, D)
        m = tokens.shape[0]
        tokens = torch.cat((self.cls_token.expand(m, -1, -1), tokens), dim=1)
        if pos_embed is None:
            pos_embed = self._pos_embed(h, w, (hh, ww))
        elif tuple(pos_embed.shape) != (1, 1 + h * w, self.embed_dim):
            raise ValueError(
                f"DinoV2Encoder: pos_embed shape {tuple(pos_embed.shape)} does not match "
                f"(1, {1 + h * w}, {self.embed_dim}) for a {h}x{w} grid"
            )
        tokens = tokens + pos_embed.to(tokens.dtype)
        r = self.num_register_tokens
        if r:
            regs = self.register_tokens.expand(m, -1, -1)
            tokens = torch.cat((tokens[:, :1], regs, tokens[:, 1:]), dim=1)
        for blk in self.blocks:
            tokens = blk(tokens)
        normed = self.norm(tokens)
        return {
            "x_norm_clstoken": normed[:, 0],
            "x_norm_regtokens": normed[:, 1 : 1 + r],
            "x_norm_patchtokens": normed[:, 1 + r :],
            "x_prenorm": tokens,
        }

    def forward(self, x: torch.Tensor, pos_embed: torch.Tensor | None = None) -> torch.Tensor:
        """(M, 3, H, W) normalised images -> normed patch tokens (M, h·w, D)."""
        return self.forward_features(x, pos_embed)["x_norm_patchtokens"]


# --------------------------------------------------------------------------------------------------
# Pi3 decoder
# --------------------------------------------------------------------------------------------------


def pi3_positions(
    h: int, w: int, num_registers: int = 5, device: torch.device | None = None
) -> torch.Tensor:
    """RoPE positions of one frame in the Pi3 decoder.

    Returns:
        (num_registers + h·w, 2) int64 (y, x): registers at (0, 0), then patches at (y+1, x+1) in
        row-major order. Identical for every frame (there is no temporal position).
    """
    ys = torch.arange(h, device=device).repeat_interleave(w)
    xs = torch.arange(w, device=device).repeat(h)
    patches = torch.stack((ys, xs), dim=-1) + 1
    regs = torch.zeros(num_registers, 2, dtype=patches.dtype, device=device)
    return torch.cat((regs, patches), dim=0)


def _run_decoder(
    blocks: nn.ModuleList,
    register_token: torch.Tensor,
    tokens: torch.Tensor,
    h: int,
    w: int,
    rope_base: float,
) -> torch.Tensor:
    """Shared decoder body for :class:`Pi3Decoder` and :class:`Pi3Encoder`.

    Args:
        blocks: the decoder blocks; even index = within-frame, odd index = global attention.
        register_token: (1, 1, R, D).
        tokens: (B, N, h·w, D) DINOv2 patch tokens.

    Returns:
        (B, N, h, w, D): last block output without registers and without a final norm.
    """
    return _run_decoder_full(blocks, register_token, tokens, h, w, rope_base, False)[0]


def _run_decoder_full(
    blocks: nn.ModuleList,
    register_token: torch.Tensor,
    tokens: torch.Tensor,
    h: int,
    w: int,
    rope_base: float,
    keep_head_input: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, torch.Tensor]]:
    """:func:`_run_decoder` that can also keep what the π³ heads read.

    Returns:
        ``(features, head_input, frame_rope)``: features (B, N, h, w, D) as :func:`_run_decoder`;
        head_input (B·N, R + h·w, 2·D), the last two block outputs concatenated (registers kept),
        or None unless ``keep_head_input``; frame_rope the per-frame (cos, sin) tables.
    """
    if tokens.dim() != 4:
        raise ValueError(f"Pi3 decoder: expected tokens (B, N, h*w, D), got {tuple(tokens.shape)}")
    b, n, hw, d = tokens.shape
    if hw != h * w:
        raise ValueError(f"Pi3 decoder: tokens have {hw} patches but the grid is {h}x{w}={h * w}")
    if d != register_token.shape[-1]:
        raise ValueError(f"Pi3 decoder: token dim {d} != model dim {register_token.shape[-1]}")
    if len(blocks) == 0:
        raise ValueError("Pi3 decoder: no decoder blocks")
    r = register_token.shape[-2]
    l = r + hw  # noqa: E741 - tokens per frame
    regs = register_token.to(tokens.dtype).expand(b, n, r, d)
    x = torch.cat((regs, tokens), dim=2).reshape(b * n, l, d)
    head_dim = blocks[0].attn.head_dim
    pos = pi3_positions(h, w, r, device=tokens.device)  # (L, 2)
    # One table per frame; global blocks see the frames concatenated, so the table is tiled N times.
    cos, sin = rope2d_cos_sin(pos, head_dim, rope_base, tokens.dtype)  # (L, head_dim)
    frame_rope = (cos, sin)
    global_rope = (cos.repeat(n, 1), sin.repeat(n, 1))  # (N·L, head_dim), frame-major
    penultimate: torch.Tensor | None = None
    for i, blk in enumerate(blocks):
        if keep_head_input and i == len(blocks) - 1:
            penultimate = x.reshape(b * n, l, d)
        if i % 2 == 0:
            x = blk(x.reshape(b * n, l, d), frame_rope)
        else:
            x = blk(x.reshape(b, n * l, d), global_rope)
    head_input = None
    if keep_head_input:
        if penultimate is None:
            raise ValueError("Pi3 heads need at least 2 decoder blocks")
        head_input = torch.cat((penultimate, x.reshape(b * n, l, d)), dim=-1)
    x = x.reshape(b, n, l, d)[:, :, r:]
    return x.reshape(b, n, h, w, d), head_input, frame_rope


class Pi3Decoder(nn.Module):
    """Pi3's alternating frame-wise / global ``BlockRope`` stack with learned registers.

    Keys: ``decoder.{i}.{norm1, attn.qkv, attn.q_norm, attn.k_norm, attn.proj, ls1.gamma, norm2,
    mlp.fc1, mlp.fc2, ls2.gamma}`` and ``register_token`` (1, 1, R, D): the same names as in the
    official ``Pi3`` module, so the decoder alone can be loaded from an official state dict.

    Blocks: pre-norm (LayerNorm eps 1e-6), qk-norm (LayerNorm(head_dim), eps 1e-5, affine), 2-D RoPE
    (base ``rope_base``, y on the first half of each head, x on the second, rotate-half layout),
    LayerScale (init 0.01). Even blocks attend within a frame over R + h·w tokens, odd blocks over
    all N·(R + h·w) tokens of the window.
    """

    def __init__(
        self,
        dim: int = 1024,
        depth: int = 36,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_registers: int = 5,
        rope_base: float = 100.0,
    ) -> None:
        super().__init__()
        _check_rope_dims(dim, num_heads)
        self.rope_base = float(rope_base)
        self.decoder = _make_decoder_blocks(dim, depth, num_heads, mlp_ratio)
        self.register_token = nn.Parameter(torch.zeros(1, 1, num_registers, dim))
        nn.init.normal_(self.register_token, std=1e-6)

    def forward(self, tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(B, N, h·w, D) DINOv2 patch tokens -> (B, N, h, w, D) last-block features (no norm)."""
        return _run_decoder(self.decoder, self.register_token, tokens, h, w, self.rope_base)


def _check_rope_dims(dim: int, num_heads: int) -> None:
    if dim % num_heads != 0:
        raise ValueError(f"Pi3: dim {dim} is not divisible by num_heads {num_heads}")
    if (dim // num_heads) % 4 != 0:
        # Two coordinates × rotate-half pairs need head_dim divisible by 4.
        raise ValueError(f"Pi3: head dim {dim // num_heads} must be a multiple of 4 for 2-D RoPE")


def _make_decoder_blocks(dim: int, depth: int, num_heads: int, mlp_ratio: float) -> nn.ModuleList:
    # Pi3's BlockRope: qk-norm on, LayerScale init 0.01.
    return nn.ModuleList(
        Block(dim, num_heads, mlp_ratio, qk_norm=True, init_values=0.01) for _ in range(depth)
    )


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


@dataclass
class Pi3LoadReport:
    """What :meth:`Pi3Encoder.load_official_state_dict` did with each checkpoint key."""

    loaded: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # heads, when the model has none
    truncated: list[str] = field(
        default_factory=list
    )  # blocks beyond the model depth (truncate=True)
    # Model built with heads: True when the checkpoint had them and they were loaded; False when the
    # checkpoint had none (the heads keep their initial values; masks are unaffected).
    heads_loaded: bool = False

    def __str__(self) -> str:
        return (
            f"Pi3LoadReport: {len(self.loaded)} keys loaded, {len(self.ignored)} head keys ignored, "
            f"{len(self.truncated)} keys of extra blocks dropped, heads loaded: {self.heads_loaded}"
        )


_SAFETENSORS_DTYPES = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"}


def load_safetensors_file(
    path: str | os.PathLike[str], skip_prefixes: tuple[str, ...] = ()
) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file into CPU tensors after checking its framing.

    The header is validated first so that a wrong file type (a pickled ``.pth``, a zip, text) or a
    truncated download fails with a message that says so, instead of a parser error.

    Args:
        path: the file.
        skip_prefixes: keys starting with one of these are not read; they are returned as
            ``meta``-device tensors of the right shape and dtype, so callers still see the full
            key set (the official file holds ~200 M head parameters Gmos never uses).

    Raises:
        CheckpointError: missing file, not safetensors, or truncated.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    size = p.stat().st_size
    with p.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{p}: {size} bytes is too short to be a safetensors file")
        (header_len,) = struct.unpack("<Q", head)
        if head[:2] == b"PK" or head[:1] == b"\x80":
            raise CheckpointError(
                f"{p}: this is a PyTorch zip/pickle checkpoint, not safetensors; Pi3 weights are "
                "loaded from model.safetensors only (pickles are never unpickled)"
            )
        if header_len == 0 or header_len > min(size - 8, 1 << 28):
            raise CheckpointError(
                f"{p}: not a safetensors file (header length {header_len} does not fit a "
                f"{size}-byte file), or the file is truncated"
            )
        raw = f.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{p}: not a safetensors file (header is not JSON: {exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{p}: not a safetensors file (header is not a JSON object)")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if (
            not isinstance(info, dict)
            or info.get("dtype") not in _SAFETENSORS_DTYPES
            or not isinstance(info.get("data_offsets"), list)
        ):
            raise CheckpointError(f"{p}: malformed safetensors entry for {name!r}: {info!r}")
        end = max(end, int(info["data_offsets"][1]))
    payload = size - 8 - header_len
    if end > payload:
        raise CheckpointError(
            f"{p}: truncated safetensors file: tensors need {end} data bytes but only {payload} "
            "are present (incomplete download?)"
        )
    out: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            for key in f.keys():
                if skip_prefixes and key.startswith(skip_prefixes):
                    info = f.get_slice(key)
                    dtype = _ST_TO_TORCH.get(info.get_dtype(), torch.float32)
                    out[key] = torch.empty(info.get_shape(), dtype=dtype, device="meta")
                else:
                    out[key] = f.get_tensor(key)
    except Exception as exc:  # safetensors raises its own SafetensorError type
        raise CheckpointError(f"{p}: cannot read safetensors file: {exc}") from exc
    return out


_ST_TO_TORCH = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


_BLOCK_RE = {
    "encoder": re.compile(r"^encoder\.blocks\.(\d+)\."),
    "decoder": re.compile(r"^decoder\.(\d+)\."),
    "heads": re.compile(r"^(?:point|conf|camera)_decoder\.blocks\.(\d+)\."),
}


def _depths(keys: list[str] | set[str]) -> dict[str, int]:
    """Number of encoder / decoder blocks present in a key set (max index + 1)."""
    out = {"encoder": 0, "decoder": 0, "heads": 0}
    for k in keys:
        for part, rx in _BLOCK_RE.items():
            mt = rx.match(k)
            if mt:
                out[part] = max(out[part], int(mt.group(1)) + 1)
    return out


# --------------------------------------------------------------------------------------------------
# Full encoder
# --------------------------------------------------------------------------------------------------


class Pi3Encoder(nn.Module):
    """Pi3 without heads: ImageNet normalisation, DINOv2-L/14-reg, 36-block RoPE decoder.

    Submodules / keys: ``encoder`` (:class:`DinoV2Encoder`, keys ``encoder.*``), ``decoder``
    (``nn.ModuleList``, keys ``decoder.{i}.*``), ``register_token`` (1, 1, 5, D), buffers
    ``image_mean`` / ``image_std`` (1, 3, 1, 1) with the ImageNet values (they are in the official
    checkpoint too).

    ``with_heads=True`` adds the official point / confidence / camera heads at the root
    (``point_decoder.*``, ``point_head.*``, ``conf_decoder.*``, ``conf_head.*``, ``camera_decoder.*``,
    ``camera_head.*``; 958.7 M parameters in all at paper size) and :meth:`decode_window_geometry`;
    ``head_depth`` / ``head_width`` / ``head_num_heads`` / ``camera_width`` size them (official: 5,
    1024, 16, 512).

    Paper size (the defaults) has 757.9 M parameters; build it on the meta device to inspect it
    without allocating (``with torch.device("meta"): Pi3Encoder()``).
    """

    def __init__(
        self,
        encoder_depth: int = 24,
        decoder_depth: int = 36,
        embed_dim: int = 1024,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        patch_size: int = 14,
        num_register_tokens: int = 4,
        num_decoder_registers: int = 5,
        pos_grid: int = 37,
        rope_base: float = 100.0,
        with_heads: bool = False,
        head_depth: int = 5,
        head_width: int = 1024,
        head_num_heads: int = 16,
        camera_width: int = 512,
    ) -> None:
        super().__init__()
        _check_rope_dims(embed_dim, num_heads)
        self.with_heads = with_heads
        self.heads_loaded = False  # set by load_official_state_dict
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.rope_base = float(rope_base)
        # Registration order (parameter, buffers, encoder, decoder) reproduces the official
        # state-dict order: register_token, image_mean, image_std, encoder.*, decoder.*.
        self.register_token = nn.Parameter(torch.zeros(1, 1, num_decoder_registers, embed_dim))
        nn.init.normal_(self.register_token, std=1e-6)
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.encoder = DinoV2Encoder(
            embed_dim=embed_dim,
            depth=encoder_depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            patch_size=patch_size,
            num_register_tokens=num_register_tokens,
            pos_grid=pos_grid,
        )
        self.decoder = _make_decoder_blocks(embed_dim, decoder_depth, num_heads, mlp_ratio)
        self.head_depth = head_depth if with_heads else 0
        if with_heads:
            # Root-level attributes, registered after the decoder: official names and key order.
            for name, module in build_heads(
                embed_dim, head_width, head_depth, head_num_heads, camera_width, patch_size
            ).items():
                self.add_module(name, module)

    # ---- compute ---------------------------------------------------------------------------------

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Patch grid (h, w) for an image of ``height`` × ``width`` pixels (multiples of the patch)."""
        p = self.patch_size
        if height <= 0 or width <= 0 or height % p or width % p:
            raise ValueError(
                f"Pi3Encoder: image size {height}x{width} (H x W) is not a positive multiple of "
                f"{p}; resize with gmos_core.models.preprocess.pi3_preprocess"
            )
        return height // p, width // p

    def encode_frames(self, imgs: torch.Tensor) -> torch.Tensor:
        """Per-frame, cacheable part: normalisation + DINOv2 + ``norm``.

        Args:
            imgs: (M, 3, H, W) float RGB in [0, 1]; H, W multiples of 14.

        Returns:
            (M, h·w, D) ``x_norm_patchtokens`` with h = H/14, w = W/14.
        """
        if imgs.dim() != 4 or imgs.shape[1] != 3:
            raise ValueError(
                f"Pi3Encoder.encode_frames: expected (M, 3, H, W), got {tuple(imgs.shape)}"
            )
        self.grid_size(int(imgs.shape[-2]), int(imgs.shape[-1]))
        x = (imgs - self.image_mean.to(imgs.dtype)) / self.image_std.to(imgs.dtype)
        return self.encoder(x)

    def decode_window(self, tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Per-window part: registers + decoder blocks.

        Args:
            tokens: (B, N, h·w, D) output of :meth:`encode_frames` for the N frames of each window.
            h, w: patch grid.

        Returns:
            (B, N, h, w, D): last decoder block output, registers dropped, no final norm.
        """
        return _run_decoder(self.decoder, self.register_token, tokens, h, w, self.rope_base)

    def decode_window_geometry(
        self, tokens: torch.Tensor, h: int, w: int
    ) -> tuple[torch.Tensor, Pi3Geometry]:
        """:meth:`decode_window` plus the π³ heads on the same decoder pass (model with heads).

        Args:
            tokens: (B, N, h·w, D) output of :meth:`encode_frames`.
            h, w: patch grid.

        Returns:
            ``(features, geometry)``: features exactly as :meth:`decode_window`; geometry a
            :class:`~gmos_core.models.pi3_heads.Pi3Geometry` at full resolution (h·14, w·14).
        """
        if not self.with_heads:
            raise ValueError("Pi3Encoder: built without heads (with_heads=False)")
        feats, head_input, _rope = _run_decoder_full(
            self.decoder, self.register_token, tokens, h, w, self.rope_base, True
        )
        assert head_input is not None
        r = self.register_token.shape[-2]
        pos = pi3_positions(h, w, r, device=tokens.device)
        geom = run_heads(self, head_input, pos, self.rope_base, int(tokens.shape[0]), h, w, r)
        return feats, geom

    def heads_module(self) -> Pi3Heads:
        """A :class:`Pi3Heads` that *shares* this model's head submodules (no copy)."""
        if not self.with_heads:
            raise ValueError("Pi3Encoder: built without heads (with_heads=False)")
        with torch.device("meta"):
            heads = Pi3Heads(depth=0, num_registers=self.register_token.shape[-2])
        for name in IGNORED_HEAD_PREFIXES:
            setattr(heads, name[:-1], getattr(self, name[:-1]))
        return heads

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B, N, 3, H, W) in [0, 1] -> (B, N, H/14, W/14, D) Pi3 features (what Gmos consumes)."""
        if imgs.dim() != 5 or imgs.shape[2] != 3:
            raise ValueError(f"Pi3Encoder: expected (B, N, 3, H, W), got {tuple(imgs.shape)}")
        b, n = int(imgs.shape[0]), int(imgs.shape[1])
        h, w = self.grid_size(int(imgs.shape[-2]), int(imgs.shape[-1]))
        tokens = self.encode_frames(imgs.flatten(0, 1))
        return self.decode_window(tokens.reshape(b, n, h * w, -1), h, w)

    def window_decoder(self) -> Pi3Decoder:
        """A :class:`Pi3Decoder` that *shares* this model's decoder blocks and registers.

        Handy to export or run the per-window part on its own; no parameters are copied.
        """
        with torch.device("meta"):
            dec = Pi3Decoder(
                dim=self.embed_dim,
                depth=0,
                num_heads=self.decoder[0].attn.num_heads if len(self.decoder) else 1,
                num_registers=self.register_token.shape[-2],
                rope_base=self.rope_base,
            )
        dec.decoder = self.decoder
        dec.register_token = self.register_token
        return dec

    # ---- fixed grid (export) ---------------------------------------------------------------------

    def pos_embed_for_grid(self, h: int, w: int) -> torch.Tensor:
        """(1, 1 + h·w, D) float32 DINOv2 position embedding for an h×w grid (see DinoV2Encoder)."""
        return self.encoder.pos_embed_for_grid(h, w)

    def set_fixed_grid(self, h: int, w: int) -> None:
        """Use a precomputed position embedding for the h×w grid (no in-graph resize; for export)."""
        self.encoder.set_fixed_grid(h, w)

    def clear_fixed_grid(self) -> None:
        """Resize the position embedding in the graph again."""
        self.encoder.clear_fixed_grid()

    # ---- loading ---------------------------------------------------------------------------------

    def load_official_state_dict(
        self,
        state_dict: Mapping[str, torch.Tensor],
        truncate: bool = False,
        assign: bool = False,
    ) -> Pi3LoadReport:
        """Load an official Pi3 state dict (the ``yyfz233/Pi3`` key set).

        Args:
            state_dict: key → tensor; any float dtype (cast to the model's dtype).
            truncate: allow the checkpoint to have more encoder / decoder blocks than this model
                and load only the first ones (tests, ablations). Without it that is an error.
            assign: assign the checkpoint tensors instead of copying (for a meta-device model).

        Returns:
            :class:`Pi3LoadReport` with the loaded, ignored (heads) and truncated keys.

        Raises:
            CheckpointError: unknown keys, missing keys, depth or shape mismatch (messages name
                the keys and shapes).
        """
        own = self.state_dict()
        report = Pi3LoadReport()
        ck_keys = set(state_dict)
        ck_has_heads = any(k.startswith(IGNORED_HEAD_PREFIXES) for k in ck_keys)
        # Heads are loaded only into a model that has them, from a checkpoint that has them; a
        # mask-only checkpoint leaves a with-heads model's heads at their initial values.
        load_heads = self.with_heads and ck_has_heads
        if not load_heads:
            own = {k: v for k, v in own.items() if not k.startswith(IGNORED_HEAD_PREFIXES)}
        own_keys = set(own)
        ck_depth = _depths(ck_keys)
        my_depth = {
            "encoder": len(self.encoder.blocks),
            "decoder": len(self.decoder),
            "heads": self.head_depth if load_heads else ck_depth["heads"],
        }
        extra_depth = {p: ck_depth[p] for p in ck_depth if ck_depth[p] > my_depth[p]}
        if extra_depth and not truncate:
            detail = ", ".join(
                f"{p}: checkpoint {ck_depth[p]} blocks vs model {my_depth[p]}" for p in extra_depth
            )
            raise CheckpointError(
                f"Pi3 checkpoint depth mismatch ({detail}); pass truncate=True to load only the "
                "first blocks"
            )
        to_load: dict[str, torch.Tensor] = {}
        unexpected: list[str] = []
        for key, value in state_dict.items():
            if key.startswith(IGNORED_HEAD_PREFIXES) and not load_heads:
                report.ignored.append(key)
            elif key in own_keys:
                to_load[key] = value
            elif _is_extra_block(key, my_depth):
                report.truncated.append(key)
            else:
                unexpected.append(key)
        if unexpected:
            raise CheckpointError(
                f"Pi3 checkpoint has {len(unexpected)} unexpected key(s): {_short(unexpected)}"
            )
        missing = sorted(own_keys - set(to_load))
        if missing:
            hint = ""
            short = {p for p in my_depth if ck_depth[p] < my_depth[p]}
            if short:
                hint = (
                    " ("
                    + ", ".join(
                        f"{p}: checkpoint has {ck_depth[p]} blocks, model {my_depth[p]}"
                        for p in short
                    )
                    + ")"
                )
            raise CheckpointError(
                f"Pi3 checkpoint is missing {len(missing)} key(s){hint}: {_short(missing)}"
            )
        for key, value in to_load.items():
            if not isinstance(value, torch.Tensor):
                raise CheckpointError(
                    f"Pi3 checkpoint entry {key!r} is not a tensor ({type(value)})"
                )
            if tuple(value.shape) != tuple(own[key].shape):
                raise CheckpointError(
                    f"Pi3 checkpoint shape mismatch for {key!r}: checkpoint {tuple(value.shape)} "
                    f"vs model {tuple(own[key].shape)}"
                )
            if not torch.is_floating_point(value):
                raise CheckpointError(
                    f"Pi3 checkpoint entry {key!r} has non-float dtype {value.dtype}"
                )
        if assign:
            # Keep the model's dtype: assign would otherwise adopt e.g. a bf16 checkpoint's dtype
            # (a meta-device model still carries its dtype). copy_ casts by itself when not assigning.
            to_load = {k: v.to(own[k].dtype) for k, v in to_load.items()}
        self.load_state_dict(
            to_load, strict=not (self.with_heads and not load_heads), assign=assign
        )
        report.loaded = sorted(to_load)
        report.heads_loaded = self.heads_loaded = load_heads
        if self.encoder.fixed_grid is not None:
            # The precomputed position embedding was derived from the old weights.
            self.encoder.set_fixed_grid(*self.encoder.fixed_grid)
        return report

    @classmethod
    def from_safetensors(
        cls,
        path: str | os.PathLike[str],
        truncate: bool = False,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        **kwargs: object,
    ) -> tuple[Pi3Encoder, Pi3LoadReport]:
        """Build a model and load an official ``model.safetensors``.

        The encoder / decoder depths default to those found in the file (24 / 36 for the official
        checkpoint); pass ``encoder_depth`` / ``decoder_depth`` (with ``truncate=True`` if smaller)
        to override. Other constructor arguments (e.g. ``embed_dim``) go through ``kwargs``.

        The model is built on the meta device and the file's tensors are assigned, so the weights
        are held in memory once.

        Returns:
            (model in eval mode on ``device`` with ``dtype``, :class:`Pi3LoadReport`).
        """
        # Without heads they are listed (for the report) but never read from disk.
        with_heads = bool(kwargs.get("with_heads", False))
        skip = () if with_heads else IGNORED_HEAD_PREFIXES
        sd = load_safetensors_file(path, skip_prefixes=skip)
        depth = _depths(set(sd))
        kwargs.setdefault("encoder_depth", depth["encoder"])
        kwargs.setdefault("decoder_depth", depth["decoder"])
        if with_heads and depth["heads"]:
            kwargs.setdefault("head_depth", depth["heads"])
        with torch.device("meta"):
            model = cls(**kwargs)  # type: ignore[arg-type]
        model.to(dtype)
        report = model.load_official_state_dict(sd, truncate=truncate, assign=True)
        if model.with_heads and not report.heads_loaded:
            # A mask-only checkpoint: the heads are still on the meta device; give them storage
            # and their default initialisation (their outputs are meaningless until trained).
            for prefix in IGNORED_HEAD_PREFIXES:
                head = getattr(model, prefix[:-1]).to_empty(device="cpu").to(dtype)
                for sub in head.modules():
                    if hasattr(sub, "reset_parameters"):
                        sub.reset_parameters()
        return model.to(device).eval(), report


def _is_extra_block(key: str, my_depth: dict[str, int]) -> bool:
    for part, rx in _BLOCK_RE.items():
        mt = rx.match(key)
        if mt and int(mt.group(1)) >= my_depth[part]:
            return True
    return False


def _short(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")
