"""Benchmark the synthetic parallax-scene generator on one core, and draw a contact sheet.

Prints one JSON object (frames/s, frame size, per-stage times) and writes
`<out>/contact_sheet.png` (a few scenes, masks overlaid, motion states) and `<out>/bench.json`.

    .venv/bin/python -m training.bench_synthetic --num-scenes 40 --out out/bench_synthetic

Overlay colours: red = dynamic object moving at this frame, yellow = dynamic object at rest at
this frame, cyan = static object; the strip under each scene row is the (K x T) motion-state
matrix (white = moving) with one row per object, dynamic objects marked by a red tick.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from gmos_core.data.synthetic import SceneConfig, SceneSample, StageTimes, generate_scene

_MOVING = np.array([255, 40, 40], np.float32)
_RESTING = np.array([255, 220, 0], np.float32)
_STATIC = np.array([0, 220, 255], np.float32)


def overlay_frame(sample: SceneSample, t: int, alpha: float = 0.45) -> np.ndarray:
    """Frame t with instance masks tinted by motion class and outlined.

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
            colour = _MOVING if sample.motion_state[t, k] else _RESTING
        else:
            colour = _STATIC
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
        _MOVING.astype(np.uint8)
    )
    strip[::row_h] = 0  # thin separators between objects
    return strip


def contact_sheet(samples: list[SceneSample], num_cols: int = 6, scale: int = 2) -> np.ndarray:
    """Rows of evenly spaced overlaid frames, one row + motion strip per scene.

    Returns:
        (H_sheet, W_sheet, 3) uint8 RGB.
    """
    rows = []
    for s in samples:
        idx = np.linspace(0, s.num_frames - 1, num_cols).round().astype(int)
        tiles = []
        for t in idx:
            tile = overlay_frame(s, int(t))
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


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark.

    Args:
        argv: command-line arguments (default sys.argv[1:]).

    Returns:
        Process exit code.
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-scenes", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("W", "H"))
    p.add_argument("--num-frames", type=int, default=24)
    p.add_argument("--out", type=Path, default=Path("out/bench_synthetic"))
    p.add_argument("--sheet-scenes", type=int, default=5, help="scenes in the contact sheet")
    args = p.parse_args(argv)

    # One core, as the requirement is stated per core.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    base = SceneConfig(width=args.size[0], height=args.size[1], num_frames=args.num_frames)
    generate_scene(base.with_seed(10**6))  # warm-up: first-call costs (imports, allocations)

    times = StageTimes()
    kinds: dict[str, int] = {}
    n_frames = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for i in tqdm(range(args.num_scenes), desc="bench", file=sys.stderr):
        s = generate_scene(base.with_seed(args.seed + i), times)
        n_frames += s.num_frames
        kinds[s.scene_kind] = kinds.get(s.scene_kind, 0) + 1
    wall = time.perf_counter() - t0
    # CPU time of this process: robust to other jobs sharing the cores (wall time is not).
    cpu = time.process_time() - c0

    result = {
        "frames_per_s": n_frames / wall,
        "frames_per_cpu_s": n_frames / cpu,
        "scenes_per_s": args.num_scenes / wall,
        "frame_size": [args.size[1], args.size[0]],
        "num_frames_per_scene": args.num_frames,
        "num_scenes": args.num_scenes,
        "total_frames": n_frames,
        "wall_s": wall,
        "cpu_s": cpu,
        "stage_s": dataclasses.asdict(times),
        "stage_ms_per_frame": {k: 1e3 * v / n_frames for k, v in dataclasses.asdict(times).items()},
        "scene_kinds": kinds,
        "threads": {"torch": torch.get_num_threads(), "cv2": cv2.getNumThreads()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(result, indent=2))

    # Contact sheet: a forced static and a forced hard-parallax scene plus random ones.
    sheet_cfgs = [
        dataclasses.replace(base, seed=args.seed, scene_kind="dynamic"),
        dataclasses.replace(base, seed=args.seed + 1, scene_kind="static"),
        dataclasses.replace(base, seed=args.seed + 2, scene_kind="hard_parallax"),
    ] + [base.with_seed(args.seed + 3 + i) for i in range(max(0, args.sheet_scenes - 3))]
    sheet = contact_sheet([generate_scene(c) for c in sheet_cfgs[: args.sheet_scenes]])
    sheet_path = args.out / "contact_sheet.png"
    cv2.imwrite(str(sheet_path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    result["contact_sheet"] = str(sheet_path)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
