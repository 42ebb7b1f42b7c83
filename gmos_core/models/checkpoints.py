"""Loading and saving Gmos / SAM2 checkpoints in the official file formats, safely.

Official formats:
    * Gmos proposer and Gmos-S: ``torch.save({"model_state_dict": state_dict, ...}, path)``; keys may
      carry a ``module.`` prefix (DataParallel / DDP training). The official loader strips it and
      calls ``load_state_dict(strict=False)``, which silently ignores misspelt keys; here every
      parameter is required and every problem is reported by name.
    * SAM2: ``torch.save({"model": state_dict}, path)`` (``sam2.1_hiera_*.pt``).

Files are never unpickled in full: ``torch.load(..., weights_only=True)`` only rebuilds tensors and
plain containers, so a malicious checkpoint cannot run code.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

__all__ = [
    "CheckpointError",
    "LoadReport",
    "load_gmos_checkpoint",
    "load_gmos_state_dict",
    "load_sam2_checkpoint_state",
    "save_gmos_checkpoint",
]

GMOS_STATE_KEY = "model_state_dict"
SAM2_STATE_KEY = "model"
_DDP_PREFIX = "module."

# Keys that only one of the two Gmos heads has; used to recognise "the other model's" checkpoint.
_PROPOSER_ONLY_PREFIXES = ("obj_token", "trans_decoder.", "upsampling.", "motion_head.")
_GMOS_S_ONLY_PREFIXES = ("fg_upscaling.", "fg_out.")


class CheckpointError(ValueError):
    """A checkpoint file or state dict cannot be used: wrong type, corrupt, wrong model, or
    mismatching keys or shapes (the message names the problem). The one checkpoint error of
    every loader (Gmos, SAM2, Pi3)."""


@dataclass
class LoadReport:
    """What happened while loading a Gmos / SAM2 checkpoint into a model (Pi3's encoder loader
    reports with `gmos_core.models.pi3.Pi3LoadReport`).

    Attributes:
        missing: model keys absent from the checkpoint that were tolerated (non-parameter buffers;
            a missing parameter raises instead).
        unexpected: checkpoint keys the model does not have (not loaded).
        ignored: other top-level entries of the checkpoint file that were not read
            (e.g. ``optimizer_state_dict``, ``epoch``).
    """

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def _sniff(path: Path) -> None:
    """Reject files that are not torch checkpoints before handing them to the unpickler.

    torch writes zip archives (``PK\\x03\\x04``) since 1.6 and, with the legacy serializer, a raw
    pickle stream (first byte ``0x80``). Anything else gets a message that says what it is.
    """
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a regular file: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint file is empty: {path}")
    with path.open("rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        # A zip whose central directory (at the very end) is missing was cut short.
        if not zipfile.is_zipfile(path):
            raise CheckpointError(
                f"checkpoint is truncated or corrupt (zip archive without its central "
                f"directory, {size} bytes): {path}"
            )
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointError(f"checkpoint is truncated or corrupt: {path}: {exc}") from exc
        # torch archives hold "<archive name>/data.pkl"; an .npz or other zip does not.
        if not any(n.endswith("data.pkl") for n in names):
            raise CheckpointError(
                f"{path} is a zip archive but not a torch checkpoint (members: {names[:5]}); "
                "an .npz file?"
            )
        return
    if head[:1] == b"\x80":
        return
    if len(head) >= 9 and head[8:9] == b"{":
        # safetensors: 8-byte little-endian header length, then a JSON header.
        raise CheckpointError(
            f"{path} is a safetensors file, not a torch checkpoint; Gmos/SAM2 checkpoints are "
            "torch.save() files ('.pth' / '.pt')"
        )
    if head[:6] == b"\x93NUMPY":
        raise CheckpointError(f"{path} is a .npy file, not a torch checkpoint")
    printable = all(32 <= c < 127 or c in (9, 10, 13) for c in head)
    kind = "a text file" if printable else "not a torch checkpoint"
    raise CheckpointError(
        f"{path} is {kind} (starts with {head[:16]!r}); expected a torch.save() checkpoint"
    )


def _torch_load(path: str | Path) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with readable errors."""
    path = Path(path)
    _sniff(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            # e.g. "pickle data was truncated" from a cut legacy-format file.
            raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {exc}") from exc
        # weights_only refuses anything that is not tensors / plain containers: keep refusing.
        raise CheckpointError(
            f"refusing to load {path}: it contains objects outside the weights-only safe set "
            f"(only tensors and plain containers are accepted). torch said: {exc}"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {exc}") from exc


def _model_kind(keys: Any) -> str | None:
    """'GmosProposer', 'GmosS' or None, from a collection of state-dict keys."""
    keys = list(keys)
    if any(k.startswith(_GMOS_S_ONLY_PREFIXES) for k in keys):
        return "GmosS"
    if any(k.startswith(_PROPOSER_ONLY_PREFIXES) for k in keys):
        return "GmosProposer"
    return None


def _strip_prefix(state: Mapping[str, Any]) -> OrderedDict[str, Any]:
    """Drop a leading ``module.`` (DataParallel / DDP) from every key, as the official loader does."""
    out: OrderedDict[str, Any] = OrderedDict()
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"state dict key {key!r} is not a string")
        new = key[len(_DDP_PREFIX) :] if key.startswith(_DDP_PREFIX) else key
        if new in out:
            raise CheckpointError(f"state dict has {new!r} both with and without 'module.'")
        out[new] = value
    return out


def _fmt(shape: Any) -> str:
    return str(tuple(int(s) for s in shape))


def load_gmos_state_dict(
    model: nn.Module, state: Mapping[str, Any], source: str = "state dict"
) -> LoadReport:
    """Load a Gmos state dict (already read from disk) into ``model`` with full checking.

    Args:
        model: a ``GmosProposer`` / ``GmosS`` (or any module; the checks are generic). A model
            built on the ``meta`` device gets the checkpoint tensors assigned.
        state: key -> tensor mapping; a ``module.`` prefix is stripped.
        source: name used in error messages (the file path).
    Returns:
        :class:`LoadReport` (``ignored`` empty).
    Raises:
        CheckpointError: other model's checkpoint, non-tensor values, shape mismatches, or
            missing parameters.
    """
    state = _strip_prefix(state)
    model_sd = model.state_dict()
    model_kind = _model_kind(model_sd)
    ckpt_kind = _model_kind(state)
    if model_kind and ckpt_kind and model_kind != ckpt_kind:
        raise CheckpointError(
            f"{source} is a {ckpt_kind} checkpoint but the model is a {model_kind} "
            f"({type(model).__name__}); load it into a {ckpt_kind} instead"
        )

    bad_values = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad_values:
        raise CheckpointError(f"{source}: entries that are not tensors: {bad_values[:10]}")
    mismatched = [
        f"{k}: checkpoint {_fmt(state[k].shape)} vs model {_fmt(model_sd[k].shape)}"
        for k in model_sd
        if k in state and tuple(state[k].shape) != tuple(model_sd[k].shape)
    ]
    if mismatched:
        raise CheckpointError(
            f"{source}: {len(mismatched)} shape mismatch(es) (built with other sizes?): "
            + "; ".join(mismatched)
        )

    param_names = {name for name, _ in model.named_parameters()}
    missing = [k for k in model_sd if k not in state]
    critical = [k for k in missing if k in param_names]
    if critical:
        shown = ", ".join(critical[:20]) + (" ..." if len(critical) > 20 else "")
        hint = (
            " (no key of this model matched at all: is this a checkpoint of another model?)"
            if len(critical) == len(param_names)
            else ""
        )
        raise CheckpointError(
            f"{source} lacks {len(critical)} parameter(s) of {type(model).__name__}{hint}: {shown}"
        )
    unexpected = [k for k in state if k not in model_sd]

    # Tensors on the meta device have no storage to copy into: assign the loaded ones instead.
    on_meta = any(t.is_meta for t in model_sd.values())
    loadable = {k: v for k, v in state.items() if k in model_sd}
    model.load_state_dict(loadable, strict=False, assign=on_meta)
    return LoadReport(missing=missing, unexpected=unexpected)


def load_gmos_checkpoint(model: nn.Module, path: str | Path) -> LoadReport:
    """Load an official Gmos / Gmos-S checkpoint file into ``model``.

    Reads ``torch.load(path, map_location="cpu", weights_only=True)["model_state_dict"]``, strips a
    ``module.`` prefix and loads with shape and key checks.

    Args:
        model: ``GmosProposer`` or ``GmosS`` built with the sizes of the checkpoint.
        path: ``.pth`` file written by the official training code or :func:`save_gmos_checkpoint`.
    Returns:
        :class:`LoadReport`; ``ignored`` lists the file's other top-level entries.
    Raises:
        CheckpointError: wrong file type, truncated file, wrong layout, other model's checkpoint,
            shape mismatch (names key and both shapes) or missing parameters.
    """
    obj = _torch_load(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{path}: expected a dict with {GMOS_STATE_KEY!r}, got {type(obj).__name__}"
        )
    if GMOS_STATE_KEY not in obj:
        top = [str(k) for k in list(obj.keys())[:8]]
        if SAM2_STATE_KEY in obj:
            why = "it has a 'model' entry, like a SAM2 checkpoint (use load_sam2_checkpoint_state)"
        elif any(str(k).startswith(("encoder.", "decoder.", "point_head.")) for k in obj):
            why = "it looks like a bare Pi3 state dict"
        elif _model_kind(str(k) for k in obj):
            why = "it is a bare state dict; Gmos checkpoints wrap it as {'model_state_dict': ...}"
        else:
            why = f"top-level keys: {top}"
        raise CheckpointError(f"{path} is not a Gmos checkpoint (no {GMOS_STATE_KEY!r}): {why}")
    state = obj[GMOS_STATE_KEY]
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{path}: {GMOS_STATE_KEY!r} is a {type(state).__name__}, not a state dict"
        )
    report = load_gmos_state_dict(model, state, source=str(path))
    report.ignored = [str(k) for k in obj if k != GMOS_STATE_KEY]
    return report


def save_gmos_checkpoint(
    model: nn.Module, path: str | Path, safetensors: bool = False
) -> list[Path]:
    """Write ``{"model_state_dict": state_dict}`` with ``torch.save`` (the official layout).

    Args:
        model: the module to save (tensors are moved to CPU and made contiguous).
        path: output ``.pth`` path; parent directories are created.
        safetensors: also write the same tensors to ``path`` with the suffix ``.safetensors``
            (for consumers that must not unpickle at all).
    Returns:
        The paths written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = OrderedDict(
        (k, v.detach().to("cpu").contiguous()) for k, v in model.state_dict().items()
    )
    if any(v.is_meta for v in state.values()):
        raise CheckpointError("cannot save a model whose tensors are on the meta device")
    torch.save({GMOS_STATE_KEY: state}, path)
    written = [path]
    if safetensors:
        st_path = path.with_suffix(".safetensors")
        if st_path == path:
            raise CheckpointError(f"{path} already has the .safetensors suffix; pick a .pth path")
        # safetensors refuses tensors that share storage; clone to be safe with tied weights.
        save_file({k: v.clone() for k, v in state.items()}, str(st_path))
        written.append(st_path)
    return written


def load_sam2_checkpoint_state(path: str | Path) -> dict[str, torch.Tensor]:
    """State dict of an official SAM2 checkpoint: ``torch.load(..., weights_only=True)["model"]``.

    Raises:
        CheckpointError: wrong file type, truncated file, or no ``"model"`` entry (e.g. a Gmos
            checkpoint).
    """
    obj = _torch_load(path)
    if not isinstance(obj, Mapping) or SAM2_STATE_KEY not in obj:
        if isinstance(obj, Mapping) and GMOS_STATE_KEY in obj:
            raise CheckpointError(
                f"{path} is a Gmos checkpoint ('model_state_dict'), not a SAM2 checkpoint"
            )
        got = list(obj.keys())[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{path} is not a SAM2 checkpoint: expected a dict with a 'model' entry, got {got}"
        )
    state = obj[SAM2_STATE_KEY]
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise CheckpointError(f"{path}: 'model' must map keys to tensors")
    return dict(state)
