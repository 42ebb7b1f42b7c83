"""SAM2 image features for the Gmos heads, computed by the installed ``sam2`` package itself.

The proposer consumes three maps of the middle frame (1024x1024 input, SAM2.1 Hiera):

* ``bottleneck`` (B, 256, 64, 64): the stride-16 ``vision_features`` plus ``no_mem_embed`` (the
  image-mode "directly add no-memory embedding" path, which the official Gmos applies to every
  frame);
* ``high_res`` = [(B, 32, 256, 256), (B, 64, 128, 128)]: FPN levels 0 and 1, already projected by
  ``sam_mask_decoder.conv_s0`` / ``conv_s1`` inside ``SAM2Base.forward_image``.

The untouched ``backbone_out`` dict of ``forward_image`` is kept as well, so that a SAM2 video
predictor can reuse it as its per-frame feature cache without re-encoding the frame. The official
pipeline clones the bottleneck before an in-place ``+= no_mem_embed`` for that reason; here the
addition is out of place, so ``backbone_out`` is never written to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gmos_core.models.checkpoints import CheckpointError, load_sam2_checkpoint_state

__all__ = ["SAM2_CONFIGS", "Sam2FeatureExtractor", "Sam2Features"]

# Size name -> hydra config of the SAM2.1 release (092824) that ships with the sam2 package.
SAM2_CONFIGS: dict[str, str] = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


@dataclass
class Sam2Features:
    """SAM2 features of one batch of images.

    Attributes:
        bottleneck: (B, 256, 64, 64) ``vision_features + no_mem_embed`` (the proposer's sam_btn).
        high_res: [(B, 32, 256, 256), (B, 64, 128, 128)] conv_s0 / conv_s1 projected maps
            (the proposer's ``high_res_features``). They are views of ``backbone_fpn[0]`` and
            ``[1]`` (no copy): do not modify them in place if ``backbone_out`` is cached.
        backbone_out: the raw ``SAM2Base.forward_image`` output (``vision_features``,
            ``vision_pos_enc``, ``backbone_fpn``), unmodified, for the tracker's cache.
    """

    bottleneck: Tensor
    high_res: list[Tensor]
    backbone_out: dict[str, Any]


class Sam2FeatureExtractor(nn.Module):
    """Wraps a ``SAM2Base`` built by ``sam2.build_sam.build_sam2`` and extracts Gmos' features.

    Args:
        size: ``"tiny" | "small" | "base_plus" | "large"`` (SAM2.1 Hiera); the official Gmos uses
            large.
        checkpoint: optional official SAM2 ``.pt`` (``{"model": state_dict}``), loaded strictly and
            with ``weights_only=True``. Without it the weights are SAM2's random init.
        device: where to build the model.
        overrides: extra hydra overrides for the config (e.g. ``"++model.image_size=256"`` and a
            smaller trunk for test-sized models), passed to ``build_sam2``.

    ``sam_model`` is the full ``SAM2Base`` (memory modules included) so a video predictor can be
    built from the same weights (e.g. ``predictor.load_state_dict(extractor.sam_model.state_dict())``).
    """

    def __init__(
        self,
        size: str = "large",
        checkpoint: str | Path | None = None,
        device: str | torch.device = "cpu",
        overrides: Sequence[str] = (),
    ) -> None:
        super().__init__()
        if size not in SAM2_CONFIGS:
            raise ValueError(f"unknown SAM2 size {size!r}; choose one of {sorted(SAM2_CONFIGS)}")
        # Imported here: sam2 initialises a global hydra config module on import, which modules
        # that only need the dataclass above should not pay for.
        from hydra import initialize_config_module
        from hydra.core.global_hydra import GlobalHydra
        from sam2.build_sam import build_sam2

        # build_sam2 composes from the global config module sam2 registers on import; another
        # Hydra user in the process (our training config composer) may have cleared it since.
        if not GlobalHydra.instance().is_initialized():
            initialize_config_module("sam2", version_base="1.2")
        self.size = size
        self.config_name = SAM2_CONFIGS[size]
        # ckpt_path=None: the package's own loader would unpickle without our file checks and
        # raise a bare RuntimeError on mismatches; load below instead (strict, weights_only).
        self.overrides = list(overrides)
        self.sam_model = build_sam2(
            self.config_name,
            ckpt_path=None,
            device=str(device),
            hydra_overrides_extra=self.overrides,
        )
        if checkpoint is not None:
            self.load_checkpoint(checkpoint)
        self.sam_model.eval()

    def load_checkpoint(self, path: str | Path) -> None:
        """Load an official SAM2 ``.pt`` strictly (every key, every shape)."""
        state = load_sam2_checkpoint_state(path)
        own = self.sam_model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise CheckpointError(
                f"{path} does not match SAM2.1 {self.size} ({self.config_name}): "
                f"{len(missing)} missing key(s) {missing[:5]}, "
                f"{len(unexpected)} unexpected key(s) {unexpected[:5]} (other model size?)"
            )
        wrong = [
            f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
            for k, v in own.items()
            if tuple(state[k].shape) != tuple(v.shape)
        ]
        if wrong:
            raise CheckpointError(
                f"{path} does not match SAM2.1 {self.size}: shape mismatch(es): " + "; ".join(wrong)
            )
        self.sam_model.load_state_dict(state, strict=True)

    @property
    def image_size(self) -> int:
        """Input side length the model expects (1024 for the SAM2.1 configs)."""
        return int(self.sam_model.image_size)

    def forward(self, img: Tensor) -> Sam2Features:
        """Encode images.

        Args:
            img: (B, 3, 1024, 1024) resized and ImageNet-normalised images (``SAM2Transforms``).
        Returns:
            :class:`Sam2Features`.
        """
        size = self.image_size
        if img.dim() != 4 or img.shape[1] != 3 or tuple(img.shape[-2:]) != (size, size):
            raise ValueError(
                f"SAM2 input must be (B, 3, {size}, {size}) normalised images, got {tuple(img.shape)}"
            )
        model = self.sam_model
        backbone_out = model.forward_image(img)
        # _prepare_backbone_features copies the dict and flattens the last num_feature_levels
        # maps to (HW, B, C) views; nothing in backbone_out is modified.
        _, feats, _, sizes = model._prepare_backbone_features(backbone_out)
        b = img.shape[0]
        maps = [f.permute(1, 2, 0).reshape(b, -1, h, w) for f, (h, w) in zip(feats, sizes)]
        # Out-of-place add: (B, C, h, w) + (1, C, 1, 1). no_mem_embed is stored as (1, 1, C).
        bottleneck = maps[-1] + model.no_mem_embed.reshape(1, -1, 1, 1)
        return Sam2Features(bottleneck=bottleneck, high_res=maps[:-1], backbone_out=backbone_out)
