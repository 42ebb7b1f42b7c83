"""Drawing masks on frames: overlays, contact sheets and their colours, all from arrays.

Every picture the project draws comes from here: the node's ``~/overlay`` topic, `gmos-infer`'s
overlay video, the ROS demo's and the evaluation demo's contact sheets, and the synthetic-scene
benchmark's sheet. Inputs are numpy arrays (frames (H, W, 3) uint8 RGB, label / id maps (H, W)
integer), never encoded messages, so a caller draws before it encodes anything. Outputs are
(H, W, 3) uint8 RGB; :func:`write_rgb` saves one with OpenCV (which wants BGR).

Colours: object ids take the DAVIS / PASCAL VOC palette (``gmos_core.data.palette``), the
colours the indexed PNG outputs show, so an overlay and the PNG of the same frame agree. The
synthetic benchmark colours objects by motion class instead (:data:`MOVING`, :data:`RESTING`,
:data:`STATIC`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from gmos_core.data.palette import davis_palette

if TYPE_CHECKING:  # annotations only: the node draws without loading the scene generator
    from gmos_core.data.synthetic import SceneSample

__all__ = [
    "MOVING",
    "PALETTE",
    "RESTING",
    "STATIC",
    "id_colour",
    "labelled_rows_sheet",
    "motion_strip",
    "overlay_instances",
    "overlay_labels",
    "overlay_motion_classes",
    "prediction_sheet",
    "scene_sheet",
    "write_rgb",
]

PALETTE: np.ndarray = davis_palette()
"""(256, 3) uint8 RGB: the DAVIS palette; index = label id."""

MOVING = np.array([255, 40, 40], np.float32)
"""RGB of a dynamic object that moves at this frame (synthetic benchmark sheet)."""
RESTING = np.array([255, 220, 0], np.float32)
"""RGB of a dynamic object at rest at this frame."""
STATIC = np.array([0, 220, 255], np.float32)
"""RGB of a static object."""


def id_colour(obj_id: int) -> np.ndarray:
    """(3,) uint8 RGB of a tracked object id (any positive int; ids past 254 wrap around)."""
    return PALETTE[1 + (int(obj_id) - 1) % 254]


def _outline(img: np.ndarray, mask: np.ndarray, colour: np.ndarray, approx: int) -> None:
    """Draw the outer contour of `mask` on `img` in place (1 px)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, approx)
    cv2.drawContours(img, contours, -1, tuple(int(c) for c in colour), 1)


def overlay_labels(frame: np.ndarray, labels: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend every labelled pixel with its palette colour and outline each label.

    Args:
        frame: (H, W, 3) uint8 RGB.
        labels: (H, W) uint8 label map, 0 = background.
        alpha: weight of the label colour in [0, 1].

    Returns:
        (H, W, 3) uint8 RGB.
    """
    img = frame.astype(np.float32)
    fg = labels > 0
    img[fg] = (1 - alpha) * img[fg] + alpha * PALETTE[labels[fg]].astype(np.float32)
    img = img.astype(np.uint8)
    for k in np.unique(labels):
        if k == 0:
            continue
        _outline(img, labels == k, PALETTE[k], cv2.CHAIN_APPROX_NONE)
    return img


def overlay_instances(frame: np.ndarray, ids: np.ndarray, moving_ids: set[int]) -> np.ndarray:
    """The node's overlay: moving objects filled in their colour, every object outlined.

    Args:
        frame: (H, W, 3) uint8 RGB.
        ids: (H, W) integer instance-id map (the published ``~/instance_mask``), 0 = none.
        moving_ids: ids drawn filled (the objects that move at this frame).

    Returns:
        (H, W, 3) uint8 RGB (a new array).
    """
    img = frame.copy()
    for k in np.unique(ids):
        if k == 0:
            continue
        mask = ids == k
        colour = id_colour(int(k))
        if int(k) in moving_ids:
            img[mask] = (0.45 * img[mask] + 0.55 * colour).astype(np.uint8)
        _outline(img, mask, colour, cv2.CHAIN_APPROX_SIMPLE)
    return img


def overlay_motion_classes(sample: SceneSample, t: int, alpha: float = 0.45) -> np.ndarray:
    """Frame t of a synthetic scene, objects tinted by motion class and outlined.

    Args:
        sample: the scene.
        t: frame index.
        alpha: tint opacity in [0, 1].

    Returns:
        (H, W, 3) uint8 RGB.
    """
    img = sample.frames[t].astype(np.float32)
    ids = sample.instance_masks[t]
    for k in range(sample.num_objects):
        m = ids == k + 1
        if not m.any():
            continue
        if sample.object_is_dynamic[k]:
            colour = MOVING if sample.motion_state[t, k] else RESTING
        else:
            colour = STATIC
        img[m] = (1 - alpha) * img[m] + alpha * colour
        # Outline: mask minus its erosion, so touching objects stay distinguishable.
        mu8 = m.astype(np.uint8)
        edge = (mu8 - cv2.erode(mu8, np.ones((3, 3), np.uint8))).astype(bool)
        img[edge] = colour
    return np.clip(img, 0, 255).astype(np.uint8)


def motion_strip(sample: SceneSample, width: int, row_h: int = 6) -> np.ndarray:
    """(K * row_h, width, 3) uint8 image of the motion-state matrix, time along x."""
    k_obj, t_len = sample.num_objects, sample.num_frames
    if k_obj == 0:
        return np.full((row_h, width, 3), 40, np.uint8)
    mat = np.where(sample.motion_state.T[..., None], 255, 60).astype(np.uint8)  # (K, T, 1)
    mat = np.repeat(mat, 3, axis=2)
    mat[~sample.object_is_dynamic, :, :] = (30, 60, 80)  # static rows: dark cyan
    strip = cv2.resize(mat, (width, k_obj * row_h), interpolation=cv2.INTER_NEAREST)
    strip[:, : max(2, width // t_len // 3)][np.repeat(sample.object_is_dynamic, row_h)] = (
        MOVING.astype(np.uint8)
    )
    strip[::row_h] = 0  # thin separators between objects
    return strip


def scene_sheet(samples: list[SceneSample], num_cols: int = 6, scale: int = 2) -> np.ndarray:
    """Synthetic scenes: per scene a title, evenly spaced motion-class overlays, a motion strip.

    Returns:
        (H_sheet, W_sheet, 3) uint8 RGB.
    """
    rows = []
    for s in samples:
        idx = np.linspace(0, s.num_frames - 1, num_cols).round().astype(int)
        tiles = []
        for t in idx:
            tile = overlay_motion_classes(s, int(t))
            tile = cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
            cv2.putText(tile, f"t={t}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255))
            tiles.append(np.pad(tile, ((2, 2), (2, 2), (0, 0))))
        row = np.concatenate(tiles, axis=1)
        title = np.zeros((16, row.shape[1], 3), np.uint8)
        n_dyn = int(s.object_is_dynamic.sum())
        text = (
            f"seed {s.config.seed}  kind={s.scene_kind}  objects={s.num_objects} "
            f"dynamic={n_dyn}  (red moving / yellow resting / cyan static)"
        )
        cv2.putText(title, text, (4, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255))
        rows += [
            title,
            row,
            motion_strip(s, row.shape[1]),
            np.zeros((6, row.shape[1], 3), np.uint8),
        ]
    return np.concatenate(rows, axis=0)


def labelled_rows_sheet(
    rows: Sequence[Sequence[np.ndarray]],
    row_labels: Sequence[str],
    col_titles: Sequence[str],
    scale: int = 2,
) -> np.ndarray:
    """A grid of equally sized (H, W, 3) uint8 tiles with a title bar and a label per row.

    Args:
        rows: rows of tiles; every tile the same shape.
        row_labels: one label per row, written at the row's top-left.
        col_titles: one title per column, written in a 24-px header.
        scale: nearest-neighbour magnification of the tiles.

    Returns:
        (24 + R * scale * H, C * scale * W, 3) uint8 RGB.
    """
    drawn = []
    for tiles, label in zip(rows, row_labels):
        row = np.concatenate(list(tiles), axis=1)
        row = cv2.resize(row, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        cv2.putText(row, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        drawn.append(row)
    header = np.zeros((24, drawn[0].shape[1], 3), np.uint8)
    w = drawn[0].shape[1] // len(col_titles)
    for i, title in enumerate(col_titles):
        cv2.putText(header, title, (i * w + 4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255,) * 3, 1)
    return np.concatenate([header, *drawn], axis=0)


def prediction_sheet(
    samples: list[SceneSample],
    preds: list[np.ndarray],
    names: list[str],
    path: Path,
    label: str = "baseline",
    times: Sequence[int] = (3, 9, 15, 21),
) -> None:
    """Scenes against predictions, written as a PNG with matplotlib.

    Rows = scenes; per time in `times` two columns: the frame with the ground truth of the
    objects moving at that frame, and the frame with the prediction (both via
    :func:`overlay_labels`).

    Args:
        samples: the scenes.
        preds: per scene (T, H, W) uint8 predicted label maps.
        names: per scene its name (row label).
        path: output PNG.
        label: the prediction columns' title.
        times: frame indices shown (clamped to each scene's length).
    """
    # matplotlib is heavy and only this function needs it; the node never draws with it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(samples), 2 * len(times), figsize=(2 * len(times) * 1.6, 1.8 * len(samples))
    )
    axes = np.atleast_2d(axes)
    for r, (s, p, name) in enumerate(zip(samples, preds, names)):
        mos = s.mos_i_labels()
        for c, t in enumerate(times):
            t = min(t, s.num_frames - 1)
            lab = mos.labels[t]
            gt = np.zeros_like(lab)
            for k, ivs in mos.intervals.items():
                if any(a <= t <= b for a, b in ivs):
                    gt[lab == k] = k
            for j, (lab, title) in enumerate(((gt, "GT moving now"), (p[t], label))):
                ax = axes[r, 2 * c + j]
                ax.imshow(overlay_labels(s.frames[t], lab.astype(np.uint8)))
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"t={t} {title}", fontsize=7)
        axes[r, 0].set_ylabel(f"{name}\n{s.scene_kind}", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_rgb(path: Path, image: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 RGB image (PNG/JPEG by suffix); creates the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path
