"""Train the flow motion net (`gmos_core.models.flow_motion_net`) on synthetic clips.

    python -m training.train_flow_motion --config-name flow_motion_micro [key=value ...]

Why. The micro π³ trained on a CPU carries no per-object motion signal on the held-out scene
mix (docs/training.md, sessions 11-13), so the Gmos motion head cannot learn one from it. Two-view
geometry of the dense optical flow does carry one (homography transfer error 0.73, Sampson
distance to a robustly fitted fundamental matrix 0.76 per-object AUROC on the validation clips,
against 0.67 for the ego baseline's grey residual); this net learns, from those planes over the
whole image, which pixels move in the world now (`gmos_core.geometry.flow_features`).

Data. Clips of the held-out generator (`training.splits.held_out_scenes`: the scene mix the
benchmark and the calibration use) at their own seeds (`train_seed`.., far from validation
800 000.. and the held-out 900 000..); every frame of a clip, its window clamped at the clip's
ends as the streaming runtime clamps it. The planes are computed once into ``cache_dir``
(chunks of `chunk_clips` clips; a chunk already there is reused, so an interrupted cache
resumes) and the net trains on them; each sample also comes mirrored left-right (flow and
coordinate x negated). Target: the fraction of each plane cell covered by objects that move
in the world at that frame (the renderer's instance masks and motion states).

Loss (ours: the paper has no such net): per-cell binary cross-entropy with the moving class
weighted `pos_weight` (~4 % of cells move).

Validation (`validate`, once at the end): per-object AUROC of the mean probability under each
visible object's renderer mask, moving now against the rest, on `val_clips` validation clips
(the measure of `training.probe_motion_cues`).

Resumable like every stage (`training.stage_loop`): ``last.pt`` and the committable
``state_fp16.safetensors`` (part ``net``); `max_steps` is the TOTAL schedule. `export_net`
writes the net as the runtime loads it (`gmos_core/assets/flow_motion.safetensors`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

from gmos_core.data.synthetic import SceneSample
from gmos_core.geometry.flow_features import (
    NEIGHBOUR_OFFSETS,
    NUM_FEATURES,
    PLANES_PER_NEIGHBOUR,
    FlowPairCache,
    flow_grey,
    window_planes,
)
from gmos_core.models.flow_decision import FLOW_MOTION_FORMAT, clamped_window
from gmos_core.models.flow_motion_net import FlowMotionNet
from training.resume import Fp16State, load_part
from training.splits import SplitSpec, held_out_scenes, iter_held_out_scenes
from training.stage_loop import (
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
    "FlowMotionConfig",
    "FlowPlaneDataset",
    "build_cache",
    "clip_planes",
    "export_net",
    "object_auroc",
    "train_flow_motion",
]

# Planes negated by a left-right mirror: each neighbour's flow x and homography error x, and
# the x coordinate.
_MIRROR_NEGATE = tuple(
    k * PLANES_PER_NEIGHBOUR + i for k in range(len(NEIGHBOUR_OFFSETS)) for i in (0, 2)
) + (NUM_FEATURES - 2,)


@dataclass(frozen=True)
class FlowMotionConfig(StageSettings):
    """One training run of the flow motion net (`training/configs/flow_motion_micro.yaml`).

    The loop, resumption and data-order settings are `StageSettings'` (``model`` and ``data``
    are not used: the net has one size and its data is the cache below).

    Attributes:
        width: channels of the net's first level.
        pos_weight: BCE weight of moving cells.
        train_seed: first scene seed of the training clips.
        train_clips: clips in the cache (every frame of each is a sample).
        chunk_clips: clips per cache file.
        cache_dir: where the planes are cached (rebuilt only where a chunk is missing).
        val_clips: validation clips for the end-of-run AUROC (seeds from `val_seed`; 0 = none).
        shuffle: walk the samples in a seeded random order (`FlowPlaneDataset`).
    """

    max_steps: int = 6000
    batch_size: int = 16
    ckpt_every: int = 100
    out_dir: str = "out/train/flow_motion_micro"
    width: int = 24
    pos_weight: float = 2.0
    train_seed: int = 600_000
    train_clips: int = 480
    chunk_clips: int = 20
    cache_dir: str = "out/cache/flow_motion"
    val_clips: int = 30
    shuffle: bool = True


def flow_config_from_dict(raw: dict[str, Any]) -> FlowMotionConfig:
    """A typed config from a composed dict (unknown keys are an error)."""
    cfg = stage_config_from_dict(FlowMotionConfig, raw, "flow motion config")
    if cfg.train_clips <= 0 or cfg.chunk_clips <= 0:
        raise ValueError(f"train_clips and chunk_clips must be positive: {cfg}")
    last_seed = cfg.train_seed + 100 * (cfg.train_clips // cfg.chunk_clips + 1) * cfg.chunk_clips
    if cfg.train_seed < 0 or last_seed > cfg.val_seed:
        raise ValueError(
            f"training seeds {cfg.train_seed}..{last_seed} may reach the validation seeds "
            f"({cfg.val_seed}..)"
        )
    return cfg


def clip_planes(scene: SceneSample) -> tuple[np.ndarray, np.ndarray]:
    """Every frame's planes and target of one clip.

    Returns:
        (T, NUM_FEATURES, h, w) float16 planes and (T, h, w) float16 targets (fraction of the
        cell on objects moving in the world at that frame).
    """
    greys = [flow_grey(f) for f in scene.frames]
    flows = FlowPairCache()  # neighbouring centres share pairs: each flow computed once
    planes, targets = [], []
    for t in range(scene.num_frames):
        window, center = clamped_window(greys, t)
        x = window_planes(window, center, flows)
        moving = np.isin(scene.instance_masks[t], scene.object_ids[scene.motion_state[t]])
        y = cv2.resize(moving.astype(np.float32), x.shape[:0:-1], interpolation=cv2.INTER_AREA)
        planes.append(x.astype(np.float16))
        targets.append(y.astype(np.float16))
    return np.stack(planes), np.stack(targets)


def build_cache(cfg: FlowMotionConfig) -> list[Path]:
    """The cache chunks of `cfg` (made where missing); chunk i holds `chunk_clips` clips from
    seed ``train_seed + 100 · chunk_clips · i``."""
    cache = Path(cfg.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    n_chunks = -(-cfg.train_clips // cfg.chunk_clips)
    paths = []
    for i in tqdm(range(n_chunks), desc="flow planes (chunks)", unit="chunk"):
        seed = cfg.train_seed + 100 * cfg.chunk_clips * i
        n = min(cfg.chunk_clips, cfg.train_clips - i * cfg.chunk_clips)
        path = cache / f"planes_{seed}_{n}.npz"
        if not path.is_file():
            scenes, _ = held_out_scenes(SplitSpec(num_seqs=n, seed=seed))
            xs, ys = zip(*(clip_planes(s) for s in scenes))
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, planes=np.concatenate(xs), targets=np.concatenate(ys))
            tmp.replace(path)  # a chunk is complete or absent
        paths.append(path)
    return paths


class FlowPlaneDataset(Dataset):
    """Cached samples and their mirrors, in a fixed shuffled order.

    Item i is entry ``order[i]`` of the 2N samples, where entry ``j + N`` is sample j mirrored
    left-right. The stage loop walks items in index order (`ResumableBatchSampler`), and the
    cache holds each clip's frames one after another: without the shuffle a batch would be 16
    frames of one clip. The order is a function of `seed` only, so resumption stays exact.

    Args:
        paths: cache chunks (`build_cache`); none: an empty dataset (a finished run).
        seed: the shuffle's seed.
        shuffle: False keeps the cache's order (clip by clip, then every mirror).
    """

    def __init__(self, paths: list[Path], seed: int = 0, shuffle: bool = True) -> None:
        chunks = [np.load(p) for p in paths]
        shape = (0, NUM_FEATURES, 8, 8)
        self.planes = np.concatenate([c["planes"] for c in chunks]) if chunks else np.zeros(shape)
        self.targets = np.concatenate([c["targets"] for c in chunks]) if chunks else np.zeros(0)
        if self.planes.shape[1] != NUM_FEATURES or len(self.targets) != len(self.planes):
            raise ValueError(f"flow plane cache: bad shape {self.planes.shape}")
        n2 = 2 * len(self.planes)
        self.order = np.random.default_rng(seed).permutation(n2) if shuffle else np.arange(n2)

    def __len__(self) -> int:
        return 2 * len(self.planes)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        n = len(self.planes)
        j = int(self.order[i])
        x = torch.from_numpy(self.planes[j % n].astype(np.float32))
        y = torch.from_numpy(self.targets[j % n].astype(np.float32))
        if j >= n:
            x, y = x.flip(-1), y.flip(-1)
            x[list(_MIRROR_NEGATE)] *= -1
        return {"planes": x, "target": y}


def _collate(items: list[dict[str, Tensor]]) -> dict[str, Any]:
    return {
        "planes": torch.stack([it["planes"] for it in items]),
        "target": torch.stack([it["target"] for it in items]),
        "keys": f"{len(items)} cached windows",
    }


def object_auroc(net: FlowMotionNet, num_clips: int, seed: int) -> dict[str, Any]:
    """Per-object AUROC of the net's mean probability under each visible object's mask
    (every 3rd frame of `num_clips` clips from `seed`; objects of ≥ 20 pixels)."""
    from gmos_core.models.flow_decision import FlowMotionDecision, clip_motion_maps
    from training.probe_motion_cues import auroc

    decision = FlowMotionDecision(net=net)
    scores, moving, kinds = [], [], []
    scenes = (s for _, s in iter_held_out_scenes(SplitSpec(num_seqs=num_clips, seed=seed)))
    for s in tqdm(scenes, desc="flow motion AUROC", unit="clip", total=num_clips):
        for t, prob in clip_motion_maps(decision, s.frames, range(2, s.num_frames - 2, 3)):
            for k, oid in enumerate(s.object_ids):
                m = s.instance_masks[t] == oid
                if m.sum() >= 20:
                    scores.append(float(prob[m].mean()))
                    moving.append(bool(s.motion_state[t, k]))
                    kinds.append(s.scene_kind)
    sc, mv, kd = np.array(scores), np.array(moving), np.array(kinds)
    by_kind = {k: auroc(sc[mv & (kd == k)], sc[~mv & (kd == k)]) for k in sorted(set(kinds))}
    return {"objects": len(sc), "moving": int(mv.sum()), "auroc": auroc(sc[mv], sc[~mv]),
            "auroc_by_kind": by_kind}  # fmt: skip


def export_net(net: FlowMotionNet, path: str | Path, step: int) -> Path:
    """Write the net as `FlowMotionDecision` loads it: float16 weights and metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()}
    meta = {"format": FLOW_MOTION_FORMAT, "width": str(net.out.in_channels), "step": str(step),
            "trained_by": "training.train_flow_motion"}  # fmt: skip
    save_file(tensors, str(path), metadata=meta)
    return path


def train_flow_motion(cfg: FlowMotionConfig) -> dict[str, Any]:
    """Run (or continue) the training; returns a summary (also written to summary.json)."""
    done = finished_stage(cfg)
    if done is not None:
        return done
    torch.manual_seed(cfg.seed)
    net = FlowMotionNet(width=cfg.width)
    params = list(net.parameters())
    o = cfg.optim
    opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas))
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def load_fp16(st16: Fp16State) -> None:
        load_part(net, st16.parts["net"], "net")

    start, rewarm_at = resume_stage(cfg, opt, lambda st: net.load_state_dict(st["net"]), load_fp16)
    # A run already at its end (a fresh clone's committed state) needs no planes.
    paths = build_cache(cfg) if start.step < cfg.max_steps else []
    ds = FlowPlaneDataset(paths, cfg.seed, cfg.shuffle)
    pos_weight = torch.tensor(cfg.pos_weight)

    def save(step: int) -> None:
        save_stage_state(
            cfg, {"net": net.state_dict()}, {"net": net}, opt, step, rewarm_at,
            {"stage": "flow_motion", "trained_by": "training.train_flow_motion"},
        )  # fmt: skip
        export_net(net, out / "flow_motion.safetensors", step)

    def loss(batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        logits = net(batch["planes"])
        target = batch["target"]
        value = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)
        with torch.no_grad():
            pred, gt = logits > 0, target > 0.5
            union = (pred | gt).sum().item()
            iou = (pred & gt).sum().item() / union if union else 1.0
        return value, {"loss": float(value.detach()), "iou": iou}

    def validate(step: int) -> dict[str, Any]:
        net.eval()
        with torch.no_grad():
            v = {"step": step, **object_auroc(net, cfg.val_clips, cfg.val_seed)}
        net.train()
        (out / "validation.json").write_text(json.dumps(v, indent=1))
        return v

    net.train()
    hooks = StageHooks(
        desc="flow motion net",
        loss=loss,
        log_keys=("loss", "iou", "grad_norm"),
        iou_key="iou",
        save=save,
        validate=validate if cfg.val_clips > 0 else None,
    )
    return run_stage(cfg, hooks, ds, _collate, opt, params, start, rewarm_at)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (2: bad configuration)."""
    return stage_main(
        argv,
        "train_flow_motion",
        "flow_motion_micro",
        flow_config_from_dict,
        train_flow_motion,
        __doc__.split("\n\n")[0],
    )


if __name__ == "__main__":
    sys.exit(main())
