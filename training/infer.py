"""`gmos-infer`: offline inference on videos or image folders, in the official output layout.

    gmos-infer --model {gmos,gmos-s} --input VIDEO|DIR [VIDEO|DIR ...] --out DIR
               [--fps F | --stride S] [--bundle PATH | --pi3-ckpt --sam2-ckpt --gmos-ckpt]

Outputs (as the official `inference_gmos.py` / `inference_gmos_s.py`, so `gmos-eval` scores
them and they compare file-for-file with the official code's outputs):

    gmos:   <out>/mos-i_frame/<seq>/00000.png   online pass: objects moving at that frame
            <out>/mos_frame/<seq>/00000.png     offline pass: every object at every frame
                                                (`--online-only`: the online pass's)
    gmos-s: <out>/prob/<seq>/00000.png          8-bit sigmoid x 255
            <out>/frame/<seq>/00000.png         foreground mask (palette 0/1)
    both:   <out>/mp4/<seq>.mp4                 overlay video

Windows follow the official rule: 5 frames at stride `max(1, int(fps / 8))` (≈0.5 s), clamped
at the sequence ends. Frames are fed through the same `StreamingSegmenter` the ROS node uses
(stamps i/fps, window span 4·stride/fps), so offline and live results are the same code.
Label PNGs use contiguous ids 1..K in order of first appearance (the persistent stream ids
can exceed the evaluator's 20 channels on long videos).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from gmos_core.compute import (
    DeviceUnavailableError,
    add_threads_argument,
    apply_threads,
    check_device,
)
from gmos_core.data.palette import write_indexed_png
from gmos_core.data.video import DataFormatError, read_frames, video_fps, write_mp4
from gmos_core.deploy import add_backend_arguments
from gmos_core.errors import ModelSetupError
from gmos_core.geometry.warp_decision import SensorFrame
from gmos_core.models.preprocess import stride_from_fps
from gmos_core.motion_decision import AUTO, MOTION_DECISION_CHOICES
from gmos_core.streaming import FrameResult
from gmos_core.streaming.build import (
    RuntimeSettings,
    build_segmenter,
    load_frame_model,
    resolve_motion_decision,
)
from gmos_core.variants import parse_variant
from gmos_core.visualize import overlay_labels

log = logging.getLogger("gmos-infer")

DEFAULT_OUTPUT_FPS = 24.0


class InferInputError(ValueError):
    """A user input problem (reported without a traceback, exit code 2)."""


@dataclass
class SequenceOutput:
    name: str
    num_frames: int
    seconds: float
    max_objects: int


def _sequence_name(path: Path) -> str:
    return path.stem if path.is_file() else path.name


def _resolve_rate(path: Path, fps: float | None, stride: int | None) -> tuple[float, int]:
    """(fps, stride) with the official precedence: --stride beats --fps beats metadata."""
    meta = video_fps(path)
    rate = fps or meta
    if stride is not None:
        if stride < 1:
            raise InferInputError(f"--stride must be >= 1, got {stride}")
        return (rate or DEFAULT_OUTPUT_FPS), stride
    if rate is None:
        raise InferInputError(
            f"{path}: no frame rate (image folders and some videos carry none): pass --fps or "
            "--stride"
        )
    return rate, stride_from_fps(rate)


class IdCompactor:
    """Maps persistent stream ids to contiguous 1..K by first appearance (per sequence)."""

    def __init__(self, limit: int = 255) -> None:
        self.map: dict[int, int] = {}
        self.limit = limit

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        out = np.zeros(ids.shape, np.uint8)
        for k in np.unique(ids):
            if k == 0:
                continue
            if int(k) not in self.map:
                if len(self.map) >= self.limit:
                    continue  # beyond what an 8-bit palette PNG can hold: dropped, counted
                self.map[int(k)] = len(self.map) + 1
            out[ids == k] = self.map[int(k)]
        return out


def run_sequence(
    segmenter_factory: object,
    path: Path,
    out: Path,
    variant: str,
    fps: float | None,
    stride: int | None,
    save_mp4: bool = True,
    online_only: bool = False,
    sensors: Sequence[SensorFrame | None] | None = None,
) -> SequenceOutput:
    """Run one video / folder through a fresh segmenter and write its outputs.

    `sensors`: frame i's depth and camera pose (`SensorFrame`) for the "depth_warp" motion
    decision, one per frame in order (the library form only: the CLI reads no depth).

    Memory does not grow with the video: each result is written as soon as the segmenter
    emits it (frames wait only for the window's lag), the overlay video is encoded frame by
    frame, and the Gmos offline pass reads its inputs back from disk. With `online_only`
    (Gmos) the offline pass is skipped and `mos_frame/` holds the online pass's full id maps.
    """
    seq = _sequence_name(path)
    rate, s = _resolve_rate(path, fps, stride)
    span_s = 4 * s / rate
    segmenter = segmenter_factory(span_s)  # type: ignore[operator]
    t0 = time.perf_counter()
    compact = IdCompactor()
    compact_full = IdCompactor()
    counts = {"frames": 0, "results": 0}

    def pairs() -> Iterator[tuple[int, np.ndarray, FrameResult]]:
        """(frame index, frame, result) as results become ready; frames wait in a deque."""
        pending: deque[np.ndarray] = deque()
        shape: tuple[int, ...] | None = None
        try:
            for i, frame in enumerate(tqdm(read_frames(path), desc=seq, unit="frame")):
                if shape is not None and frame.shape != shape:
                    raise InferInputError(
                        f"{seq}: frame {i} is {frame.shape[1]}x{frame.shape[0]} but frame 0 is "
                        f"{shape[1]}x{shape[0]}"
                    )
                shape = frame.shape
                pending.append(frame)
                counts["frames"] += 1
                if sensors is not None and i >= len(sensors):
                    raise InferInputError(f"{seq}: frame {i} has no sensor data")
                sensor = sensors[i] if sensors is not None else None
                for r in segmenter.step(frame, int(round(i * 1e9 / rate)), sensor):
                    yield counts["results"], pending.popleft(), r
                    counts["results"] += 1
            for r in segmenter.flush():
                if pending:  # else: more results than frames, reported below
                    yield counts["results"], pending.popleft(), r
                counts["results"] += 1
        except DataFormatError as exc:
            raise InferInputError(f"{seq}: {exc}") from exc

    def write(t: int, frame: np.ndarray, r: FrameResult) -> np.ndarray:
        """Write frame t's PNGs; returns its overlay."""
        name = f"{t:05d}.png"
        if variant == "gmos_s":
            assert r.fg_prob is not None
            prob8 = np.clip(np.round(r.fg_prob * 255), 0, 255).astype(np.uint8)
            _write_gray(out / "prob" / seq / name, prob8)
            labels = (r.instance_ids > 0).astype(np.uint8)
            write_indexed_png(out / "frame" / seq / name, labels)
        else:
            # MOS-I: only the objects moving at this frame (the official stage-1 gating).
            labels = compact(np.where(r.dynamic_mask, r.instance_ids, 0))
            write_indexed_png(out / "mos-i_frame" / seq / name, labels)
            if online_only:
                write_indexed_png(out / "mos_frame" / seq / name, compact_full(r.instance_ids))
        return overlay_labels(frame, labels) if save_mp4 else labels

    overlays = (write(t, frame, r) for t, frame, r in pairs())
    if save_mp4:
        try:
            write_mp4(out / "mp4" / f"{seq}.mp4", overlays, fps=rate)
        except ValueError:
            if counts["frames"]:
                raise
    else:
        for _ in overlays:
            pass
    if not counts["frames"]:
        raise InferInputError(f"{seq}: no frames")
    if counts["results"] != counts["frames"]:
        raise RuntimeError(f"{seq}: {counts['results']} results for {counts['frames']} frames")
    if variant == "gmos_online" and not online_only:
        _write_mos_frames(segmenter, out / "mos_frame" / seq)
    return SequenceOutput(seq, counts["frames"], time.perf_counter() - t0, len(compact.map))


def _write_gray(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img, mode="L").save(path)


def _write_mos_frames(segmenter: object, folder: Path) -> None:
    """MOS output: every object at every frame, from the offline pass (read from disk)."""
    tracking = getattr(segmenter, "tracking", None)
    compact = IdCompactor()
    for t, ids in enumerate(tracking.iter_offline_results()):  # type: ignore[union-attr]
        write_indexed_png(folder / f"{t:05d}.png", compact(ids))


def infer_videos(
    settings: RuntimeSettings,
    model: object,
    inputs: list[Path],
    out: Path,
    variant: str,
    *,
    fps: float | None = None,
    stride: int | None = None,
    save_mp4: bool = True,
    online_only: bool = False,
    spill_dir: str | None = None,
    sensors: dict[str, Sequence[SensorFrame | None]] | None = None,
) -> list[SequenceOutput]:
    """`gmos-infer`'s library form: each video / image folder through a fresh segmenter
    (`run_sequence`), outputs under `out`. `variant` is "gmos_online" or "gmos_s"; `model` is the
    loaded frame model (`load_frame_model(settings)`); the keywords are the CLI flags, and
    `sensors` the per-frame sensor data of each input by sequence name (`run_sequence`)."""

    def factory(span_s: float) -> object:
        settings.span_s = span_s
        return build_segmenter(
            settings,
            model=model,
            offline=variant == "gmos_online",
            second_pass=not online_only,
            spill_dir=spill_dir,
        )

    return [
        run_sequence(
            factory,
            p,
            out,
            variant,
            fps,
            stride,
            save_mp4,
            online_only=online_only,
            sensors=None if sensors is None else sensors[_sequence_name(p)],
        )
        for p in inputs
    ]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gmos-infer", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model",
        required=True,
        choices=("gmos", "gmos-s", "gmos_online", "gmos_s"),
        help="gmos (= gmos_online) or gmos-s (= gmos_s); see gmos_core.variants",
    )
    p.add_argument("--input", required=True, nargs="+", type=Path, help="videos or image dirs")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--fps", type=float, default=None, help="frame rate of image folders")
    p.add_argument("--stride", type=int, default=None, help="window stride in frames")
    p.add_argument("--bundle", default=None, help="one-file trained model (gmos_core.bundle)")
    p.add_argument("--config", default="micro", help="model config for official checkpoints")
    p.add_argument("--pi3-ckpt", default=None, help="official pi3 model.safetensors")
    p.add_argument("--sam2-ckpt", default=None, help="official SAM2.1 .pt")
    p.add_argument("--gmos-ckpt", default=None, help="official Gmos / Gmos-S checkpoint")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    add_threads_argument(p)
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="network precision (torch: autocast, fp16 needs CUDA; onnxruntime: the exported "
        "graphs'; tensorrt: the engines')",
    )
    add_backend_arguments(p)
    p.add_argument("--proposer-stride", type=int, default=1)
    p.add_argument(
        "--motion-decision",
        default=AUTO,
        # depth_warp needs each frame's depth and pose: the library form or the node.
        choices=[d for d in MOTION_DECISION_CHOICES if d != "depth_warp"],
        help="gmos: which proposals move: head (the model's motion head) or flow_motion (the "
        "flow motion net on the frames' optical flow, RGB only; the bundle's flow_motion "
        "operating point); auto: flow_motion with the shipped micro Gmos (its head is at "
        "chance), head with any other model. depth_warp needs depth and poses: library form "
        "(sensors=) or the node",
    )
    p.add_argument(
        "--flow-motion-weights",
        default="",
        help="the flow motion net's weights (default: the shipped gmos_core/assets one)",
    )
    p.add_argument("--no-mp4", action="store_true", help="skip the overlay videos")
    p.add_argument(
        "--online-only",
        action="store_true",
        help="gmos: skip the offline second pass (mos_frame/ then holds the online pass's "
        "full id maps); its inputs are otherwise kept on disk, see --spill-dir",
    )
    p.add_argument(
        "--spill-dir",
        default=None,
        help="gmos: where the offline pass keeps each frame's proposals until the clip ends "
        "(a private temporary folder inside it, deleted afterwards; default $TMPDIR). Needs "
        "roughly 50 kB per frame at 854x480",
    )
    p.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="run an untrained model (plumbing and timing only; outputs are meaningless)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `gmos-infer`; returns a process exit code."""
    args = build_parser().parse_args(argv)
    variant = parse_variant(args.model)  # legacy CLI spellings end here
    settings = RuntimeSettings(
        variant=variant,
        model_config=args.config,
        bundle=args.bundle,
        pi3_checkpoint=args.pi3_ckpt,
        sam2_checkpoint=args.sam2_ckpt,
        head_checkpoint=args.gmos_ckpt,
        device=args.device,
        precision=args.precision,
        proposer_stride=args.proposer_stride,
        allow_random_weights=args.allow_random_weights,
        backend=args.backend,
        onnx_dir=args.onnx_dir,
        engine_dir=args.engine_dir,
        provider=args.ort_provider,
        motion_decision=args.motion_decision,
        flow_motion_weights=args.flow_motion_weights,
    )
    if variant == "gmos_online":
        settings = resolve_motion_decision(settings)
        print(f"gmos-infer: motion decision {settings.motion_decision}", file=sys.stderr)
    try:
        for p in args.input:
            if not p.exists():
                raise InferInputError(f"input {p} does not exist")
        check_device(args.device)
        apply_threads(args.threads)
        model = load_frame_model(settings)
        if args.allow_random_weights and not (args.bundle or args.gmos_ckpt):
            print(
                "gmos-infer: WARNING: untrained weights, outputs are meaningless", file=sys.stderr
            )
        outputs = infer_videos(
            settings,
            model,
            args.input,
            args.out,
            variant,
            fps=args.fps,
            stride=args.stride,
            save_mp4=not args.no_mp4,
            online_only=args.online_only,
            spill_dir=args.spill_dir,
        )
        summary = [res.__dict__ for res in outputs]
    except (
        InferInputError,
        ModelSetupError,
        FileNotFoundError,
        DataFormatError,
        DeviceUnavailableError,
    ) as exc:
        print(f"gmos-infer: error: {exc}", file=sys.stderr)
        return 2
    (args.out / "infer_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
