"""One-file model bundles (safetensors) for trained micro models and deployments.

The official release ships three files (π³ safetensors, SAM2 `.pt`, Gmos `.pth`); a model we
train ourselves (the micro configuration trains its encoders too) is one safetensors file:

    pi3.<official π³ key>        the Pi3Encoder state dict
    sam2.<official SAM2 key>     the SAM2 image-encoder part only (image_encoder.*,
                                 sam_mask_decoder.conv_s0/conv_s1.*, no_mem_embed): what the
                                 proposer consumes; memory modules are not needed here
    head.<official Gmos key>     the GmosS / GmosProposer state dict

with metadata `{"format": "gmos-bundle-v1", "config": <name>, "variant": "gmos_s"|"gmos",
"config_yaml": <the model YAML>}` and optionally `"operating_point": <JSON>` (the decision
thresholds picked on a validation split, `gmos_core.operating_point`), `"operating_point.<decision>":
<JSON>` (the thresholds with another motion decision than the head, e.g. ``depth_warp``,
`gmos_core.geometry.warp_decision`), and `"pi3_heads": <JSON>` when
the π³ part has its geometry heads (their sizes, `Pi3HeadSizes`). Tensors may be stored as float16 to keep shipped
checkpoints small; they are cast back to the model's dtype on load. Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from gmos_core.models.pi3_heads import Pi3HeadSizes
from gmos_core.operating_point import OperatingPoint

FORMAT = "gmos-bundle-v1"
# Metadata key prefix of the operating points of motion decisions other than the head.
_DECISION_PREFIX = "operating_point."
SAM2_FEATURE_PREFIXES = (
    "image_encoder.",
    "sam_mask_decoder.conv_s0.",
    "sam_mask_decoder.conv_s1.",
    "no_mem_embed",
)


class BundleError(ValueError):
    """A bundle file that is not a gmos bundle, or does not fit the model."""


@dataclass(frozen=True)
class BundleInfo:
    config: str
    variant: Literal["gmos_s", "gmos"]
    config_yaml: str
    extra: dict[str, str]
    # The paper's thresholds unless the bundle was calibrated (`training.calibrate`).
    operating_point: OperatingPoint = OperatingPoint()
    # Sizes of π³'s geometry heads when the bundle holds them (`pi3.point_decoder.*` ...).
    pi3_heads: Pi3HeadSizes | None = None
    # Calibrated points of the other motion decisions ("depth_warp", "flow_motion"), by name.
    decision_points: dict[str, OperatingPoint] = field(default_factory=dict)

    def point_for(self, decision: str) -> OperatingPoint | None:
        """The operating point of a motion decision: "head" → `operating_point`; another →
        its calibrated point, None if the bundle was never calibrated with it."""
        return self.operating_point if decision == "head" else self.decision_points.get(decision)


def sam2_feature_state(sam_model: nn.Module) -> dict[str, torch.Tensor]:
    """The SAM2 entries the image features depend on (the tracker's memory modules excluded)."""
    return {k: v for k, v in sam_model.state_dict().items() if k.startswith(SAM2_FEATURE_PREFIXES)}


def save_bundle(
    path: str | Path,
    pi3: nn.Module,
    sam_model: nn.Module,
    head: nn.Module,
    config: str,
    variant: Literal["gmos_s", "gmos"],
    config_yaml: str = "",
    half: bool = False,
    extra: dict[str, str] | None = None,
    operating_point: OperatingPoint | None = None,
) -> Path:
    """Write one bundle file. `half=True` stores float tensors as float16 (half the size)."""
    tensors: dict[str, torch.Tensor] = {}
    parts = (
        ("pi3", pi3.state_dict()),
        ("sam2", sam2_feature_state(sam_model)),
        ("head", head.state_dict()),
    )
    for prefix, sd in parts:
        for k, v in sd.items():
            t = v.detach().cpu().contiguous()
            if half and t.is_floating_point():
                t = t.to(torch.float16)
            tensors[f"{prefix}.{k}"] = t
    meta = {"format": FORMAT, "config": config, "variant": variant, "config_yaml": config_yaml}
    meta.update({f"extra.{k}": str(v) for k, v in (extra or {}).items()})
    if operating_point is not None:
        meta["operating_point"] = operating_point.to_json()
    if getattr(pi3, "with_heads", False):
        # The heads' attention head count is not in the tensor shapes.
        meta["pi3_heads"] = Pi3HeadSizes.of(pi3).to_json()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    return path


def read_bundle_info(path: str | Path) -> BundleInfo:
    """A bundle's metadata only (configuration, variant, operating point); no tensor is read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"bundle {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise BundleError(f"{path} is not a readable safetensors bundle: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise BundleError(
            f"{path} is not a gmos bundle (metadata format={meta.get('format')!r}, "
            f"expected {FORMAT!r}); official checkpoints load with the separate pi3/sam2/head "
            "options"
        )
    variant = meta.get("variant")
    if variant not in ("gmos_s", "gmos"):
        raise BundleError(f"{path}: unknown variant {variant!r}")
    extra = {k[6:]: v for k, v in meta.items() if k.startswith("extra.")}
    try:
        op = (
            OperatingPoint.from_json(meta["operating_point"]) if "operating_point" in meta else None
        )
    except ValueError as exc:
        raise BundleError(f"{path}: bad operating_point metadata: {exc}") from exc
    points = {}
    for key in meta:
        if key.startswith(_DECISION_PREFIX):
            try:
                points[key[len(_DECISION_PREFIX) :]] = OperatingPoint.from_json(meta[key])
            except ValueError as exc:
                raise BundleError(f"{path}: bad {key} metadata: {exc}") from exc
    try:
        heads = Pi3HeadSizes.from_json(meta["pi3_heads"]) if "pi3_heads" in meta else None
    except ValueError as exc:
        raise BundleError(f"{path}: bad pi3_heads metadata: {exc}") from exc
    return BundleInfo(
        meta.get("config", ""),
        variant,
        meta.get("config_yaml", ""),
        extra,
        op if op is not None else OperatingPoint(),
        heads,
        points,
    )


def read_bundle(path: str | Path) -> tuple[BundleInfo, dict[str, dict[str, torch.Tensor]]]:
    """Read a bundle: (info, {"pi3": sd, "sam2": sd, "head": sd})."""
    info = read_bundle_info(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise BundleError(f"{path} is not a readable safetensors bundle: {exc}") from exc
    parts: dict[str, dict[str, torch.Tensor]] = {"pi3": {}, "sam2": {}, "head": {}}
    for k, v in tensors.items():
        prefix, _, rest = k.partition(".")
        if prefix not in parts:
            raise BundleError(f"{path}: unexpected key {k!r}")
        parts[prefix][rest] = v
    return info, parts


def bundle_sha256(path: str | Path) -> str:
    """sha256 of a bundle file: what an ONNX export records as the weights it holds."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_operating_point(
    src: str | Path, dst: str | Path, op: OperatingPoint, decision: str = "head"
) -> Path:
    """Copy bundle `src` to `dst` (may be the same file) with operating point `op` for the
    motion decision `decision` ("head": the bundle's `operating_point`; the other decisions'
    points are kept).

    Tensors are copied bit for bit; only the metadata changes.
    """
    read_bundle(src)  # validates the format first, with its named errors
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)
    meta["operating_point" if decision == "head" else _DECISION_PREFIX + decision] = op.to_json()
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(dst)  # atomic: a failed write never leaves half a bundle behind
    return dst


def load_into(module: nn.Module, state: dict[str, torch.Tensor], what: str, strict: bool) -> None:
    """Load `state` into `module` with dtype casts and named shape/key errors."""
    own = module.state_dict()
    wrong = [
        f"{k}: bundle {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if wrong:
        raise BundleError(f"{what}: shape mismatch: " + "; ".join(wrong[:5]))
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state]
    if unexpected or (strict and missing):
        raise BundleError(
            f"{what}: {len(missing)} missing {missing[:5]}, {len(unexpected)} unexpected "
            f"{unexpected[:5]}"
        )
    cast = {k: v.to(own[k].dtype) for k, v in state.items()}
    module.load_state_dict(cast, strict=False)


def describe(path: str | Path) -> str:
    """One-line description of a bundle (for logs)."""
    info, parts = read_bundle(path)
    n = sum(v.numel() for sd in parts.values() for v in sd.values())
    return json.dumps(
        {
            "config": info.config,
            "variant": info.variant,
            "params": n,
            "operating_point": json.loads(info.operating_point.to_json()),
            **{
                _DECISION_PREFIX + d: json.loads(op.to_json())
                for d, op in sorted(info.decision_points.items())
            },
            **info.extra,
        }
    )
