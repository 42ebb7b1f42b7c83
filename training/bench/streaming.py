"""Streaming measurements: the per-frame feature cache speed-up and end-to-end frames per second."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from gmos_core.backends import BackendFrameModel
from gmos_core.backends.base import Backend
from gmos_core.streaming import StreamingSegmenter
from training.bench.stages import (
    ConfigModels,
)
from training.bench.standins import (
    ImageMsg,
    build_messages,
    image_msg_to_rgb,
    live_tracking,
    make_image_msg,
)


def streaming_cache_speedup(
    backend: Backend, m: ConfigModels, frames: list[np.ndarray], device: str, windows: int
) -> dict[str, Any]:
    """π³ time per output frame with the per-frame cache vs recomputing each window's frames.

    Both loops slide a 5-frame window over the same frames; the cached loop encodes each new
    frame once, the uncached one encodes all 5 frames of every window (the offline pipeline).
    """
    fm = BackendFrameModel(backend, "gmos", m.cfg.pi3.pixel_limit, m.cfg.top_k)
    n = m.shapes.num_frames
    imgs = [fm.pi3_input(f) for f in frames[: windows + n - 1]]

    def enc(img: np.ndarray) -> np.ndarray:
        return backend.run("pi3_encoder", {"images": img})["tokens"][0]

    def dec(toks: list[np.ndarray]) -> None:
        backend.run("pi3_decoder", {"tokens": np.stack(toks)[None]})

    enc(imgs[0])  # warm-up
    dec([enc(imgs[0])] * n)
    t_enc = t_dec = 0.0
    t0 = time.perf_counter()
    cache = [enc(i) for i in imgs[: n - 1]]  # stream start: not counted per window below
    t_start = time.perf_counter() - t0
    cached_enc_calls = 0
    for w in range(windows):
        t0 = time.perf_counter()
        cache.append(enc(imgs[w + n - 1]))
        cached_enc_calls += 1
        t1 = time.perf_counter()
        dec(cache[-n:])
        t2 = time.perf_counter()
        t_enc += t1 - t0
        t_dec += t2 - t1
    u_enc = u_dec = 0.0
    uncached_enc_calls = 0
    for w in range(windows):
        t0 = time.perf_counter()
        toks = [enc(imgs[w + k]) for k in range(n)]
        uncached_enc_calls += n
        t1 = time.perf_counter()
        dec(toks)
        t2 = time.perf_counter()
        u_enc += t1 - t0
        u_dec += t2 - t1
    per = 1e3 / windows
    return {
        "windows": windows,
        "encoder_calls_per_frame": {
            "cached": cached_enc_calls / windows,
            "uncached": uncached_enc_calls / windows,
        },
        "pi3_encoder_ms_per_frame": {
            "cached": round(t_enc * per, 2),
            "uncached": round(u_enc * per, 2),
        },
        "pi3_decoder_ms_per_frame": {
            "cached": round(t_dec * per, 2),
            "uncached": round(u_dec * per, 2),
        },
        "encoder_speedup": round(u_enc / t_enc, 2),
        "pi3_total_speedup": round((u_enc + u_dec) / (t_enc + t_dec), 2),
        "stream_start_ms": round(t_start * 1e3, 2),
    }


def end_to_end_fps(
    model: Any,
    variant: str,
    frames: list[np.ndarray],
    fps_in: float,
    span_s: float,
    stride: int = 1,
) -> dict[str, Any]:
    """Frames per second through `StreamingSegmenter`, ROS conversion and message building
    included; one short warm-up stream first."""
    msgs = [make_image_msg(f) for f in frames]
    step_ns = int(1e9 / fps_in)

    def run(ms: list[ImageMsg]) -> tuple[int, float]:
        tracking = None
        if variant == "gmos":
            tracking = live_tracking()
        seg = StreamingSegmenter(model, variant, tracking, span_s=span_s, proposer_stride=stride)  # type: ignore[arg-type]
        n_out = 0
        t0 = time.perf_counter()
        for i, msg in enumerate(ms):
            for r in seg.step(image_msg_to_rgb(msg), i * step_ns):
                build_messages(r)
                n_out += 1
        for r in seg.flush():
            build_messages(r)
            n_out += 1
        return n_out, time.perf_counter() - t0

    run(msgs[:6])
    n_out, wall = run(msgs)
    return {
        "frames": len(msgs),
        "results": n_out,
        "wall_s": round(wall, 3),
        "fps": round(len(msgs) / wall, 2),
    }
