"""Model variant names: the canonical set, and the one place legacy spellings are mapped.

Canonical names (``RuntimeSettings.variant``, the node's ``variant`` parameter, bundle
selection in ``gmos_core.streaming.build.DEFAULT_BUNDLES``):

- ``gmos_s``: Gmos-S, one foreground mask per frame (paper §3.4);
- ``gmos_online``: Gmos, proposer + online propagation (the offline second pass is optional);
- ``ego_residual``, ``frame_diff``: weight-free baselines (``gmos_core.baseline_model``).

A network variant has a *head*, the name the network itself reports (``GmosTorchModel.mode``,
a bundle's ``variant`` field, ``build_frame_model``): ``gmos_s`` or ``gmos`` (the proposer).
:func:`head_of` and :func:`variant_of_head` convert between the two.

Legacy spellings are accepted only at command-line / parameter boundaries, through
:func:`parse_variant`: ``gmos-s`` (`gmos-infer --model gmos-s`) and ``gmos`` for the online
Gmos variant.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "BASELINE_VARIANTS",
    "NETWORK_VARIANTS",
    "Head",
    "head_of",
    "parse_variant",
    "variant_of_head",
]

Head = Literal["gmos_s", "gmos"]

NETWORK_VARIANTS: tuple[str, ...] = ("gmos_s", "gmos_online")
BASELINE_VARIANTS: tuple[str, ...] = ("ego_residual", "frame_diff")

# Legacy spelling -> canonical variant (CLI / parameter input only).
_LEGACY = {"gmos-s": "gmos_s", "gmos": "gmos_online"}


def parse_variant(name: str) -> str:
    """The canonical variant of a user-given name (canonical or legacy spelling).

    Raises:
        ValueError: an unknown name (the message lists the accepted ones).
    """
    if name in NETWORK_VARIANTS or name in BASELINE_VARIANTS:
        return name
    if name in _LEGACY:
        return _LEGACY[name]
    known = [*NETWORK_VARIANTS, *BASELINE_VARIANTS, *_LEGACY]
    raise ValueError(f"unknown model variant {name!r} (known: {', '.join(known)})")


def head_of(variant: str) -> Head:
    """The network head of a network variant: ``gmos_s`` -> ``gmos_s``, ``gmos_online`` ->
    ``gmos``."""
    if variant not in NETWORK_VARIANTS:
        raise ValueError(f"variant {variant!r} has no network head (one of {NETWORK_VARIANTS})")
    return "gmos_s" if variant == "gmos_s" else "gmos"


def variant_of_head(head: str) -> str:
    """The runtime variant that runs a network head: ``gmos_s`` -> ``gmos_s``, ``gmos`` ->
    ``gmos_online``."""
    if head not in ("gmos_s", "gmos"):
        raise ValueError(f"unknown network head {head!r} (gmos_s or gmos)")
    return "gmos_s" if head == "gmos_s" else "gmos_online"
