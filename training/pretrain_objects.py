"""Stage 1b of the micro recipe: object pretraining of SAM2's image encoder and the proposer.

    python -m training.pretrain_objects --config-name objects_micro [key=value ...]

Why. The paper's proposer reads a pretrained, frozen SAM2 that already knows what an object
is. The micro SAM2 has no pretrained weights, and in stage 2 it only ever saw MOVING objects as
targets (static and resting ones are background there), so it never learned objects: on
held-out clips the best of the proposer's 16 queries reached IoU 0.13-0.17 with any object.
This stage trains the micro SAM2 image encoder together with the proposer itself (its trunk,
query tokens, two-way decoder and mask upsampler: the weights stage 2 starts from) on SINGLE
frames where EVERY object, static or moving, is a target; the synthetic renderer's instance
masks are exact and free, and only the one frame a sample needs is rendered
(`render_layout(frames=...)`).

What the proposer sees. Stage 2 feeds it the π³ feature of the window; here there is no window,
so the π³ slot gets zeros (one 1×1 token, interpolated to the grid: a constant input to
`pi3_projector`), and the head learns to segment from SAM2 alone. Stage 2 then freezes SAM2 (as
the paper freezes its SAM2), starts the proposer from these weights and trains it to pick the
moving objects with π³'s help.

Loss (per frame; the paper has no such stage, so the choices are ours): Hungarian matching of
queries to objects on the mask cost, then for the matched queries
``mask_weight · (bce_weight · BCE + dice_weight · dice)`` and L_iou = (û − IoU(M̂ > threshold, M))²
with the threshold the runtime uses (`iou_threshold`, a mask logit); unmatched queries get no
term (no "no object" class in this stage: stage 2 trains motion and confidence). The mask term
is Mask2Former's BCE + dice (their 5 : 5), not Eq. 2's 20 · focal(α 0.25) + dice: with the
focal form this stage sat at the all-background solution (matched IoU 0.000 from step 20 to 70
of the first run), as both micro heads did in stage 2 before (docs/training.md).

Gate metric (`validate`): on frames of validation clips (held-out scene mix, seeds 800000..,
never the held-out 900000..), for every visible object the best IoU over all queries of
(mask logit > 0) at the head's mask resolution; mean over objects (all / static / dynamic).

Resumable (`training.resume`): ``last.pt`` (full) and ``state_fp16.safetensors`` (committable,
parts ``sam2`` and ``head``); the schedule runs over the TOTAL ``max_steps``.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn
from torch.utils.data import Dataset

import training as _training_pkg

# See training/train.py: keep our `training` package ahead of the sam2 wheel's.
_HERE = str(Path(__file__).resolve().parent)
if list(_training_pkg.__path__)[:1] != [_HERE]:
    _training_pkg.__path__.insert(0, _HERE)

from gmos_core.bundle import sam2_feature_state  # noqa: E402
from gmos_core.data.synthetic import SceneConfig, render_layout, sample_layout  # noqa: E402
from gmos_core.models.build import GmosModelConfig, build_frame_model  # noqa: E402
from gmos_core.models.gmos import GmosProposer  # noqa: E402
from gmos_core.models.preprocess import sam2_preprocess  # noqa: E402
from training.datasets import downsample_mask, synthetic_config_from_dict  # noqa: E402
from training.losses import dice_loss  # noqa: E402
from training.matching import pairwise_bce_cost, pairwise_dice_cost  # noqa: E402
from training.resume import Fp16State, load_part  # noqa: E402
from training.stage_loop import (  # noqa: E402
    StageHooks,
    StageSettings,
    finished_stage,
    resume_stage,
    run_stage,
    save_stage_state,
    stage_config_from_dict,
    stage_main,
)

__all__ = [
    "ObjectFrameDataset",
    "ObjectLossWeights",
    "ObjectPretrainConfig",
    "best_query_iou",
    "query_ious",
    "object_loss",
    "pretrain_objects",
    "validate_objects",
]


@dataclass(frozen=True)
class ObjectPretrainConfig(StageSettings):
    """One object-pretraining run (`training/configs/objects_micro.yaml`).

    The loop, resumption and data-order settings are `StageSettings'` (`model` gives the SAM2
    and head sizes; `batch_size` counts frames, each from its own scene; ``data``'s
    ``windows_per_scene`` and ``fps_choices`` are ignored: one frame per scene).

    Attributes:
        head_dropout: p of the proposer's feature-projector dropout (official 0.2; micro 0).
        query_init_std: std of the initial object queries (the official init is 1e-6: nearly
            identical queries that only the matching tells apart; DETR / SAM draw theirs
            with std 1). 0 keeps the official init.
        min_object_px: an object with fewer pixels at the mask resolution is not a target.
        iou_threshold: mask logit whose binarisation the IoU head learns to predict.
        mask_weight, bce_weight, dice_weight, iou_weight: loss weights (module docstring).
        val_clips, val_frames_per_clip: the gate's validation frames (held-out mix, 24 frames
            at 10 fps like the calibration clips; seeds from `val_seed`).
        val_every: validate every this many steps (0 = only at the end).
    """

    max_steps: int = 4000
    batch_size: int = 4
    ckpt_every: int = 100
    out_dir: str = "out/train/objects_micro"
    head_dropout: float = 0.0
    query_init_std: float = 1.0
    min_object_px: int = 4
    iou_threshold: float = 0.0
    mask_weight: float = 1.0
    bce_weight: float = 5.0
    dice_weight: float = 5.0
    iou_weight: float = 1.0
    val_clips: int = 16
    val_frames_per_clip: int = 4
    val_every: int = 500


def object_config_from_dict(raw: dict[str, Any]) -> ObjectPretrainConfig:
    """Typed config from a composed dict; unknown keys are an error."""
    return stage_config_from_dict(ObjectPretrainConfig, raw, "object pretraining")


class ObjectFrameDataset(Dataset):
    """Single frames of synthetic scenes with every visible object as a target.

    Item i is a pure function of (seed_start, i): scene ``seed_start + i``, one frame drawn from
    it, only that frame rendered.

    Returns items with ``sam`` (3, S, S) normalised image and ``gt_masks`` (G, R, R) {0, 1}
    float32 (G may be 0), ``is_dynamic`` (G,) bool, ``key`` str.
    """

    def __init__(
        self,
        scene: dict[str, Any],
        seed_start: int,
        num_scenes: int,
        height: int,
        width: int,
        num_frames: int,
        fps: float,
        sam_size: int,
        mask_size: int,
        min_object_px: int,
        frames_per_scene: int = 1,
    ) -> None:
        self.scene = scene
        self.seed_start = seed_start
        self.num_scenes = num_scenes
        self.height, self.width = height, width
        self.num_frames, self.fps = num_frames, fps
        self.sam_size, self.mask_size = sam_size, mask_size
        self.min_object_px = min_object_px
        self.frames_per_scene = frames_per_scene

    def __len__(self) -> int:
        return self.num_scenes * self.frames_per_scene

    def frame_index(self, index: int) -> tuple[int, int]:
        """(scene seed, frame t) of item `index`."""
        s, j = divmod(index, self.frames_per_scene)
        seed = self.seed_start + s
        if self.frames_per_scene > 1:  # evenly spread (validation)
            t = int(round((j + 0.5) * self.num_frames / self.frames_per_scene - 0.5))
        else:
            t = int(np.random.default_rng([seed, 3]).integers(self.num_frames))
        return seed, t

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        seed, t = self.frame_index(index)
        cfg = SceneConfig(
            height=self.height,
            width=self.width,
            fps=self.fps,
            num_frames=self.num_frames,
            seed=seed,
            **self.scene,
        )
        layout = sample_layout(cfg)
        sample = render_layout(layout, frames=[t])
        labels = sample.instance_masks[0]
        masks, dyn = [], []
        for k, oid in enumerate(sample.object_ids.tolist()):
            m = downsample_mask(labels == oid, self.mask_size)
            if m.sum() >= self.min_object_px:
                masks.append(m)
                dyn.append(bool(sample.object_is_dynamic[k]))
        r = self.mask_size
        return {
            "sam": sam2_preprocess(sample.frames[0], resolution=self.sam_size),
            "gt_masks": torch.from_numpy(np.stack(masks) if masks else np.zeros((0, r, r), "f4")),
            "is_dynamic": torch.tensor(dyn, dtype=torch.bool),
            "key": f"seed{seed}/t{t}",
        }


def collate_frames(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack images; targets stay per-frame lists."""
    return {
        "sam": torch.stack([it["sam"] for it in items]),
        "gt_masks": [it["gt_masks"] for it in items],
        "is_dynamic": [it["is_dynamic"] for it in items],
        "keys": [it["key"] for it in items],
    }


def proposer_on_frames(sam2: nn.Module, head: GmosProposer, img: Tensor) -> dict[str, Tensor]:
    """Proposer outputs from SAM2 features alone (a zero π³ token). img: (B, 3, S, S)."""
    feats = sam2(img)
    token = torch.zeros(img.shape[0], 1, 1, head.pi3_dim, dtype=img.dtype, device=img.device)
    return head(token, feats.bottleneck, high_res_features=list(feats.high_res))


@torch.no_grad()
def query_ious(mask_logits: Tensor, gt: Tensor, threshold: float = 0.0) -> Tensor:
    """IoU of every target with every query's mask (logit > threshold).

    Args:
        mask_logits: (Q, R, R); gt: (G, R, R) {0, 1}.

    Returns:
        (G, Q) float in [0, 1] (an empty union counts as IoU 0).
    """
    p = (mask_logits > threshold).flatten(1).float()  # (Q, P)
    g = (gt > 0.5).flatten(1).float()  # (G, P)
    inter = g @ p.T  # (G, Q)
    union = g.sum(1, keepdim=True) + p.sum(1)[None] - inter
    return inter / union.clamp(min=1)


@torch.no_grad()
def best_query_iou(mask_logits: Tensor, gt: Tensor, threshold: float = 0.0) -> Tensor:
    """For each target, the best IoU over all queries of (logit > threshold).

    Args:
        mask_logits: (Q, R, R); gt: (G, R, R) {0, 1}.

    Returns:
        (G,) float in [0, 1].
    """
    if gt.shape[0] == 0:
        return torch.zeros(0)
    return query_ious(mask_logits, gt, threshold).max(dim=1).values


@dataclass(frozen=True)
class ObjectLossWeights:
    """Weights of the stage-1b loss (module docstring)."""

    mask: float = 1.0
    bce: float = 5.0
    dice: float = 5.0
    iou: float = 1.0
    iou_threshold: float = 0.0


@torch.no_grad()
def match_objects(
    masks: Tensor, gt_masks: list[Tensor], w: ObjectLossWeights
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Hungarian matching per frame on the mask cost; (query idx, target idx) per frame."""
    out = []
    for b in range(masks.shape[0]):
        g = gt_masks[b]
        if g.shape[0] == 0:
            out.append((np.zeros(0, np.int64), np.zeros(0, np.int64)))
            continue
        lg = masks[b].flatten(1).float()
        tg = g.flatten(1).to(lg)
        cost = w.bce * pairwise_bce_cost(lg, tg) + w.dice * pairwise_dice_cost(lg, tg)
        qi, gi = linear_sum_assignment(torch.nan_to_num(cost, nan=1e6).cpu().numpy())
        out.append((qi.astype(np.int64), gi.astype(np.int64)))
    return out


def object_loss(
    out: dict[str, Tensor], gt_masks: list[Tensor], w: ObjectLossWeights
) -> tuple[Tensor, dict[str, float]]:
    """Matched mask loss + IoU-head loss over a batch (module docstring)."""
    masks = out["mask"].float()
    iou_pred = out["iou_pred"].float()[..., 0]
    idx = match_objects(masks, gt_masks, w)
    pm, tg, ip = [], [], []
    for bi, (qi, gi) in enumerate(idx):
        if len(qi) == 0:
            continue
        qi_t = torch.as_tensor(qi, device=masks.device)
        pm.append(masks[bi, qi_t])
        tg.append(gt_masks[bi].to(masks.device)[torch.as_tensor(gi)])
        ip.append(iou_pred[bi, qi_t])
    if not pm:
        zero = masks.sum() * 0.0
        return zero, {"loss": 0.0, "mask": math.nan, "iou": math.nan, "matched_iou": math.nan}
    pm_t, tg_t, ip_t = torch.cat(pm).flatten(1), torch.cat(tg).flatten(1), torch.cat(ip)
    l_bce = F.binary_cross_entropy_with_logits(pm_t, tg_t, reduction="none").mean(-1)
    l_mask = w.bce * l_bce + w.dice * dice_loss(pm_t, tg_t)
    with torch.no_grad():
        pb = pm_t.flatten(1) > w.iou_threshold
        gb = tg_t.flatten(1) > 0.5
        inter = (pb & gb).sum(-1).float()
        union = (pb | gb).sum(-1).float()
        iou_true = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    l_iou = (ip_t - iou_true) ** 2
    total = w.mask * l_mask.mean() + w.iou * l_iou.mean()
    return total, {
        "loss": float(total.detach()),
        "mask": float(l_mask.mean().detach()),
        "iou": float(l_iou.mean().detach()),
        "matched_iou": float(iou_true.mean()),
    }


def _val_dataset(cfg: ObjectPretrainConfig, sam_size: int, mask_size: int) -> ObjectFrameDataset:
    # The held-out scene mix (SceneConfig defaults), 24 frames at 10 fps like the calibration
    # clips; seeds from val_seed (never 900000..).
    if cfg.val_seed + cfg.val_clips > 900_000:
        raise ValueError("validation seeds must stay below the held-out split's 900000")
    return ObjectFrameDataset(
        {},
        cfg.val_seed,
        cfg.val_clips,
        128,
        128,
        24,
        10.0,
        sam_size,
        mask_size,
        cfg.min_object_px,
        frames_per_scene=cfg.val_frames_per_clip,
    )


@torch.no_grad()
def validate_objects(
    sam2: nn.Module, head: GmosProposer, ds: ObjectFrameDataset, batch_size: int = 8
) -> dict[str, float]:
    """Gate metric: mean best-query IoU over every visible object (and static / dynamic)."""
    was = (sam2.training, head.training)
    sam2.eval()
    head.eval()
    ious, dyn = [], []
    for i in range(0, len(ds), batch_size):
        batch = collate_frames([ds[j] for j in range(i, min(i + batch_size, len(ds)))])
        out = proposer_on_frames(sam2, head, batch["sam"])
        for b, gt in enumerate(batch["gt_masks"]):
            ious.append(best_query_iou(out["mask"][b], gt))
            dyn.append(batch["is_dynamic"][b])
    sam2.train(was[0])
    head.train(was[1])
    iou = torch.cat(ious) if ious else torch.zeros(0)
    d = torch.cat(dyn) if dyn else torch.zeros(0, dtype=torch.bool)

    def mean(x: Tensor) -> float:
        return float(x.mean()) if x.numel() else math.nan

    return {
        "objects": float(iou.numel()),
        "best_iou": mean(iou),
        "best_iou_static": mean(iou[~d]),
        "best_iou_dynamic": mean(iou[d]),
        "share_above_0.5": mean((iou > 0.5).float()),
    }


def build_parts(cfg: ObjectPretrainConfig) -> tuple[nn.Module, GmosProposer, Any]:
    """(SAM2 feature extractor, proposer, model config), random init from `cfg.seed`."""
    mcfg = GmosModelConfig.load(cfg.model)
    fm = build_frame_model(mcfg, "gmos", seed=cfg.seed)
    head = fm.head
    assert isinstance(head, GmosProposer)
    set_dropout(head, cfg.head_dropout)
    if cfg.query_init_std > 0:
        with torch.no_grad():
            head.obj_token.normal_(0.0, cfg.query_init_std)
    return fm.sam2, head, mcfg


def set_dropout(module: nn.Module, p: float) -> None:
    """Set every nn.Dropout of `module` (the head's feature projectors) to probability p."""
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = float(p)


def pretrain_objects(cfg: ObjectPretrainConfig) -> dict[str, Any]:
    """Run (or continue) stage 1b; returns a summary (also written to summary.json)."""
    done = finished_stage(cfg)
    if done is not None:
        return done
    sam2, head, mcfg = build_parts(cfg)
    sam_model = sam2.sam_model
    # Only the image-feature path trains (the memory modules never run in Gmos).
    for n, p in sam_model.named_parameters():
        p.requires_grad_(n.startswith(("image_encoder.", "sam_mask_decoder.conv_s", "no_mem")))
    params = [p for p in sam_model.parameters() if p.requires_grad] + list(head.parameters())
    o = cfg.optim
    opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas))
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def load_full(st: dict[str, Any]) -> None:
        load_part(sam_model, st["sam2"], "sam2", strict=False)
        head.load_state_dict(st["head"])

    def load_fp16(st16: Fp16State) -> None:
        load_part(sam_model, st16.parts["sam2"], "sam2", strict=False)
        load_part(head, st16.parts["head"], "head")

    start, rewarm_at = resume_stage(cfg, opt, load_full, load_fp16)

    data = {k: v for k, v in cfg.data.items() if k != "kind"}
    dcfg = synthetic_config_from_dict(data)
    sam_size, mask_size = mcfg.sam2.image_size, 4 * mcfg.head.grid
    ds = ObjectFrameDataset(
        dict(dcfg.scene),
        dcfg.seed_start,
        dcfg.num_scenes,
        dcfg.height,
        dcfg.width,
        max(1, int(round(dcfg.duration_s * 10.0))),
        10.0,
        sam_size,
        mask_size,
        cfg.min_object_px,
    )
    val_ds = _val_dataset(cfg, sam_size, mask_size)
    weights = ObjectLossWeights(
        cfg.mask_weight, cfg.bce_weight, cfg.dice_weight, cfg.iou_weight, cfg.iou_threshold
    )
    val_path = out / "val.jsonl"

    def save(step: int) -> None:
        save_stage_state(
            cfg,
            {"sam2": sam2_feature_state(sam_model), "head": head.state_dict()},
            {"sam2": sam2_feature_state(sam_model), "head": head},
            opt,
            step,
            rewarm_at,
            {"stage": "objects", "model": mcfg.name, "trained_by": "training.pretrain_objects"},
        )

    def run_val(step: int) -> dict[str, float]:
        v = {"step": step, **validate_objects(sam2, head, val_ds)}
        with val_path.open("a") as f:
            f.write(json.dumps(v) + "\n")
        return v

    def loss(batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        return object_loss(proposer_on_frames(sam2, head, batch["sam"]), batch["gt_masks"], weights)

    def after_step(step: int) -> None:
        if cfg.val_every > 0 and step % cfg.val_every == 0:
            run_val(step)

    sam_model.train()
    head.train()
    hooks = StageHooks(
        desc="pretrain objects",
        loss=loss,
        log_keys=("loss", "mask", "iou", "matched_iou", "grad_norm"),
        iou_key="matched_iou",
        save=save,
        validate=run_val if cfg.val_clips > 0 else None,
        after_step=after_step,
    )
    return run_stage(cfg, hooks, ds, collate_frames, opt, params, start, rewarm_at)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (2: bad configuration)."""
    return stage_main(
        argv,
        "pretrain_objects",
        "objects_micro",
        object_config_from_dict,
        pretrain_objects,
        __doc__.split("\n\n")[0],
    )


if __name__ == "__main__":
    sys.exit(main())
