"""Per-frame stores on disk for the offline second pass, so its memory is flat in video length.

Why: the offline pass (`offline_propagate`) needs every frame's proposals and online result
again after the clip ends. Kept in RAM they cost ~24 MB per frame at 854x480 (5.4-5.7 GB
peak for 200 frames, issue 19). These stores write each frame to its own `.npz` file in a
private temporary folder as it arrives (masks bit-packed, 1 bit per pixel, and
zlib-compressed like the id maps: they are mostly background) and read it back only when
the second pass asks for it; RAM holds only the per-frame scalars.

Files are written and read with `allow_pickle=False` (plain arrays only).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .types import FrameProposals, PropagationFrame, TrackedObject

__all__ = ["IdMapStore", "SpilledHistory", "SpilledProposals", "SpillFolder"]

_NO_MASK = np.zeros((0, 0), bool)


class SpillFolder:
    """A private temporary folder, removed on `close()` or when the owner is collected.

    Args:
        parent: where to create it (default: the system temporary folder, `$TMPDIR`).
        prefix: folder name prefix.
    """

    def __init__(self, parent: str | Path | None = None, prefix: str = "gmos-offline-") -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.path, True)

    def close(self) -> None:
        """Delete the folder and everything in it (idempotent)."""
        self._finalizer()


def _pack(masks: np.ndarray) -> np.ndarray:
    """(K, H, W) bool -> (K, ceil(H*W/8)) uint8 (K may be 0: a frame without proposals)."""
    k, h, w = masks.shape
    return np.packbits(masks.reshape(k, h * w), axis=1)


def _unpack(packed: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of `_pack`: (K, H, W) bool."""
    n = shape[0] * shape[1]
    return np.unpackbits(packed, axis=1, count=n).reshape(-1, *shape).astype(bool)


class SpilledProposals(Sequence[FrameProposals]):
    """`FrameProposals` of every frame, one file per frame (a list-like, append-only).

    Args:
        folder: folder for the files (created).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._shapes: list[tuple[int, int]] = []

    def append(self, props: FrameProposals) -> None:
        """Write one frame's proposals (K masks of (H, W), K motion and IoU values)."""
        np.savez_compressed(
            self.folder / f"{len(self._shapes):07d}.npz",
            masks=_pack(props.masks),
            motion_prob=props.motion_prob,
            iou_pred=props.iou_pred,
        )
        self._shapes.append(props.shape)

    def __len__(self) -> int:
        return len(self._shapes)

    def __getitem__(self, t: int) -> FrameProposals:  # type: ignore[override]
        if not -len(self) <= t < len(self):
            raise IndexError(t)
        t %= len(self)
        with np.load(self.folder / f"{t:07d}.npz", allow_pickle=False) as z:
            return FrameProposals(
                _unpack(z["masks"], self._shapes[t]), z["motion_prob"], z["iou_pred"]
            )

    def clear(self) -> None:
        """Forget (and delete) every frame."""
        for f in self.folder.glob("*.npz"):
            f.unlink()
        self._shapes.clear()


class SpilledHistory(Sequence[PropagationFrame]):
    """The online pass's `PropagationFrame`s, one file per frame for the masks.

    Object scalars (id, IoU, motion state, box, ...) stay in RAM (a few numbers per object
    per frame); masks and the two id maps go to disk.

    Args:
        folder: folder for the files (created).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._meta: list[tuple[int, int | None, list[TrackedObject], tuple[int, int]]] = []

    def append(self, frame: PropagationFrame) -> None:
        """Write one online frame (its object masks bit-packed, its id maps as uint16)."""
        shape = tuple(frame.full_instance_map.shape)
        masks = (
            np.stack([o.mask for o in frame.objects])
            if frame.objects
            else np.zeros((0, *shape), bool)
        )
        np.savez_compressed(
            self.folder / f"{len(self._meta):07d}.npz",
            masks=_pack(masks),
            instance_map=frame.instance_map,
            full_instance_map=frame.full_instance_map,
        )
        light = [dataclasses.replace(o, mask=_NO_MASK) for o in frame.objects]
        self._meta.append((frame.frame_idx, frame.stamp_ns, light, shape))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._meta)

    def light(self) -> Iterator[PropagationFrame]:
        """Every frame without masks or maps (objects' masks are (0, 0)): no disk reads."""
        for idx, stamp, objs, _ in self._meta:
            yield PropagationFrame(idx, stamp, objs)

    def __getitem__(self, t: int) -> PropagationFrame:  # type: ignore[override]
        if not -len(self) <= t < len(self):
            raise IndexError(t)
        t %= len(self)
        idx, stamp, objs, shape = self._meta[t]
        with np.load(self.folder / f"{t:07d}.npz", allow_pickle=False) as z:
            masks = _unpack(z["masks"], shape)
            inst, full = z["instance_map"], z["full_instance_map"]
        objects = [dataclasses.replace(o, mask=m) for o, m in zip(objs, masks)]
        return PropagationFrame(idx, stamp, objects, inst, full)

    def clear(self) -> None:
        """Forget (and delete) every frame."""
        for f in self.folder.glob("*.npz"):
            f.unlink()
        self._meta.clear()


class IdMapStore:
    """(H, W) uint16 id maps by frame index, in RAM (`folder=None`) or one file per frame.

    Args:
        num_frames: T.
        folder: folder for the files, or None to keep the maps in memory.
    """

    def __init__(self, num_frames: int, folder: Path | None = None) -> None:
        self.folder = None if folder is None else Path(folder)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self._mem: list[np.ndarray | None] = [None] * num_frames

    def __setitem__(self, t: int, id_map: np.ndarray) -> None:
        if self.folder is None:
            self._mem[t] = id_map
        else:
            np.savez_compressed(self.folder / f"{t:07d}.npz", id_map=id_map)

    def __getitem__(self, t: int) -> np.ndarray:
        if self.folder is None:
            m = self._mem[t]
            if m is None:
                raise KeyError(f"id map of frame {t} was never stored")
            return m
        with np.load(self.folder / f"{t:07d}.npz", allow_pickle=False) as z:
            return z["id_map"]
