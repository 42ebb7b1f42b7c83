"""One configuration's models and the per-stage timing of one backend."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gmos_core.backends import BackendFrameModel, ModelShapes
from gmos_core.backends.base import Backend
from gmos_core.backends.torch_backend import TorchBackend
from gmos_core.models.build import GmosModelConfig, GmosTorchModel, build_frame_model
from gmos_core.streaming import FrameResult, objects_from_ids
from training.bench.measure import StageStats, count_flops, matmul_peak, stats, time_fn
from training.bench.standins import (
    build_messages,
    image_msg_to_rgb,
    live_tracking,
    make_image_msg,
    propagation_available,
    scripted_proposals,
)
from training.export.onnx_export import export_model_parts

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


def export_onnx(m: ConfigModels, onnx_dir: Path, precision: str = "fp32") -> None:
    """Every model part of one configuration as ONNX graphs in `onnx_dir` (gmos-export's
    `export_model_parts`, no parity check: the callers compare the backends themselves)."""
    export_model_parts(
        m.shapes,
        onnx_dir,
        pi3=m.gmos.pi3,
        sam2=m.gmos.sam2,
        gmos_s_head=m.gmos_s.head,
        gmos_head=m.gmos.head,
        config=m.cfg,
        check=False,
        precision=precision,
    )


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
            props = script[i % len(script)]
            return track.step(i, props, None, props.masks.shape[-2:])

        st["propagator"] = stats(time_fn(prop_step, 2, max(repeats, 10)))
        frame = prop_step()

        def msg_g() -> Any:
            # The propagator's own object records, as the runtime hands them on.
            return build_messages(
                FrameResult(0, 0, frame.full_instance_map, frame.visible_states(), None)
            )

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
