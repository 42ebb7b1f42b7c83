"""Per-frame cost of the π³ heads in the streaming runtime (micro configuration), JSON out.

    python -m training.bench_window_geometry [--frames 30] [--repeats 5] [--threads 1]

Streams one rendered 128×128 scene through `StreamingSegmenter` (micro Gmos online, random
weights: the cost does not depend on the values) in three configurations:

- ``no_heads``: the mask-only π³ (every shipped bundle), the path whose cost must not change;
- ``heads_off``: π³ with heads, results without geometry (a camera with a depth topic);
- ``heads_on``: π³ with heads run on the window decoder pass (`predict_with_geometry`), plus the
  node's up-to-scale state update (`Pi3ObjectStates.update`, timed on its own).

The heads have the micro sizes of stage 1 (width 64, 1 block, 4 attention heads, camera 64).
Configurations alternate within each repeat so that load changes on a shared machine hit all of
them; the per-frame time is the median over repeats of (stream time / frames). ``--only
no_heads`` runs the first configuration alone (it runs on code without the heads path too).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any

import numpy as np
import torch

from gmos_core.data.synthetic import SceneConfig, generate_scene
from gmos_core.models.build import build_frame_model
from gmos_core.streaming.build import RuntimeSettings, build_segmenter


def _models(only: str | None) -> dict[str, Any]:
    out = {"no_heads": build_frame_model("micro", "gmos").frame_model()}
    if only == "no_heads":
        return out
    # The heads' modules are imported only past --only no_heads, so that configuration also
    # runs on a checkout from before the heads existed (the baseline of the comparison).
    from gmos_core.models.pi3_heads import Pi3HeadSizes

    m = build_frame_model("micro", "gmos", pi3_heads=Pi3HeadSizes(64, 1, 4, 64))
    m.pi3.heads_loaded = True  # random heads stand in for trained ones (same cost)
    fm = m.frame_model()
    out["heads_off"] = fm
    out["heads_on"] = fm
    return out


def _stream(name: str, model: Any, scene: Any) -> tuple[float, float, int]:
    """(stream seconds, state-update seconds, results with geometry)."""
    seg = build_segmenter(RuntimeSettings(variant="gmos_online"), model=model)
    if name == "heads_off":
        seg.window_geometry = False
    states = None
    if name == "heads_on":
        from gmos_core.geometry.window_states import Pi3ObjectStates  # see _models

        states = Pi3ObjectStates()
    t_states = 0.0
    with_geometry = 0
    t0 = time.perf_counter()
    results = []
    for t in range(scene.num_frames):
        results = seg.step(scene.frames[t], int(scene.stamps_ns[t]))
        if t == scene.num_frames - 1:
            results += seg.flush()
        for r in results:
            g = getattr(r, "geometry", None)
            if g is None:
                continue
            with_geometry += 1
            if states is not None:
                t1 = time.perf_counter()
                states.update(r.stamp_ns, g, r.instance_ids, [o.obj_id for o in r.objects])
                t_states += time.perf_counter() - t1
    total = time.perf_counter() - t0
    return total, t_states, with_geometry


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=["no_heads"], default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    scene = generate_scene(SceneConfig(seed=7, num_frames=a.frames, scene_kind="dynamic"))
    models = _models(a.only)
    for name, m in models.items():  # warm-up (allocators, first-call paths)
        _stream(name, m, scene)
    per_frame: dict[str, list[float]] = {k: [] for k in models}
    states_ms: list[float] = []
    geometry_results: dict[str, int] = {}
    for _ in range(a.repeats):
        for name, m in models.items():
            total, t_states, n_geom = _stream(name, m, scene)
            # The node's per-result state update is part of the heads path's cost.
            per_frame[name].append(total / a.frames * 1e3)
            geometry_results[name] = n_geom
            if name == "heads_on":
                states_ms.append(t_states / max(n_geom, 1) * 1e3)
    out: dict[str, Any] = {
        "config": "micro",
        "variant": "gmos_online",
        "frames": a.frames,
        "frame_hw": list(scene.frames.shape[1:3]),
        "repeats": a.repeats,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "ms_per_frame_median": {k: round(float(np.median(v)), 2) for k, v in per_frame.items()},
        # The least-contended repeat (a shared machine only ever adds time).
        "ms_per_frame_min": {k: round(float(np.min(v)), 2) for k, v in per_frame.items()},
        "ms_per_frame_all": {k: [round(x, 2) for x in v] for k, v in per_frame.items()},
        "results_with_geometry": geometry_results,
    }
    if states_ms:
        out["heads_on_state_update_ms_per_result_median"] = round(float(np.median(states_ms)), 3)
        med = out["ms_per_frame_median"]
        out["heads_on_over_no_heads"] = round(med["heads_on"] / med["no_heads"], 3)
        out["heads_off_over_no_heads"] = round(med["heads_off"] / med["no_heads"], 3)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
