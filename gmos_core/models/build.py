"""The torch modules of one Gmos model: π³ + SAM2 features + a Gmos head.

`GmosModelConfig` mirrors `gmos_core/configs/paper.yaml` / `gmos_core/configs/micro.yaml`; `build_frame_model`
turns one into a `GmosTorchModel` (the modules, trained or loaded from official checkpoints)
and `GmosTorchModel.frame_model()` puts them behind the torch backend: frames always run
through `gmos_core.backends.BackendFrameModel`, whatever the backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml

from gmos_core.backends import BackendFrameModel, ModelShapes
from gmos_core.backends.torch_backend import TorchBackend
from gmos_core.bundle import BundleError, load_into, read_bundle
from gmos_core.models.checkpoints import load_gmos_checkpoint
from gmos_core.models.gmos import GmosProposer, GmosS
from gmos_core.models.pi3 import Pi3Encoder, load_safetensors_file
from gmos_core.models.pi3_heads import Pi3HeadSizes
from gmos_core.models.sam2_features import Sam2FeatureExtractor
from gmos_core.operating_point import OperatingPoint

# Model configurations ship inside the package (package data), so a non-editable install
# (`pip install .`, `colcon build` without --symlink-install) finds them; the repo-root
# config/ holds node parameters only.
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass(frozen=True)
class Pi3Config:
    encoder_depth: int = 24
    decoder_depth: int = 36
    embed_dim: int = 1024
    num_heads: int = 16
    pixel_limit: int = 255_000


@dataclass(frozen=True)
class Sam2Config:
    size: str = "large"
    image_size: int = 1024
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class HeadConfig:
    embed_dim: int = 256
    pi3_dim: int = 1024
    sam_dim: int = 256
    encoder_depth: int = 3
    decoder_depth: int = 3
    num_heads: int = 8
    num_obj_tokens: int = 100
    mlp_dim: int = 2048
    grid: int = 64


@dataclass(frozen=True)
class GmosModelConfig:
    """One named configuration (`paper` or `micro`), see `gmos_core/configs/<name>.yaml`."""

    name: str = "paper"
    pi3: Pi3Config = field(default_factory=Pi3Config)
    sam2: Sam2Config = field(default_factory=Sam2Config)
    head: HeadConfig = field(default_factory=HeadConfig)
    num_frames: int = 5
    span_s: float = 0.5
    top_k: int = 20

    @classmethod
    def load(cls, name_or_path: str | Path) -> GmosModelConfig:
        """Load `gmos_core/configs/<name>.yaml` or a YAML file path; unknown keys are an error.

        ``extends: <name or path>`` starts from another configuration: each section given here
        updates that one's key by key (an experiment states only what it changes).
        """
        path, raw = _read_model_yaml(name_or_path)
        try:
            return cls(
                name=str(raw.get("name", path.stem)),
                pi3=Pi3Config(**raw.get("pi3", {})),
                sam2=Sam2Config(
                    **{**raw.get("sam2", {}), "overrides": tuple(raw["sam2"].get("overrides", []))}
                )
                if "sam2" in raw
                else Sam2Config(),
                head=HeadConfig(**raw.get("head", {})),
                num_frames=int(raw.get("window", {}).get("num_frames", 5)),
                span_s=float(raw.get("window", {}).get("span_s", 0.5)),
                top_k=int(raw.get("postprocess", {}).get("top_k", 20)),
            )
        except TypeError as exc:  # unknown key in a section
            raise ValueError(f"{path}: {exc}") from exc


def _read_model_yaml(name_or_path: str | Path, seen: tuple[Path, ...] = ()) -> tuple[Path, dict]:
    """(path, raw sections) of a model config, with its ``extends`` chain merged in."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"model config {name_or_path!r} not found (known: {known})")
    if path.resolve() in seen:
        raise ValueError(f"{path}: 'extends' loops back to itself")
    raw = yaml.safe_load(path.read_text()) or {}
    base = raw.pop("extends", None)
    if base is None:
        return path, raw
    _, merged = _read_model_yaml(base, (*seen, path.resolve()))
    merged.pop("name", None)  # the derived config has its own name (default: its file stem)
    for key, value in raw.items():
        old = merged.get(key)
        merged[key] = (
            {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
        )
    return path, merged


class GmosTorchModel:
    """The torch modules of one model (π³ encoder, SAM2 image features, Gmos-S or proposer
    head) with what running them needs (configuration, pixel budget, top-k, operating point).

    Not a frame model itself: training uses the modules, every frame path goes through
    `frame_model()` (the torch backend behind `BackendFrameModel`), like onnxruntime and
    TensorRT do.
    """

    def __init__(
        self,
        config: GmosModelConfig,
        pi3: Pi3Encoder,
        sam2: Sam2FeatureExtractor,
        head: GmosS | GmosProposer,
        device: str | torch.device = "cpu",
        operating_point: OperatingPoint | None = None,
    ) -> None:
        self.config = config
        self.device = torch.device(device)
        self.operating_point = operating_point or OperatingPoint()
        self.pi3 = pi3.to(self.device).eval()
        self.sam2 = sam2.to(self.device).eval()
        self.head = head.to(self.device).eval()
        self.pixel_limit = config.pi3.pixel_limit
        self.top_k = config.top_k

    @property
    def mode(self) -> Literal["gmos_s", "gmos"]:
        return "gmos_s" if isinstance(self.head, GmosS) else "gmos"

    def frame_model(
        self,
        device: str | None = None,
        precision: str = "fp32",
        frame_hw: tuple[int, int] | None = None,
        keep_sam2_backbone: bool = False,
    ) -> Any:
        """These modules behind the torch backend, as the runtime's `BackendFrameModel`.

        Args:
            device: torch device (default: the modules' device).
            precision: "fp32", or "bf16" / "fp16" (autocast; fp16 needs CUDA). On an H200
                bf16/fp16 cut the paper-size network time ~3.3x at a relative error of
                1e-2 / 2e-3 (docs/deployment.md).
            frame_hw: the expected camera frame (H, W); the torch backend follows whatever
                size arrives, this only sets the initial shapes.
            keep_sam2_backbone: keep SAM2's raw features for a SAM2 tracker.

        Raises:
            ValueError: a precision the device cannot run.
        """
        shapes = ModelShapes.from_config(self.config, frame_hw)
        backend = TorchBackend.from_model(
            self, shapes, device=device or str(self.device), precision=precision
        )
        return BackendFrameModel(
            backend,
            self.mode,
            self.pixel_limit,
            self.top_k,
            operating_point=self.operating_point,
            keep_sam2_backbone=keep_sam2_backbone,
        )


def build_pi3(config: GmosModelConfig | str, heads: Pi3HeadSizes | None = None) -> Pi3Encoder:
    """The π³ encoder of a named configuration, random weights (draws from torch's RNG).

    `heads`: also build the point / confidence / camera heads with these sizes (to load a
    checkpoint or bundle that has them); None = the mask-only encoder.
    """
    cfg = GmosModelConfig.load(config) if isinstance(config, str) else config
    sizes = {}
    if heads is not None:
        sizes = dict(
            with_heads=True,
            head_depth=heads.depth,
            head_width=heads.width,
            head_num_heads=heads.num_heads,
            camera_width=heads.camera_width,
        )
    return Pi3Encoder(
        encoder_depth=cfg.pi3.encoder_depth,
        decoder_depth=cfg.pi3.decoder_depth,
        embed_dim=cfg.pi3.embed_dim,
        num_heads=cfg.pi3.num_heads,
        **sizes,
    )


def checkpoint_head_sizes(state: dict[str, torch.Tensor]) -> Pi3HeadSizes | None:
    """Head sizes of an official-layout π³ state dict that has its heads, else None.

    Widths and depth come from the tensors; the attention head count is not in the shapes and
    is the official one (16) for checkpoints (bundles store theirs).
    """
    if "point_decoder.projects.weight" not in state:
        return None
    depth = 1 + max(
        (int(k.split(".")[2]) for k in state if k.startswith("point_decoder.blocks.")),
        default=-1,
    )
    return Pi3HeadSizes(
        width=int(state["point_decoder.projects.weight"].shape[0]),
        depth=depth,
        camera_width=int(state["camera_decoder.linear_out.weight"].shape[0]),
    )


def build_frame_model(
    config: GmosModelConfig | str,
    variant: Literal["gmos_s", "gmos"],
    device: str = "cpu",
    pi3_checkpoint: str | Path | None = None,
    sam2_checkpoint: str | Path | None = None,
    head_checkpoint: str | Path | None = None,
    seed: int | None = 0,
    with_pi3_heads: bool = True,
    pi3_heads: Pi3HeadSizes | None = None,
) -> GmosTorchModel:
    """Build a `GmosTorchModel` from a named configuration and optional checkpoints.

    Without checkpoints the weights are random (seeded): fine for timing and plumbing, never
    for results.

    Args:
        with_pi3_heads: load π³'s geometry heads when `pi3_checkpoint` has them (False: the
            mask-only encoder, heads ignored).
        pi3_heads: without `pi3_checkpoint`, build π³ with (untrained) heads of these sizes
            (bundles with heads, tests); ignored with a checkpoint.
    """
    cfg = GmosModelConfig.load(config) if isinstance(config, str) else config
    if seed is not None:
        torch.manual_seed(seed)
    if pi3_checkpoint is not None:
        # An official checkpoint has its geometry heads: they are built and loaded
        # (`Pi3LoadReport.heads_loaded`), so the runtime can give up-to-scale 3-D states.
        state = load_safetensors_file(pi3_checkpoint)
        pi3 = build_pi3(cfg, heads=checkpoint_head_sizes(state) if with_pi3_heads else None)
        pi3.load_official_state_dict(state)
    else:
        pi3 = build_pi3(cfg, heads=pi3_heads)
    sam2 = Sam2FeatureExtractor(
        size=cfg.sam2.size,
        checkpoint=sam2_checkpoint,
        device=device,
        overrides=list(cfg.sam2.overrides),
    )
    h = cfg.head
    common = dict(
        embed_dim=h.embed_dim,
        pi3_dim=h.pi3_dim,
        sam_dim=h.sam_dim,
        encoder_depth=h.encoder_depth,
        num_heads=h.num_heads,
        mlp_dim=h.mlp_dim,
        grid=h.grid,
    )
    if variant == "gmos_s":
        head: GmosS | GmosProposer = GmosS(**common)
    elif variant == "gmos":
        head = GmosProposer(
            **common, decoder_depth=h.decoder_depth, num_obj_tokens=h.num_obj_tokens
        )
    else:
        raise ValueError(f"variant must be 'gmos_s' or 'gmos', got {variant!r}")
    if head_checkpoint is not None:
        load_gmos_checkpoint(head, head_checkpoint)
    return GmosTorchModel(cfg, pi3, sam2, head, device=device)


def build_frame_model_from_bundle(path: str | Path, device: str = "cpu") -> GmosTorchModel:
    """Build the model a one-file bundle (`gmos_core.bundle`) describes and load its weights."""
    info, parts = read_bundle(path)
    cfg = GmosModelConfig.load(info.config)
    heads = None
    if checkpoint_head_sizes(parts["pi3"]) is not None:
        if info.pi3_heads is None:
            raise BundleError(
                f"{path}: the bundle has π³ head tensors but no 'pi3_heads' metadata (their "
                "attention head count); re-save it with gmos_core.bundle.save_bundle"
            )
        heads = info.pi3_heads
    model = build_frame_model(cfg, info.variant, device=device, seed=None, pi3_heads=heads)
    load_into(model.pi3, parts["pi3"], f"{path} [pi3]", strict=True)
    # A bundle with π³ heads carries trained ones (strict load: all of them).
    model.pi3.heads_loaded = heads is not None
    load_into(model.sam2.sam_model, parts["sam2"], f"{path} [sam2]", strict=False)
    load_into(model.head, parts["head"], f"{path} [head]", strict=True)
    if not parts["sam2"]:
        raise BundleError(f"{path}: no SAM2 feature weights in the bundle")
    model.pi3.eval()
    model.sam2.eval()
    model.head.eval()
    model.operating_point = info.operating_point
    return model
