"""Deterministic synthetic weights: the ``crc32-normal-v1`` scheme of ``shared/fixtures/PARITY.md`` §2.

The parity fixtures were produced by the official code with every floating-point state-dict entry
replaced by a value that depends only on its key and shape. Rebuilding the same values here lets a
reimplementation be compared with the fixtures without any official weights.

Rule for a key ``k`` of shape ``s`` (all arithmetic in float64, cast to float32 at the end):

- ``v = default_rng(crc32(k)).standard_normal(s)``;
- ``len(s) >= 2`` and ``k`` ends with ``"weight"``: ``v / sqrt(prod(s[1:]))`` (literally ``s[1:]``,
  also for ConvTranspose weights, where that is not PyTorch's fan-in);
- ``len(s) >= 2`` otherwise (learned tokens, position embeddings): ``v`` (unit normal);
- ``len(s) <= 1`` and ``k`` ends with ``"weight"`` or ``"gamma"``: ``1 + 0.1 v``;
- every other ``len(s) <= 1`` tensor (biases, 0-d scalars): ``0.02 v``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["PI3_KEPT_OFFICIAL", "fill_module_", "fill_rule", "fill_value", "keep_pi3_buffers"]

# Pi3's ImageNet normalisation buffers are *not* filled by the fixtures; they keep the official values.
PI3_KEPT_OFFICIAL: tuple[str, ...] = ("image_mean", "image_std")


def fill_rule(key: str, shape: Sequence[int]) -> str:
    """Name of the scaling rule that applies to ``key`` (``fan_in``, ``unit``, ``one_plus``, ``small``).

    The names are those used in the manifests' ``rule`` fields.
    """
    if len(shape) >= 2:
        return "fan_in" if key.endswith("weight") else "unit"
    if key.endswith("weight") or key.endswith("gamma"):
        return "one_plus"
    return "small"


def fill_value(key: str, shape: Sequence[int]) -> np.ndarray:
    """Synthetic value of the state-dict entry ``key`` with shape ``shape``.

    Args:
        key: full state-dict key, e.g. ``"encoder.blocks.0.attn.qkv.weight"``.
        shape: tensor shape; ``()`` gives a 0-d array.

    Returns:
        float32 array of exactly ``shape``.
    """
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise ValueError(f"fill_value: negative dimension in shape {shape} for key {key!r}")
    # zlib.crc32 returns the unsigned 32-bit value, which default_rng accepts as a seed directly.
    rng = np.random.default_rng(zlib.crc32(key.encode("utf-8")))
    v = np.asarray(rng.standard_normal(shape, dtype=np.float64))
    rule = fill_rule(key, shape)
    if rule == "fan_in":
        v = v / math.sqrt(int(np.prod(shape[1:])))
    elif rule == "one_plus":
        v = 1.0 + 0.1 * v
    elif rule == "small":
        v = 0.02 * v
    # np.asarray: numpy arithmetic on a 0-d array returns a scalar, which would lose the shape.
    return np.asarray(v, dtype=np.float32).reshape(shape)


def keep_pi3_buffers(key: str) -> bool:
    """Skip predicate for :func:`fill_module_` that keeps Pi3's ``image_mean`` / ``image_std``.

    Matches the bare keys and the same keys under any prefix (``"pi3.image_mean"``).
    """
    return key.rsplit(".", 1)[-1] in PI3_KEPT_OFFICIAL


@torch.no_grad()
def fill_module_(module: nn.Module, skip: Callable[[str], bool] | None = None) -> None:
    """Fill every floating-point state-dict entry of ``module`` in place with :func:`fill_value`.

    Args:
        module: any module; parameters and persistent buffers are filled (the state dict is what the
            fixtures were filled from). Non-persistent buffers are not in the state dict and are left
            alone. Integer / bool entries are left alone.
        skip: optional predicate on the state-dict key; keys for which it returns True keep their
            current value (e.g. :func:`keep_pi3_buffers`).

    Raises:
        ValueError: if a tensor to be filled lives on the ``meta`` device (it has no storage).
    """
    # keep_vars=True gives the Parameter / buffer objects themselves, so copy_ writes into the module.
    for key, tensor in module.state_dict(keep_vars=True).items():
        if not torch.is_floating_point(tensor):
            continue
        if skip is not None and skip(key):
            continue
        if tensor.device.type == "meta":
            raise ValueError(
                f"fill_module_: {key!r} is on the meta device (no storage to fill); "
                "materialise the module first, e.g. module.to_empty(device='cpu')"
            )
        value = torch.from_numpy(fill_value(key, tuple(tensor.shape)))
        # copy_ casts float32 to the tensor's own dtype (bf16/fp16 models) and device.
        tensor.copy_(value)
