"""``gmos-bench``: where every millisecond of a Gmos frame goes, per stage, per backend.

For each configuration (micro; the paper architecture at 672x378 π³ / 1024² SAM2 behind
``--paper``, random weights: fine for timing) and each available backend (torch, onnxruntime):

* per-stage latency, median and p95 over ``--repeats`` runs after ``--warmup``: image
  conversion (numpy stand-in for the ROS conversion: bytes -> (H, W, 3) uint8 honouring
  ``step``), pre-processing, π³ per-frame encoder, π³ window decoder, SAM2 encoder, head,
  post-processing, propagator (scripted proposals) and message building (numpy stand-in: id and
  dynamic masks + object list from a result); composed into a per-frame budget for Gmos-S and
  Gmos online;
* work per stage (FLOPs, `torch.utils.flop_counter.FlopCounterMode`, CPU flash-attention
  included) and the achieved fraction of the machine's matmul peak (a large fp32 matmul timed in
  the same run);
* the streaming speed-up, measured: cached per-frame π³ features versus re-encoding every
  window's 5 frames (what an implementation without the cache pays);
* frames per second end to end through `StreamingSegmenter` (conversion and message building
  included), peak RSS;
* behind ``--stride-curve``: the proposer-stride speed / accuracy curve (k = 1, 2, 3, 5) of the
  trained micro model on held-out synthetic scenes (MOS-I mtIoU, J_mov, FP).

Prints the JSON summary and writes ``<out>/bench.json`` and ``<out>/breakdown.png``.

    gmos-bench                                  # micro, torch + onnxruntime, CPU
    gmos-bench --paper --paper-repeats 1        # + the paper architecture (minutes on a CPU)
    gmos-bench --device cuda --paper            # on a GPU (torch CUDA + onnxruntime CUDA EP)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from gmos_core.backends import BackendFrameModel, ModelShapes, available_backends, make_backend
from gmos_core.backends.base import Backend
from gmos_core.backends.torch_backend import TorchBackend
from gmos_core.compute import DeviceUnavailableError, add_threads_argument, check_device
from gmos_core.pipeline import GmosModelConfig, GmosTorchModel, build_frame_model
from gmos_core.streaming import FrameResult, StreamingSegmenter, objects_from_ids

STRIDES = (1, 2, 3, 5)
MICRO_BUNDLE = (
    Path(__file__).resolve().parents[1] / "gmos_core" / "assets" / "micro_gmos.safetensors"
)
MODEL_STAGES = ("pi3_encoder", "pi3_decoder", "sam2_encoder", "head")
FRAME_STAGES = (
    "image_conversion",
    "preprocess",
    "pi3_encoder",
    "pi3_decoder",
    "sam2_encoder",
    "head",
    "postprocess",
    "propagator",
    "message_building",
)


# ------------------------------------------------------------------------------ stand-ins


@dataclass(frozen=True)
class ImageMsg:
    """The fields of a sensor_msgs/Image the conversion needs (numpy stand-in for ROS)."""

    height: int
    width: int
    step: int
    encoding: str
    data: bytes


def make_image_msg(frame: np.ndarray, row_padding: int = 64) -> ImageMsg:
    """(H, W, 3) uint8 -> an rgb8 message whose rows carry `row_padding` extra bytes."""
    h, w, _ = frame.shape
    step = w * 3 + row_padding
    buf = np.zeros((h, step), np.uint8)
    buf[:, : w * 3] = frame.reshape(h, w * 3)
    return ImageMsg(h, w, step, "rgb8", buf.tobytes())


def image_msg_to_rgb(msg: ImageMsg) -> np.ndarray:
    """Message -> (H, W, 3) uint8 RGB, honouring `step` (rows may be padded) and bgr8."""
    rows = np.frombuffer(msg.data, np.uint8, count=msg.height * msg.step).reshape(
        msg.height, msg.step
    )
    img = rows[:, : msg.width * 3].reshape(msg.height, msg.width, 3)
    if msg.encoding == "bgr8":
        img = img[..., ::-1]
    return np.ascontiguousarray(img)


def build_messages(result: FrameResult) -> dict[str, Any]:
    """Stand-in for the node's publishers: id mask, dynamic mask and object list as bytes."""
    return {
        "ids": result.instance_ids.astype(np.uint16, copy=False).tobytes(),
        "dynamic": (result.dynamic_mask.astype(np.uint8) * 255).tobytes(),
        "objects": [
            (o.obj_id, o.moving, o.motion_prob, o.iou, o.bbox, o.area) for o in result.objects
        ],
        "stamp_ns": result.stamp_ns,
    }


def synthetic_frames(n: int, hw: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """A textured block moving across a textured background (deterministic)."""
    rng = np.random.default_rng(seed)
    h, w = hw
    bg = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    out = []
    for t in range(n):
        f = bg.copy()
        y0, x0 = h // 3, (w // 8 + t * max(1, w // 40)) % (w - w // 4)
        f[y0 : y0 + h // 4, x0 : x0 + w // 4] = (230, 60, 40)
        out.append(f)
    return out


def live_tracking() -> Any:
    """The runtime's live-stream propagator (`MaskIoUTracker`, paper thresholds)."""
    from gmos_core.runtime import PropagatorTracking, RuntimeSettings

    return PropagatorTracking(RuntimeSettings(variant="gmos_online"))


def scripted_proposals(step: int, hw: tuple[int, int], k: int) -> Any:
    """K square proposals drifting 1 px per step; the first half moving (motion 0.9), the
    rest static (0.1): a propagator step with matches, prompts and motion labels to do."""
    from gmos_core.streaming import ProposalPrediction

    h, w = hw
    side = max(4, min(h, w) // 6)
    masks = np.zeros((k, h, w), bool)
    for i in range(k):
        y = (i * side) % max(1, h - side)
        x = min(i * 2 * side % max(1, w - side) + step, w - side)
        masks[i, y : y + side, x : x + side] = True
    motion = np.where(np.arange(k) < k // 2, 0.9, 0.1).astype(np.float32)
    return ProposalPrediction(masks=masks, motion_prob=motion, iou=np.full(k, 0.9, np.float32))


def propagation_available() -> str | None:
    """None if `gmos_core.propagation` exposes what the bench needs, else the reason."""
    try:
        from gmos_core.propagation import MaskIoUTracker, OnlinePropagator  # noqa: F401
    except ImportError as exc:
        return f"gmos_core.propagation is not available ({exc})"
    return None


# ------------------------------------------------------------------------------ measurement


@dataclass
class StageStats:
    """Latency of one stage (ms) and its work."""

    median_ms: float
    p95_ms: float
    n: int
    gflop: float | None = None
    achieved_gflops: float | None = None
    peak_fraction: float | None = None
    local_peak_gflops: float | None = None
    local_peak_fraction: float | None = None


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_fn(fn: Callable[[], Any], warmup: int, repeats: int, device: str = "cpu") -> list[float]:
    """Wall times (s) of `repeats` calls after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def stats(
    times: Sequence[float], flop: float | None = None, peak_gflops: float | None = None
) -> StageStats:
    t = np.asarray(times, dtype=np.float64)
    med = float(np.median(t))
    s = StageStats(round(med * 1e3, 3), round(float(np.percentile(t, 95)) * 1e3, 3), len(t))
    if flop:
        s.gflop = round(flop / 1e9, 4)
        s.achieved_gflops = round(flop / med / 1e9, 2)
        if peak_gflops:
            s.peak_fraction = round(flop / med / 1e9 / peak_gflops, 3)
    return s


PEAK_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def matmul_peak(
    device: str, n: int | None = None, repeats: int = 5, precision: str = "fp32"
) -> dict[str, Any]:
    """Best and median GFLOP/s of an n x n matmul in `precision` (the machine's practical peak
    for the stages that run in it)."""
    # CPUs without bf16 matrix instructions run bf16 matmuls ~80x slower than fp32 (1.4 vs
    # 110 GFLOP/s on this 2-core machine): a smaller product keeps the reference affordable.
    n = n or (8192 if device.startswith("cuda") else (2048 if precision == "fp32" else 512))
    dtype = PEAK_DTYPES[precision]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = time_fn(lambda: a @ b, warmup=1, repeats=repeats, device=device)
    g = [2 * n**3 / t / 1e9 for t in times]
    return {
        "n": n,
        "dtype": str(dtype).removeprefix("torch."),
        "best_gflops": round(max(g), 2),
        "median_gflops": round(float(np.median(g)), 2),
    }


def _cpu_sdpa_flops(
    q_shape: Any, k_shape: Any, v_shape: Any, *args: Any, out_shape: Any = None, **kw: Any
) -> int:
    # torch's flop registry covers the CUDA attention kernels, not the CPU flash kernel.
    return sdpa_flop_count(q_shape, k_shape, v_shape)


def count_flops(fn: Callable[[], Any], module: torch.nn.Module | None = None) -> float:
    """FLOPs of one call (matmuls, convolutions and attention; elementwise ops are not counted).

    The counter's module tracker hooks autograd; with parameters that require grad it trips
    over tensors cached under inference mode, so `module`'s parameters are frozen meanwhile.
    """
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
    params = [p for p in module.parameters() if p.requires_grad] if module is not None else []
    for p in params:
        p.requires_grad_(False)
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as fc:
            fn()
    finally:
        for p in params:
            p.requires_grad_(True)
    return float(fc.get_total_flops())


def limit_blas_threads(n: int) -> bool:
    """Set numpy's OpenBLAS thread count at run time (no threadpoolctl here).

    Why: the propagator's mask IoU is a numpy BLAS product; with OpenBLAS's default (all cores)
    on a loaded machine one (20 x 410k) @ (410k x 20) product took 15 s instead of 0.05 s.
    Returns False where numpy's BLAS is not a recognised OpenBLAS (then set
    OPENBLAS_NUM_THREADS before starting Python).
    """
    import ctypes

    libdir = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for lib in sorted(libdir.glob("lib*openblas*.so*")):
        handle = ctypes.CDLL(str(lib))  # already loaded by numpy: same handle, no second copy
        for sym in (
            "scipy_openblas_set_num_threads64_",
            "scipy_openblas_set_num_threads",
            "openblas_set_num_threads",
        ):
            fn = getattr(handle, sym, None)
            if fn is not None:
                fn(int(n))
                return True
    return False


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ------------------------------------------------------------------------------ one configuration


@dataclass
class ConfigModels:
    """Both variants of one configuration sharing π³ and SAM2 (same seed -> same weights)."""

    cfg: GmosModelConfig
    shapes: ModelShapes
    gmos: GmosTorchModel
    gmos_s: GmosTorchModel
    frame_hw: tuple[int, int]


def build_models(
    config: str, device: str, frame_hw: tuple[int, int] | None, decoder_blocks: int | None = None
) -> ConfigModels:
    """Both variants; `decoder_blocks` builds only the first π³ decoder blocks (see bench_config)."""
    cfg = GmosModelConfig.load(config)
    if decoder_blocks is not None:
        cfg = dataclasses.replace(
            cfg, pi3=dataclasses.replace(cfg.pi3, decoder_depth=decoder_blocks)
        )
    gmos = build_frame_model(cfg, "gmos", device=device)
    gmos_s = build_frame_model(cfg, "gmos_s", device=device)
    # One π³ / SAM2 in memory: the Gmos-S model shares the proposer model's (paper size: 3 GB).
    gmos_s.pi3, gmos_s.sam2 = gmos.pi3, gmos.sam2
    shapes = ModelShapes.from_config(cfg, frame_hw)
    hw = frame_hw or {"micro": (128, 128), "paper": (480, 854)}.get(cfg.name, (480, 854))
    return ConfigModels(cfg, shapes, gmos, gmos_s, hw)


def torch_backend(m: ConfigModels, device: str, precision: str = "fp32") -> TorchBackend:
    return TorchBackend(
        m.shapes,
        m.gmos.pi3,
        m.gmos.sam2,
        m.gmos_s.head,
        m.gmos.head,
        device=device,
        precision=precision,
    )


def inputs_and_flops(
    m: ConfigModels, tb: TorchBackend, frame: np.ndarray
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    """Real inputs of every part for one frame (window = the frame repeated) and each part's
    FLOPs, counted on the torch modules in the same single pass (paper size: one pass is
    a minute on a CPU)."""
    fm = BackendFrameModel(tb, "gmos", m.cfg.pi3.pixel_limit, m.cfg.top_k)
    specs = m.shapes.specs()
    inputs: dict[str, dict[str, np.ndarray]] = {}
    flops: dict[str, float] = {}

    def run(part: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs[part] = feed
        tens = {k: torch.from_numpy(v).to(tb.device) for k, v in feed.items()}
        mod, spec = tb.modules[part], specs[part]
        res: list[Any] = []
        flops[part] = count_flops(
            lambda: res.append(mod(*(tens[n] for n in spec.input_names))), mod
        )
        outs = res[0] if isinstance(res[0], tuple) else (res[0],)
        return {n: o.float().cpu().numpy() for n, o in zip(spec.output_names, outs)}

    tokens = run("pi3_encoder", {"images": fm.pi3_input(frame)})["tokens"]
    window = np.repeat(tokens[:, None], m.shapes.num_frames, axis=1)
    feats = run("pi3_decoder", {"tokens": window})["features"]
    sam = run("sam2_encoder", {"image": fm.sam2_input(frame)})
    run("gmos_s_head", {"token": feats, **sam})
    run("gmos_head", {"token": feats, **sam})
    return inputs, flops


def bench_backend(
    m: ConfigModels,
    backend: Backend,
    inputs: dict[str, dict[str, np.ndarray]],
    flops: dict[str, float],
    peak: float,
    warmup: int,
    repeats: int,
    device: str,
    frame: np.ndarray,
    time_scale: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Per-stage latency on one backend and the per-frame budget of both variants.

    `time_scale` multiplies the measured times of a part (a truncated π³ decoder extrapolated
    to its full depth; `flops` must already be the full-depth count)."""
    time_scale = time_scale or {}
    st: dict[str, StageStats] = {}
    msg = make_image_msg(frame)
    st["image_conversion"] = stats(time_fn(lambda: image_msg_to_rgb(msg), 2, max(repeats, 20)))
    fm_s = BackendFrameModel(backend, "gmos_s", m.cfg.pi3.pixel_limit, m.cfg.top_k)
    fm_g = BackendFrameModel(backend, "gmos", m.cfg.pi3.pixel_limit, m.cfg.top_k)
    st["preprocess"] = stats(
        time_fn(lambda: (fm_s.pi3_input(frame), fm_s.sam2_input(frame)), 1, max(repeats, 5))
    )
    for part in ("pi3_encoder", "pi3_decoder", "sam2_encoder", "gmos_s_head", "gmos_head"):
        # A matmul timed right before the stage: on a shared machine the load changes from
        # minute to minute, and the fraction against this contemporaneous reference is the one
        # that says how well the stage uses what the machine gives it at that moment.
        local = matmul_peak(device, repeats=3, precision=getattr(backend, "precision", "fp32"))[
            "best_gflops"
        ]
        t = time_fn(lambda part=part: backend.run(part, inputs[part]), warmup, repeats, device)
        st[part] = stats([x * time_scale.get(part, 1.0) for x in t], flops.get(part), peak)
        if st[part].achieved_gflops is not None:
            st[part].local_peak_gflops = local
            st[part].local_peak_fraction = round(st[part].achieved_gflops / local, 3)
    hw = frame.shape[:2]
    out_s = backend.run("gmos_s_head", inputs["gmos_s_head"])
    out_g = backend.run("gmos_head", inputs["gmos_head"])
    st["postprocess_gmos_s"] = stats(
        time_fn(lambda: fm_s.postprocess(out_s, hw), 1, max(repeats, 5))
    )
    st["postprocess_gmos"] = stats(time_fn(lambda: fm_g.postprocess(out_g, hw), 1, max(repeats, 5)))
    pred_s = fm_s.postprocess(out_s, hw)

    def msg_s() -> Any:
        fg = pred_s.fg_prob > 0.5
        ids = fg.astype(np.uint16)
        objs = objects_from_ids(ids, {1: True}, {1: 0.9}, {1: pred_s.iou})
        return build_messages(FrameResult(0, 0, ids, objs, pred_s.fg_prob))

    st["message_building_gmos_s"] = stats(time_fn(msg_s, 1, max(repeats, 10)))
    if propagation_available() is None:
        track = live_tracking()
        counter = iter(range(10**9))
        # Built outside the timed call: the propagator's work, not the script's, is measured.
        # One proposal set per step, drifting smoothly (no wrap-around that would spawn new
        # objects): a steady-state tracking step.
        n_steps = 2 + max(repeats, 10) + 1
        script = [scripted_proposals(i, hw, m.cfg.top_k) for i in range(n_steps)]

        def prop_step() -> Any:
            i = next(counter)
            return track.update(i, script[i % len(script)], None)

        st["propagator"] = stats(time_fn(prop_step, 2, max(repeats, 10)))
        ids, mov, prob, iou = prop_step()

        def msg_g() -> Any:
            objs = objects_from_ids(ids, mov, prob, iou)
            return build_messages(FrameResult(0, 0, ids, objs, None))

        st["message_building_gmos"] = stats(time_fn(msg_g, 1, max(repeats, 10)))
    per_frame = {}
    for variant in ("gmos_s", "gmos"):
        parts = {
            "image_conversion": st["image_conversion"],
            "preprocess": st["preprocess"],
            "pi3_encoder": st["pi3_encoder"],
            "pi3_decoder": st["pi3_decoder"],
            "sam2_encoder": st["sam2_encoder"],
            "head": st[f"{variant}_head"],
            "postprocess": st[f"postprocess_{variant}"],
        }
        if variant == "gmos":
            parts["propagator"] = st.get("propagator")  # type: ignore[assignment]
        parts["message_building"] = st.get(f"message_building_{variant}")  # type: ignore[assignment]
        ms = {k: (v.median_ms if v is not None else None) for k, v in parts.items()}
        total = sum(v for v in ms.values() if v is not None)
        per_frame[variant] = {
            "stages_ms": ms,
            "total_ms": round(total, 2),
            "fps_from_stages": float(f"{1e3 / total:.3g}") if total else None,
            "not_measured": [k for k, v in ms.items() if v is None],
        }
    return {
        "describe": backend.describe(),
        "stages": {k: asdict(v) for k, v in st.items()},
        "per_frame": per_frame,
    }


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


# ------------------------------------------------------------------------------ stride curve


def stride_curve(num_scenes: int, device: str, bundle: Path = MICRO_BUNDLE) -> dict[str, Any]:
    """fps and MOS-I accuracy of a trained proposer bundle for proposer strides 1, 2, 3, 5.

    The clips are the first `num_scenes` of the held-out benchmark split
    (`training.benchmark_synthetic`, seeds 900000.., stored as JPEG like its files) and each
    stride runs through the same runtime as `gmos-infer` (`build_segmenter`, the bundle's
    operating point), so stride 1 on the full split reproduces the benchmark's MOS-I row.
    fps counts the whole stream step (features, head, propagator), not the file I/O.
    """
    reasons = []
    if not bundle.is_file():
        reasons.append(f"trained micro model {bundle} does not exist yet")
    if propagation_available() is not None:
        reasons.append(str(propagation_available()))
    if reasons:
        return {"ran": False, "reason": "; ".join(reasons)}
    from gmos_core.pipeline import build_frame_model_from_bundle
    from gmos_core.runtime import RuntimeSettings, build_segmenter
    from training.benchmark_synthetic import SplitSpec, held_out_scenes
    from training.calibrate import as_sequence, score_gmos

    model = build_frame_model_from_bundle(bundle, device=device).frame_model()
    if model.mode != "gmos":
        return {
            "ran": False,
            "reason": f"{bundle} is a {model.mode} model, the curve needs the proposer",
        }
    scenes, seeds = held_out_scenes(SplitSpec(num_seqs=num_scenes))
    seqs = [as_sequence(f"heldout_{sd}", s) for sd, s in zip(seeds, scenes)]
    points = []
    for k in STRIDES:
        results, frames_total, wall = [], 0, 0.0
        for seq in seqs:
            settings = RuntimeSettings(
                variant="gmos_online", span_s=4 / seq.fps, proposer_stride=k, device=device
            )
            seg = build_segmenter(settings, model=model)
            t0 = time.perf_counter()
            out = [
                r
                for i, f in enumerate(seq.frames)
                for r in seg.step(f, int(round(i * 1e9 / seq.fps)))
            ] + seg.flush()
            wall += time.perf_counter() - t0
            frames_total += len(seq.frames)
            results.append(out)
        agg = score_gmos(results, seqs)
        points.append(
            {
                "stride": k,
                "fps": round(frames_total / wall, 2),
                "mtIoU": round(float(agg["mtIoU"]), 4),
                "J_mov": round(float(agg["J_mov"]), 4),
                "FP": round(float(agg["FP"]), 4),
            }
        )
    return {
        "ran": True,
        "scenes": num_scenes,
        "bundle": str(bundle),
        "operating_point": dataclasses.asdict(model.operating_point),
        "points": points,
    }


# ------------------------------------------------------------------------------ plots


def plot_breakdown(summary: dict[str, Any], path: Path) -> None:
    """Stacked bars of the per-frame budget: one subplot per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(summary["configs"])
    fig, axes = plt.subplots(1, len(configs), figsize=(6.5 * len(configs), 4.8), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, cname in zip(axes[0], configs):
        labels, rows = [], []
        for bname, b in summary["configs"][cname]["backends"].items():
            for variant, pf in b["per_frame"].items():
                labels.append(f"{variant}\n{bname}")
                rows.append(pf["stages_ms"])
        bottom = np.zeros(len(rows))
        for i, stage in enumerate(FRAME_STAGES):
            vals = np.array([r.get(stage) or 0.0 for r in rows])
            if not vals.any():
                continue
            ax.bar(labels, vals, bottom=bottom, label=stage, color=colours(i))
            bottom += vals
        for x, total in enumerate(bottom):
            ax.text(
                x,
                total,
                f"{total:.0f} ms\n{1e3 / total:.3g} fps",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_ylabel("ms per frame (median per stage)")
        prec = summary.get("torch_precision", "fp32")
        ax.set_title(
            f"{cname}: per-frame breakdown ({summary['machine']['device']}, torch {prec})",
            fontsize=10,
        )
        ax.set_ylim(0, bottom.max() * 1.25 if len(bottom) else 1)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_stride_curve(curve: dict[str, Any], path: Path) -> None:
    """Two panels against the proposer stride k: end-to-end fps, and MOS-I (x100) with FP."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = curve["points"]
    k = [p["stride"] for p in pts]
    fig, (ax_f, ax_m) = plt.subplots(1, 2, figsize=(9, 3.6))
    ax_f.plot(k, [p["fps"] for p in pts], marker="o", color="k")
    for p in pts:
        ax_f.annotate(
            f"{p['fps']:.1f}",
            (p["stride"], p["fps"]),
            fontsize=8,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax_f.set_xlabel("proposer stride k")
    ax_f.set_ylabel("frames / s (end to end)")
    ax_f.set_xticks(k)
    for key, marker in (("mtIoU", "o"), ("J_mov", "s")):
        ax_m.plot(k, [100 * p[key] for p in pts], marker=marker, label=key)
    ax_m.set_xlabel("proposer stride k")
    ax_m.set_ylabel("MOS-I (x100)")
    ax_m.set_xticks(k)
    ax_fp = ax_m.twinx()
    ax_fp.plot(k, [p["FP"] for p in pts], marker="^", color="tab:red", ls="--", label="FP")
    ax_fp.set_ylabel("FP (objects / frame)", color="tab:red")
    lines = ax_m.get_lines() + ax_fp.get_lines()
    ax_m.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="best")
    fig.suptitle(
        f"proposer stride: {curve.get('scenes')} held-out clips, {Path(curve.get('bundle', '')).name}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------ driver


def bench_config(
    config: str,
    backends: Sequence[str],
    device: str,
    warmup: int,
    repeats: int,
    e2e_frames: int,
    cache_windows: int,
    out_dir: Path,
    threads: int | None,
    frame_hw: tuple[int, int] | None = None,
    log: Callable[[str], None] = print,
    decoder_blocks: int | None = None,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Everything for one configuration (models built once, shared by all backends).

    `precision` applies to the torch backend (autocast; onnxruntime runs the fp32 graphs); the
    peak fractions of a torch run are against a matmul in the same precision.

    `decoder_blocks` (paper size on a CPU): build and time only the first blocks of the π³
    decoder and extrapolate time and FLOPs linearly to the full depth. Exact in structure: the
    decoder is a stack of identical (frame-wise, global) block pairs on the same token count.
    """
    t_build = time.perf_counter()
    full_depth = GmosModelConfig.load(config).pi3.decoder_depth
    if decoder_blocks is not None and (decoder_blocks >= full_depth or decoder_blocks % 2):
        decoder_blocks = None  # only whole (frame, global) pairs, and only when it is a cut
    m = build_models(config, device, frame_hw, decoder_blocks)
    scale = {"pi3_decoder": full_depth / decoder_blocks} if decoder_blocks else {}
    log(f"[{config}] models built in {time.perf_counter() - t_build:.1f} s; shapes {m.shapes}")
    frames = synthetic_frames(max(e2e_frames, cache_windows + m.shapes.num_frames), m.frame_hw)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    # FLOPs are counted on the fp32 modules (the count does not depend on the precision).
    tb = torch_backend(m, device)
    t0 = time.perf_counter()
    inputs, flops = inputs_and_flops(m, tb, frames[0])
    if precision != "fp32":
        tb = torch_backend(m, device, precision)
    for part, f in scale.items():
        flops[part] *= f
    log(
        f"[{config}] FLOPs counted in {time.perf_counter() - t0:.1f} s: "
        + ", ".join(f"{k} {v / 1e9:.2f} G" for k, v in flops.items())
    )
    result: dict[str, Any] = {
        "shapes": m.shapes.to_dict(),
        "frame_hw": list(m.frame_hw),
        "gflop_per_frame": {k: round(v / 1e9, 4) for k, v in flops.items()},
        "pi3_decoder_extrapolated": (
            {"measured_blocks": decoder_blocks, "full_blocks": full_depth}
            if decoder_blocks
            else None
        ),
        "backends": {},
        "torch_precision": precision,
    }
    peak = SUMMARY_PEAK[(device, precision)] if (device, precision) in SUMMARY_PEAK else None
    if peak is None:
        peak = matmul_peak(device, repeats=8, precision=precision)["best_gflops"]
        SUMMARY_PEAK[(device, precision)] = peak
    for name in backends:
        if name == "torch":
            backend: Backend = tb
        elif name == "onnxruntime":
            from training.export.onnx_export import export_model_parts

            onnx_dir = out_dir / f"onnx_{config}"
            t0 = time.perf_counter()
            export_model_parts(
                m.shapes,
                onnx_dir,
                pi3=m.gmos.pi3,
                sam2=m.gmos.sam2,
                gmos_s_head=m.gmos_s.head,
                gmos_head=m.gmos.head,
                config=m.cfg,
                check=False,
            )
            log(f"[{config}] ONNX export for onnxruntime in {time.perf_counter() - t0:.1f} s")
            backend = make_backend("onnxruntime", onnx_dir=onnx_dir, device=device, threads=threads)
        else:
            backend = make_backend(
                name,
                onnx_dir=out_dir / f"onnx_{config}",
                engine_dir=out_dir / "engines",
                device=device,
            )
        t0 = time.perf_counter()
        res = bench_backend(
            m, backend, inputs, flops, peak, warmup, repeats, device, frames[0], scale
        )
        if cache_windows > 0:
            res["streaming_cache"] = streaming_cache_speedup(
                backend, m, frames, device, cache_windows
            )
        if e2e_frames > 0:
            e2e = {}
            for variant in ("gmos_s", "gmos"):
                if variant == "gmos" and propagation_available() is not None:
                    e2e[variant] = {"fps": None, "reason": propagation_available()}
                    continue
                # Every backend, torch included, runs frames through the one frame model.
                model = BackendFrameModel(backend, variant, m.cfg.pi3.pixel_limit, m.cfg.top_k)
                e2e[variant] = end_to_end_fps(
                    model, variant, frames[:e2e_frames], 15.0, m.cfg.span_s
                )
            res["end_to_end"] = e2e
        res["bench_s"] = round(time.perf_counter() - t0, 1)
        result["backends"][name] = res
        pf = res["per_frame"]
        log(
            f"[{config}/{name}] per frame: gmos_s {pf['gmos_s']['total_ms']:.1f} ms, gmos {pf['gmos']['total_ms']:.1f} ms"
            + (
                f"; e2e fps { ({k: v.get('fps') for k, v in res['end_to_end'].items()}) }"
                if "end_to_end" in res
                else ""
            )
        )
    result["peak_rss_mb"] = peak_rss_mb()
    if device.startswith("cuda"):
        result["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


# (device, precision) -> best matmul GFLOP/s measured in this run.
SUMMARY_PEAK: dict[tuple[str, str], float] = {}


def targets(summary: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets against what was measured (None where not measured)."""
    out: dict[str, Any] = {}
    micro = summary["configs"].get("micro", {}).get("backends", {})
    best_s = max(
        (b.get("end_to_end", {}).get("gmos_s", {}).get("fps") or 0 for b in micro.values()),
        default=0,
    )
    best_g = max(
        (b.get("end_to_end", {}).get("gmos", {}).get("fps") or 0 for b in micro.values()), default=0
    )
    out["micro_gmos_s_fps>=10"] = {"value": best_s or None, "met": best_s >= 10}
    out["micro_gmos_fps>=5"] = {"value": best_g or None, "met": best_g >= 5}
    paper = summary["configs"].get("paper", {}).get("backends", {}).get("torch")
    if paper:
        names = ("pi3_encoder", "pi3_decoder", "sam2_encoder", "gmos_s_head", "gmos_head")
        glob = {k: paper["stages"][k]["peak_fraction"] for k in names}
        local = {k: paper["stages"][k]["local_peak_fraction"] for k in names}
        out["paper_stages>=50%_peak"] = {
            "value": local,
            "vs_run_peak": glob,
            "met": all((v or 0) >= 0.5 for v in local.values()),
            "note": "value: against a matmul timed just before each stage (shared machine)",
        }
    else:
        out["paper_stages>=50%_peak"] = {"value": None, "met": None, "reason": "run with --paper"}
    caches = {k: b["streaming_cache"] for k, b in micro.items() if b.get("streaming_cache")}
    if caches:
        calls = next(iter(caches.values()))["encoder_calls_per_frame"]
        # Work = FLOPs: each encoder call is the same graph, so the work ratio is the call
        # ratio; the measured time ratios are listed beside it (noisy on a shared machine).
        work_ratio = calls["uncached"] / calls["cached"]
        out["cache_cuts_pi3_encoder_work_~5x"] = {
            "value": work_ratio,
            "encoder_calls_per_frame": calls,
            "measured_encoder_time_ratio": {k: c["encoder_speedup"] for k, c in caches.items()},
            "measured_pi3_total_time_ratio": {k: c["pi3_total_speedup"] for k, c in caches.items()},
            "met": work_ratio >= 5.0,
        }
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gmos-bench", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--config", default="micro", help="configuration benchmarked first (default micro)"
    )
    ap.add_argument(
        "--paper", action="store_true", help="also the paper architecture (random weights)"
    )
    ap.add_argument("--backends", nargs="+", default=None, help="default: every available one")
    ap.add_argument("--paper-backends", nargs="+", default=["torch"], help="backends for --paper")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="torch backend precision (autocast); fp16 needs CUDA",
    )
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--paper-warmup", type=int, default=0)
    ap.add_argument("--paper-repeats", type=int, default=1)
    ap.add_argument(
        "--paper-decoder-blocks",
        type=int,
        default=None,
        help="time only this many π³ decoder blocks (even) and extrapolate to 36 (slow CPUs)",
    )
    ap.add_argument(
        "--e2e-frames", type=int, default=30, help="frames streamed end to end (0: skip)"
    )
    ap.add_argument("--cache-windows", type=int, default=8, help="windows for the cache speed-up")
    add_threads_argument(ap)  # also the onnxruntime intra-op threads
    ap.add_argument(
        "--stride-curve", action="store_true", help="proposer stride curve (trained micro)"
    )
    ap.add_argument("--stride-scenes", type=int, default=30, help="held-out clips for the curve")
    ap.add_argument(
        "--stride-bundle", type=Path, default=MICRO_BUNDLE, help="trained proposer bundle"
    )
    ap.add_argument("--out", type=Path, default=Path("out/bench"))
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``gmos-bench``; prints the JSON summary, returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        check_device(args.device)
    except DeviceUnavailableError as exc:
        print(f"gmos-bench: error: {exc}", file=sys.stderr)
        return 2
    if args.precision == "fp16" and not args.device.startswith("cuda"):
        print(
            "gmos-bench: --precision fp16 needs --device cuda (use bf16 on a CPU)", file=sys.stderr
        )
        return 2
    blas_limited = False
    if args.threads:
        torch.set_num_threads(args.threads)
        blas_limited = limit_blas_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    avail = available_backends()
    if args.backends is None:
        backends = [b for b in ("torch", "onnxruntime") if avail[b].startswith("ok")]
    else:
        backends = args.backends
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731 - progress on stderr, JSON on stdout
    load_before = os.getloadavg()
    peak = matmul_peak(args.device, repeats=8)
    SUMMARY_PEAK[(args.device, "fp32")] = peak["best_gflops"]
    device_name = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"{platform.processor() or platform.machine()} CPU x{os.cpu_count()}"
    )
    summary: dict[str, Any] = {
        "machine": {
            "device": device_name,
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "numpy_blas_threads_limited": blas_limited,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "loadavg_before": [round(x, 2) for x in load_before],
            "backends_available": avail,
        },
        "matmul_peak": peak,
        "torch_precision": args.precision,
        "configs": {},
    }
    log(f"matmul peak {peak}")
    summary["configs"][args.config] = bench_config(
        args.config,
        backends,
        args.device,
        args.warmup,
        args.repeats,
        args.e2e_frames,
        args.cache_windows,
        args.out,
        args.threads,
        log=log,
        precision=args.precision,
    )
    if args.paper:
        summary["configs"]["paper"] = bench_config(
            "paper",
            args.paper_backends,
            args.device,
            args.paper_warmup,
            args.paper_repeats,
            0,
            0 if args.device == "cpu" else 4,
            args.out,
            args.threads,
            log=log,
            decoder_blocks=args.paper_decoder_blocks,
            precision=args.precision,
        )
    if args.stride_curve:
        summary["stride_curve"] = stride_curve(args.stride_scenes, args.device, args.stride_bundle)
        if summary["stride_curve"].get("ran"):
            plot_stride_curve(summary["stride_curve"], args.out / "stride_curve.png")
    else:
        summary["stride_curve"] = {"ran": False, "reason": "not requested (--stride-curve)"}
    summary["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    summary["peak_rss_mb"] = peak_rss_mb()
    summary["targets"] = targets(summary)
    (args.out / "bench.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_breakdown(summary, args.out / "breakdown.png")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
