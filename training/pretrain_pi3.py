"""Stage 1 of the micro recipe: pretrain the micro π³ on dense motion of synthetic windows.

    python -m training.pretrain_pi3 --config-name pi3_micro [key=value ...]

Why this stage exists. The paper starts from a *pretrained* π³ whose features already encode
geometry; at micro size no pretrained π³ exists, and trained from scratch through the heads
alone (Eq. A1 / Eq. 2) the micro π³ learned nothing in 2000 steps: both models sat at the
all-background solution (docs/training.md). A diagnostic showed why: given features that carry
the motion signal (an oracle), the same head and loss reach a foreground IoU of 0.69 in 150
steps, whereas the only gradient the scratch π³ gets is the middle frame's mask loss, routed
through the head. This stage gives π³ a direct, dense signal instead: a linear probe on the π³
window features predicts, for EVERY frame of the window and every token (split into p×p
sub-cells), the share of its pixels that belong to an object moving in the world at that frame.
Loss: BCE (positive weight `pos_weight`), optionally + soft dice over frames where something
moves (the recipe uses BCE alone: with dice the probe IoU stayed at 0 for 220 steps). Only the π³ encoder and decoder
and the probe run (no SAM2, no head), so one step is cheap and sees N = 5 supervised frames per
window.

Output (``out_dir``): ``pi3.safetensors`` in the official π³ key format (stage 2 loads it with
``pi3_checkpoint=``, through the same loader as ``yyfz233/Pi3``), ``probe.safetensors``,
``log.csv``, ``loss.png`` / ``metrics.png`` and ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, Dataset, Subset

import training as _training_pkg

# See training/train.py: keep our `training` package ahead of the sam2 wheel's.
_HERE = str(Path(__file__).resolve().parent)
if list(_training_pkg.__path__)[:1] != [_HERE]:
    _training_pkg.__path__.insert(0, _HERE)

from safetensors.torch import save_file  # noqa: E402

from gmos_core.models.build import GmosModelConfig, build_pi3  # noqa: E402
from gmos_core.models.pi3_heads import HEAD_NAMES, Pi3Geometry, build_heads  # noqa: E402
from training.datasets import (  # noqa: E402
    SyntheticWindowDataset,
    WindowSpec,
    collate_windows,
    synthetic_config_from_dict,
)
from training.geometry_losses import geometry_loss  # noqa: E402
from training.resume import Fp16State, load_fp16_state, load_part  # noqa: E402
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


@dataclass(frozen=True)
class Pi3PretrainConfig(StageSettings):
    """One π³ motion-pretraining run (`training/configs/pi3_micro.yaml`).

    The loop, resumption and data-order settings are `StageSettings`' (only its ``pi3``
    section of `model` is used; `batch_size` counts windows, each giving N supervised frames).

    Attributes:
        probe_subdivide: p; the probe predicts p×p sub-cells per π³ token.
        pos_weight: BCE weight of moving cells (moving pixels are a minority).
        dice_weight: weight of the per-frame soft dice term.
        static_weight: BCE weight of cells on objects that do not move at that frame (static
            objects, and moving ones while they rest), relative to 1 for other cells; 1 = the
            plain BCE of the committed stage 1. Measured per object (`training.probe_motion_cues`)
            the plain-BCE probe scores static objects as high as moving ones (AUROC ~0.47): it
            learned where objects are, which the training mix makes nearly the same as where
            motion is. Weighting the objects that do not move makes that shortcut expensive.
        motion_weight: weight of the probe loss when the geometry heads train with the body
            (1 = the recipe; 0 = π³ learns geometry alone: the probe reads detached features,
            so it still learns and measures what they carry, but π³ gets none of its gradient).
        curriculum_steps: the first steps draw scenes with `curriculum_scene` merged into
            ``data.scene`` (an easier mix: a slow camera, so image change means motion) before
            the regular mix (0 = none).
        curriculum_scene: `SceneConfig` overrides of the curriculum's scenes.
        late_from_step: from this step on, scenes draw with `late_scene` merged into
            ``data.scene`` (0 = never): a broader mix, closer to the held-out one, once the
            probe has learned on the moderate mix (from scratch, the broad mix kept it at
            all-background). The scene seeds stay those of the regular stream.
        late_scene: `SceneConfig` overrides of the late phase's scenes.
        val_windows: windows of the validation scenes (regular mix, seeds from `val_seed`)
            scored at the end (0 = none); never used for training.
        device: torch device of π³ and the probe ("cpu", "cuda", "cuda:1"); float32 on every
            device, so a GPU run follows the CPU recipe step for step, only faster.
        geometry_weight: > 0 adds π³'s point and camera heads (official key names, saved with
            the π³ weights) trained on the renderer's exact depth and camera poses with this
            weight (`training.geometry_losses`); 0 = the motion probe alone (the recipe).
        geometry_head_width, geometry_head_depth, geometry_head_heads, geometry_camera_width:
            sizes of the micro heads (official: 1024, 5, 16, 512).
        train_body: False = the heads-only stage (`pi3_heads_micro.yaml`): π³'s encoder and
            decoder and the motion probe come from `body_fp16` and stay frozen bit for bit
            (not in the optimiser, so not even weight decay touches them); only the point,
            confidence and camera heads learn, from the geometry loss alone. Its step count,
            schedule and committed float16 state (``pi3_heads.*`` tensors only) are its own.
        body_fp16: the float16 stage-1 state (``pi3.*`` without heads, ``probe.*``) whose body
            and probe the heads-only stage reads; required when `train_body` is False.
    """

    max_steps: int = 1500
    batch_size: int = 8
    ckpt_every: int = 200
    out_dir: str = "out/train/pi3_micro"
    probe_subdivide: int = 2
    pos_weight: float = 3.0
    dice_weight: float = 1.0
    static_weight: float = 1.0
    motion_weight: float = 1.0
    curriculum_steps: int = 0
    curriculum_scene: dict[str, Any] = field(default_factory=dict)
    late_from_step: int = 0
    late_scene: dict[str, Any] = field(default_factory=dict)
    val_windows: int = 64
    device: str = "cpu"
    geometry_weight: float = 0.0
    geometry_head_width: int = 64
    geometry_head_depth: int = 1
    geometry_head_heads: int = 4
    geometry_camera_width: int = 64
    train_body: bool = True
    body_fp16: str = ""


def pretrain_config_from_dict(raw: dict[str, Any]) -> Pi3PretrainConfig:
    """Typed config from a composed dict; unknown keys are an error."""
    cfg = stage_config_from_dict(Pi3PretrainConfig, raw, "pi3 pretraining")
    if torch.device(cfg.device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {cfg.device!r} asked for, but torch has no CUDA device here")
    if cfg.motion_weight < 0 or (cfg.motion_weight == 0 and cfg.geometry_weight <= 0):
        raise ValueError(
            f"motion_weight must be >= 0, and 0 only with geometry_weight > 0 "
            f"(got {cfg.motion_weight}, {cfg.geometry_weight})"
        )
    if not cfg.static_weight > 0:
        raise ValueError(f"static_weight must be > 0, got {cfg.static_weight}")
    if not cfg.train_body:
        if cfg.geometry_weight <= 0:
            raise ValueError(
                "train_body: false trains the heads alone: geometry_weight must be > 0"
            )
        if not cfg.body_fp16 or not Path(cfg.body_fp16).is_file():
            raise ValueError(
                f"train_body: false needs body_fp16 (a stage-1 state), got {cfg.body_fp16!r}"
            )
    return cfg


class MotionProbe(nn.Module):
    """Linear read-out of per-cell motion from π³ window features.

    Args:
        dim: π³ feature width D.
        subdivide: p; each token predicts a p×p block of cells.
    """

    def __init__(self, dim: int, subdivide: int) -> None:
        super().__init__()
        self.subdivide = subdivide
        self.proj = nn.Linear(dim, subdivide * subdivide)

    def forward(self, feats: Tensor) -> Tensor:
        """(B, N, h, w, D) features -> (B, N, p·h, p·w) logits."""
        b, n, h, w, _ = feats.shape
        x = self.proj(feats).flatten(0, 1).permute(0, 3, 1, 2)  # (B·N, p², h, w)
        x = F.pixel_shuffle(x, self.subdivide)  # (B·N, 1, p·h, p·w)
        return x.view(b, n, h * self.subdivide, w * self.subdivide)


def motion_probe_loss(
    logits: Tensor,
    target: Tensor,
    pos_weight: float,
    dice_weight: float,
    weight: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """BCE + soft dice between probe logits and cell motion shares.

    Args:
        logits: (B, N, H, W) probe logits.
        target: (B, N, H, W) share of each cell's pixels that move, in [0, 1].
        weight: optional (B, N, H, W) per-cell BCE weights (None = all 1, the plain BCE).

    Returns:
        (scalar loss, {"loss", "bce", "dice", "fg_iou"}) where fg_iou is the IoU of
        (logit > 0) with (share > 0.5) averaged over frames whose target is not empty.
    """
    bce = F.binary_cross_entropy_with_logits(
        logits, target, weight=weight, pos_weight=torch.tensor(pos_weight, device=logits.device)
    )
    p = logits.sigmoid().flatten(2)
    t = target.flatten(2)
    # Dice only where something moves: on an empty frame 1 - 1/(sum p + 1) pushes every cell
    # towards 0 far harder than BCE does, the all-background pull that stalled the heads.
    has = t.sum(-1) > 0
    dice_all = 1 - (2 * (p * t).sum(-1) + 1) / (p.sum(-1) + t.sum(-1) + 1)
    dice = dice_all[has].mean() if bool(has.any()) else logits.sum() * 0.0
    loss = bce + dice_weight * dice
    with torch.no_grad():
        pb, tb = (logits > 0).flatten(2), (target > 0.5).flatten(2)
        inter = (pb & tb).sum(-1).float()
        union = (pb | tb).sum(-1).float()
        nonempty = tb.any(-1)
        iou = (inter / union.clamp(min=1))[nonempty]
    return loss, {
        "loss": float(loss.detach()),
        "bce": float(bce.detach()),
        "dice": float(dice.detach()),
        "fg_iou": float(iou.mean()) if iou.numel() else math.nan,
    }


def cell_weights(batch: dict[str, Any], shape: torch.Size, static_weight: float) -> Tensor | None:
    """Per-cell BCE weights ``1 + (static_weight − 1) · static share`` (None when it is 1).

    Args:
        batch: a collated batch with ``gt_static_window`` (B, N, R, R).
        shape: the probe's (B, N, H, W).
    """
    if static_weight == 1.0:
        return None  # the plain BCE, bit for bit
    share = F.adaptive_avg_pool2d(batch["gt_static_window"], shape[-2:])
    return 1.0 + (static_weight - 1.0) * share


def batch_probe_loss(
    logits: Tensor, batch: dict[str, Any], cfg: Pi3PretrainConfig
) -> tuple[Tensor, dict[str, float], Tensor]:
    """`motion_probe_loss` of a collated batch: its targets pooled to the probe's cells and
    the static-object weights of `cfg`. Returns (loss, parts, target (B, N, H, W))."""
    dev = logits.device
    target = F.adaptive_avg_pool2d(
        batch["gt_fg_window"].to(dev, non_blocking=True), logits.shape[-2:]
    )
    weight = cell_weights(batch, logits.shape, cfg.static_weight)
    loss, parts = motion_probe_loss(
        logits,
        target,
        cfg.pos_weight,
        cfg.dice_weight,
        None if weight is None else weight.to(dev, non_blocking=True),
    )
    return loss, parts, target


def _forward(pi3: nn.Module, probe: MotionProbe, frames: Tensor) -> Tensor:
    return _forward_geometry(pi3, probe, frames)[0]


def _forward_geometry(
    pi3: nn.Module, probe: MotionProbe, frames: Tensor, detach_probe: bool = False
) -> tuple[Tensor, Pi3Geometry | None]:
    """Probe logits, and the π³ head outputs when the model has heads (one decoder pass).

    `detach_probe`: the probe reads detached features (it learns, π³ gets none of its gradient).
    """
    b, n = frames.shape[:2]
    h, w = pi3.grid_size(int(frames.shape[-2]), int(frames.shape[-1]))
    tok = pi3.encode_frames(frames.flatten(0, 1)).view(b, n, -1, pi3.embed_dim)
    if getattr(pi3, "with_heads", False):
        feats, geom = pi3.decode_window_geometry(tok, h, w)
        return probe(feats.detach() if detach_probe else feats), geom
    feats = pi3.decode_window(tok, h, w)  # (B, N, h, w, D) features
    return probe(feats.detach() if detach_probe else feats), None


def _add_heads(pi3: nn.Module, cfg: Pi3PretrainConfig) -> None:
    """Give a micro π³ its point / confidence / camera heads (official names, micro sizes)."""
    heads = build_heads(
        pi3.embed_dim,
        cfg.geometry_head_width,
        cfg.geometry_head_depth,
        cfg.geometry_head_heads,
        cfg.geometry_camera_width,
        pi3.patch_size,
    )
    for name, module in heads.items():
        pi3.add_module(name, module)
    pi3.with_heads = True
    pi3.head_depth = cfg.geometry_head_depth


def head_state(pi3: nn.Module) -> dict[str, Tensor]:
    """The π³ state-dict entries of the point / confidence / camera heads (official names)."""
    return {k: v for k, v in pi3.state_dict().items() if k.split(".", 1)[0] in HEAD_NAMES}


def with_scene(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``data`` with `overrides` merged into its ``scene`` section (a curriculum or late phase)."""
    return {**data, "scene": {**dict(data.get("scene") or {}), **overrides}}


def motion_stream(cfg: Pi3PretrainConfig, data: dict[str, Any], spec: WindowSpec) -> Dataset:
    """The regular window stream (after the curriculum): ``data``'s mix, and from global step
    `late_from_step` on the same scene seeds drawn with `late_scene` merged into the mix.

    Item k of the stream is drawn from scene seed ``seed_start + k // windows_per_scene`` in
    either phase, so the late phase changes how a scene is drawn, not which seeds are used,
    and a run that switches mixes by config is the run that switched them by hand (a resumed
    run with ``data.scene`` overridden) at that step.
    """
    base = synthetic_config_from_dict(data)
    if cfg.late_from_step <= 0:
        return SyntheticWindowDataset(base, spec)
    n_easy = cfg.curriculum_steps * cfg.batch_size if cfg.curriculum_steps > 0 else 0
    first_late = cfg.late_from_step * cfg.batch_size - n_easy  # stream item of the switch
    total = base.num_scenes * base.windows_per_scene
    if first_late <= 0:
        raise ValueError(
            f"late_from_step {cfg.late_from_step} must come after the curriculum "
            f"({cfg.curriculum_steps} steps)"
        )
    if first_late >= total:
        raise ValueError(f"late_from_step {cfg.late_from_step} is past data.num_scenes")
    late = synthetic_config_from_dict(with_scene(data, cfg.late_scene))
    # Same item indices in both phases: an item's scene seed and window draw are functions of
    # its index, so item k is drawn exactly as a run with the late mix from the start would.
    return ConcatDataset(
        [
            Subset(SyntheticWindowDataset(base, spec), range(first_late)),
            Subset(SyntheticWindowDataset(late, spec), range(first_late, total)),
        ]
    )


def _load_frozen_body(pi3: nn.Module, probe: MotionProbe, path: str) -> None:
    """Load π³'s encoder / decoder and the probe from a stage-1 float16 state and freeze them.

    Raises:
        ValueError: the state lacks a body tensor or the probe, or carries heads (a heads-only
            stage must not silently start from another run's heads).
    """
    st16 = load_fp16_state(path)
    state = st16.parts.get("pi3", {})
    if any(k.split(".", 1)[0] in HEAD_NAMES for k in state):
        raise ValueError(f"{path}: body_fp16 already has π³ heads; give the motion-only stage 1")
    missing = [
        k for k in pi3.state_dict() if k not in state and k.split(".", 1)[0] not in HEAD_NAMES
    ]
    if missing or "probe" not in st16.parts:
        raise ValueError(f"{path}: not a stage-1 state (missing {missing[:3]} / probe)")
    load_part(pi3, state, "pi3", strict=False)
    load_part(probe, st16.parts["probe"], "probe")
    for name, p in pi3.named_parameters():
        p.requires_grad_(name.split(".", 1)[0] in HEAD_NAMES)
    probe.requires_grad_(False)


@torch.no_grad()
def validate(
    pi3: nn.Module, probe: MotionProbe, cfg: Pi3PretrainConfig, spec: WindowSpec
) -> dict[str, float]:
    """Probe loss and IoU on `cfg.val_windows` windows of unseen regular-mix scenes.

    Returns:
        {"windows", "loss", "fg_iou", "pooled_iou", "pooled_iou_px"}: fg_iou averages frames
        with a non-empty target; pooled_iou pools the cells of all frames; pooled_iou_px pools
        the pixels of the label masks (bilinear upsampled probe logits > 0 against > 0.5).
    """
    data = {k: v for k, v in cfg.data.items() if k != "kind"}
    val_cfg = dataclasses.replace(
        synthetic_config_from_dict(data),
        seed_start=cfg.val_seed,
        num_scenes=-(-cfg.val_windows // max(1, int(data.get("windows_per_scene", 2)))),
    )
    ds = SyntheticWindowDataset(val_cfg, spec)
    was = pi3.training
    pi3.eval()
    inter = union = inter_px = union_px = 0
    losses, ious = [], []
    for i in range(0, min(cfg.val_windows, len(ds)), cfg.batch_size):
        batch = collate_windows([ds[j] for j in range(i, min(i + cfg.batch_size, len(ds)))])
        logits = _forward(pi3, probe, batch["pi3"].to(cfg.device))
        labels = batch["gt_fg_window"].to(cfg.device)  # (B, N, R, R)
        loss, parts, target = batch_probe_loss(logits, batch, cfg)
        losses.append(float(loss))
        if math.isfinite(parts["fg_iou"]):
            ious.append(parts["fg_iou"])
        pb, tb = logits > 0, target > 0.5
        inter += int((pb & tb).sum())
        union += int((pb | tb).sum())
        # The same decision at the label resolution, so that π³ grids of different sizes
        # (whose probe cells differ) are compared on the same pixels.
        full = labels > 0.5
        up = F.interpolate(logits.flatten(0, 1)[:, None], size=full.shape[-2:], mode="bilinear")
        up = up.view(full.shape) > 0
        inter_px += int((up & full).sum())
        union_px += int((up | full).sum())
    pi3.train(was)
    return {
        "windows": float(min(cfg.val_windows, len(ds))),
        "loss": float(np.mean(losses)),
        "fg_iou": float(np.mean(ious)) if ious else math.nan,
        "pooled_iou": inter / union if union else math.nan,
        "pooled_iou_px": inter_px / union_px if union_px else math.nan,
    }


def pretrain(cfg: Pi3PretrainConfig) -> dict[str, Any]:
    """Run the pretraining; returns a summary dict (also written to summary.json)."""
    done = finished_stage(cfg)
    if done is not None:
        return done
    torch.manual_seed(cfg.seed)
    mcfg = GmosModelConfig.load(cfg.model)
    device = torch.device(cfg.device)
    pi3 = build_pi3(mcfg)
    if cfg.geometry_weight > 0:
        _add_heads(pi3, cfg)
    pi3 = pi3.train().to(device)
    probe = MotionProbe(mcfg.pi3.embed_dim, cfg.probe_subdivide).to(device)
    if cfg.train_body:
        params = [*pi3.parameters(), *probe.parameters()]
    else:
        _load_frozen_body(pi3, probe, cfg.body_fp16)
        params = [p for p in pi3.parameters() if p.requires_grad]
    o = cfg.optim
    opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas))
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def load_full(st: dict[str, Any]) -> None:
        pi3.load_state_dict(st["pi3"])
        probe.load_state_dict(st["probe"])

    def load_fp16(st16: Fp16State) -> None:
        if not cfg.train_body:
            # A heads-only state: the heads continue, the body stays the one of body_fp16.
            if "pi3_heads" not in st16.parts:
                raise ValueError(f"{cfg.resume_fp16}: not a heads-only state (no pi3_heads.*)")
            heads = st16.parts["pi3_heads"]
            if set(heads) != set(head_state(pi3)):
                raise ValueError(f"{cfg.resume_fp16}: head tensors differ from this config's")
            load_part(pi3, heads, "pi3_heads", strict=False)
            return
        state = st16.parts["pi3"]
        has_heads = any(k.split(".", 1)[0] in HEAD_NAMES for k in state)
        if cfg.geometry_weight > 0 and not has_heads:
            # A motion-only state (the committed stage 1) continued with geometry targets:
            # the encoder, decoder and probe carry on, the heads start from their init.
            missing = [k for k in pi3.state_dict() if k not in state]
            if any(k.split(".", 1)[0] not in HEAD_NAMES for k in missing):
                raise ValueError(f"pi3: missing keys outside the heads: {missing[:3]}")
            print(f"pretrain_pi3: {len(missing)} head tensors start fresh (state has no heads)")
            load_part(pi3, state, "pi3", strict=False)
        else:
            load_part(pi3, state, "pi3")
        load_part(probe, st16.parts["probe"], "probe")

    start, rewarm_at = resume_stage(cfg, opt, load_full, load_fp16, map_location=device)

    spec = WindowSpec(
        num_frames=mcfg.num_frames,
        pi3_pixel_limit=mcfg.pi3.pixel_limit,
        sam_size=mcfg.sam2.image_size,
        mask_size=4 * mcfg.head.grid,
    )
    data = dict(cfg.data)
    if data.pop("kind", "synthetic") != "synthetic":
        raise ValueError("π³ motion pretraining needs dense labels: data.kind must be synthetic")
    ds: Any = motion_stream(cfg, data, spec)
    if cfg.curriculum_steps > 0:
        easy_cfg = synthetic_config_from_dict(with_scene(data, cfg.curriculum_scene))
        n_easy = cfg.curriculum_steps * cfg.batch_size
        easy_cfg = dataclasses.replace(
            easy_cfg,
            # Own seeds right after the regular range, and exactly enough scenes.
            seed_start=easy_cfg.seed_start + easy_cfg.num_scenes,
            num_scenes=-(-n_easy // easy_cfg.windows_per_scene),
        )
        ds = ConcatDataset([SyntheticWindowDataset(easy_cfg, spec), ds])

    def save(step: int) -> None:
        # Official π³ key names (our module mirrors them): stage 2 loads this file through the
        # same `load_official_state_dict` path as a downloaded yyfz233/Pi3 checkpoint.
        sd = {k: v.detach().cpu().contiguous() for k, v in pi3.state_dict().items()}
        save_file(sd, str(out / "pi3.safetensors"), metadata={"trained_by": __name__})
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in probe.state_dict().items()},
            str(out / "probe.safetensors"),
        )
        save_stage_state(
            cfg,
            {"pi3": pi3.state_dict(), "probe": probe.state_dict()},
            # The heads-only stage commits its heads alone (the body is body_fp16's).
            {"pi3": pi3, "probe": probe} if cfg.train_body else {"pi3_heads": head_state(pi3)},
            opt,
            step,
            rewarm_at,
            {"stage": "pi3", "model": mcfg.name, "trained_by": "training.pretrain_pi3"},
        )

    def loss(batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        frames = batch["pi3"].to(device, non_blocking=True)
        logits, geom = _forward_geometry(pi3, probe, frames, cfg.motion_weight == 0)
        total, parts, _ = batch_probe_loss(logits, batch, cfg)
        if geom is not None:
            g_loss, g_parts = geometry_loss(
                geom,
                batch["gt_depth_window"].to(device, non_blocking=True),
                batch["gt_cam_to_world"].to(device, non_blocking=True),
            )
            # Heads only: the probe loss has no trainable input left; it is logged, not used.
            # motion_weight 0: π³ learns geometry alone (what the official π³ is trained on);
            # the probe still learns, on detached features, so that it keeps measuring.
            if cfg.train_body:
                total = (cfg.motion_weight or 1.0) * total + cfg.geometry_weight * g_loss
            else:
                total = g_loss
            parts = {**parts, **g_parts}
            if not cfg.train_body:
                parts["loss"] = float(total.detach())  # the loss that trains, not the probe's
        return total, parts

    keys = ["loss", "bce", "dice", "fg_iou", "grad_norm"]
    if cfg.geometry_weight > 0:
        keys += ["geo_depth", "geo_rot", "geo_trans", "geo_scale_err", "geo_conf"]
    hooks = StageHooks(
        desc="pretrain pi3",
        loss=loss,
        log_keys=keys,
        iou_key="fg_iou",
        save=save,
        validate=(lambda _step: validate(pi3, probe, cfg, spec)) if cfg.val_windows > 0 else None,
        save_on_nonfinite=True,
    )
    # Consecutive items share a rendered scene (windows_per_scene), in step order.
    return run_stage(cfg, hooks, ds, collate_windows, opt, params, start, rewarm_at)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (2: bad configuration)."""
    return stage_main(
        argv,
        "pretrain_pi3",
        "pi3_micro",
        pretrain_config_from_dict,
        pretrain,
        __doc__.split("\n\n")[0],
    )


if __name__ == "__main__":
    sys.exit(main())
