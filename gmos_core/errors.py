"""Error types shared across gmos_core that callers tell apart by a machine-readable `kind`.

A caller that counts or reports failures (the node's diagnostics, a CLI's exit message)
branches on ``err.kind``, never on the wording of the message. `gmos_ros.conversions.
ConversionError` follows the same pattern for input messages.
"""

from __future__ import annotations

__all__ = ["GmosError", "ModelSetupError"]


class GmosError(Exception):
    """Base of the project's errors that carry a `kind`.

    Attributes:
        kind: short machine-readable category (a diagnostics key, e.g. "duplicate_stamp").
    """

    default_kind = "error"

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind: str = kind if kind is not None else self.default_kind


class ModelSetupError(GmosError, RuntimeError):
    """Settings that cannot be turned into a model: missing weights, an unknown variant, a
    device, precision or backend this install cannot run (the message names which).

    Formerly ``gmos_core.streaming.build.RuntimeError_``.
    """

    default_kind = "model_setup"
