"""ONNX export of the five Gmos parts, each checked against torch in onnxruntime.

Every part is exported with fixed shapes (`ModelShapes.specs()`), opset 17 by default (so that
LayerNorm becomes one ``LayerNormalization`` node, which TensorRT maps to its normalisation layer
and can keep in FP32), with the legacy TorchScript exporter (``dynamo=False``: it needs no
onnxscript and exports these models exactly). π³'s position embedding is precomputed for the
engine grid first, so no antialiased bicubic resize is traced (TensorRT cannot run one).

Next to each ``<part>.onnx`` goes ``<part>.json``: model name, configuration, input / output
shapes, opset, sha256 of the model files, the onnxruntime parity numbers and the static TensorRT
operator check. Models over `EXTERNAL_DATA_THRESHOLD` bytes of weights (protobuf's 2 GB limit)
keep their weights in ``<part>.onnx.data``.

    gmos-export --config micro --out out/onnx/micro
    gmos-export --config paper --frame-hw 480 854 --parts pi3_encoder --out out/onnx/paper
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gmos_core.backends.base import PARTS, ModelShapes, PartSpec, head_part, onnx_files, onnx_sha256
from gmos_core.backends.torch_backend import export_constants, part_modules
from gmos_core.bundle import bundle_sha256, read_bundle
from gmos_core.models.build import GmosModelConfig, build_frame_model, build_frame_model_from_bundle
from gmos_core.models.gmos import GmosProposer, GmosS
from training.export.fp16 import Fp16Part, fp16_islands, graph_precision_report
from training.export.trt_ops import check_onnx_ops

# onnx and onnxruntime are optional (extra "onnx"): imported by the functions that write or run
# graphs, so this module, and the tools that import it, import without them.

__all__ = [
    "EXPORT_FORMAT",
    "EXTERNAL_DATA_THRESHOLD",
    "ExportParityError",
    "ExportResult",
    "export_model_parts",
    "export_bundle_parts",
    "export_part",
    "main",
    "ort_parity",
    "read_metadata",
]

EXPORT_FORMAT = "gmos-onnx-export/1"
# protobuf cannot serialise a message over 2 GiB; stay clear of it with some headroom.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000
DEFAULT_OPSET = 17
# Parity bound of an fp16 graph against the fp32 torch module (atol = rtol, the rtol relative
# to the output's largest magnitude): fp16 keeps ~3 significant digits per op.
FP16_PARITY = 5e-2


class ExportParityError(RuntimeError):
    """onnxruntime's output differs from torch beyond the bound (message names part / output)."""


@dataclass
class ExportResult:
    """One exported part.

    Attributes:
        part: part name (see `gmos_core.backends.base.PARTS`).
        onnx_path: the .onnx file; `files` also lists its external-data file, if any.
        meta_path: the metadata JSON beside it.
        sha256: `onnx_sha256` of the files.
        max_abs_diff: output name -> max |onnxruntime - torch| on the check inputs.
        bound: output name -> the bound it had to stay under.
        op_report: the static TensorRT op check (dict form).
        export_s: wall time of the export.
    """

    part: str
    onnx_path: Path
    meta_path: Path
    sha256: str
    files: list[Path]
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    bound: dict[str, float] = field(default_factory=dict)
    op_report: dict[str, Any] = field(default_factory=dict)
    export_s: float = 0.0


def _weight_bytes(module: nn.Module) -> int:
    seen: set[int] = set()
    total = 0
    for t in list(module.parameters()) + list(module.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def _torch_outputs(
    module: nn.Module, spec: PartSpec, inputs: dict[str, np.ndarray]
) -> list[np.ndarray]:
    with torch.inference_mode():
        out = module(*(torch.from_numpy(inputs[n]) for n in spec.input_names))
    outs = out if isinstance(out, tuple) else (out,)
    return [o.float().numpy() for o in outs]


def ort_parity(
    module: nn.Module,
    spec: PartSpec,
    onnx_path: Path,
    seed: int = 0,
    atol: float = 1e-3,
    rtol: float = 1e-3,
    inputs: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Run the exported graph in onnxruntime (CPU) and torch on the same random inputs.

    The bound per output is ``atol + rtol * max|torch output|``: fp32 graph rewrites reorder
    sums, so the error scales with the magnitude of the output.

    Returns:
        (max_abs_diff by output, bound by output).

    Raises:
        ExportParityError: an output is over its bound (or not finite).
    """
    import onnxruntime as ort

    inputs = inputs if inputs is not None else spec.random_inputs(seed)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # the SAM2 graph triggers harmless shape-merge warnings
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    got = sess.run(list(spec.output_names), inputs)
    ref = _torch_outputs(module, spec, inputs)
    diffs: dict[str, float] = {}
    bounds: dict[str, float] = {}
    for name, a, b in zip(spec.output_names, got, ref):
        if a.shape != b.shape:
            raise ExportParityError(
                f"{spec.name}.{name}: onnxruntime shape {a.shape} != torch {b.shape}"
            )
        diff = float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0
        bound = atol + rtol * float(np.abs(b).max()) if b.size else atol
        diffs[name], bounds[name] = diff, bound
        if not np.isfinite(diff) or diff > bound:
            raise ExportParityError(
                f"{spec.name}.{name}: onnxruntime differs from torch by {diff:.3g} "
                f"(bound {bound:.3g})"
            )
    return diffs, bounds


def export_part(
    module: nn.Module,
    spec: PartSpec,
    onnx_path: Path,
    opset: int = DEFAULT_OPSET,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
) -> list[Path]:
    """Trace one part module to `onnx_path` with fixed shapes; returns the files written.

    The exporter writes into a scratch directory first; the model is then re-saved with at most
    one external-data file (``<name>.data``) when its weights exceed `external_data_threshold`,
    so that the layout does not depend on what the exporter did for large models.
    """
    import onnx

    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    args = tuple(torch.from_numpy(t.zeros()) for t in spec.inputs)
    big = _weight_bytes(module) > external_data_threshold
    with tempfile.TemporaryDirectory(dir=onnx_path.parent) as tmp:
        tmp_path = Path(tmp) / onnx_path.name
        with warnings.catch_warnings():
            # TracerWarnings about Python-side shape checks: shapes are fixed by design.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                str(tmp_path),
                input_names=list(spec.input_names),
                output_names=list(spec.output_names),
                opset_version=opset,
                dynamo=False,
                do_constant_folding=True,
            )
        model = onnx.load(str(tmp_path), load_external_data=True)
        data_name = onnx_path.name + ".data"
        for stale in (onnx_path, onnx_path.parent / data_name):
            stale.unlink(missing_ok=True)
        if big:
            onnx.save_model(
                model,
                str(onnx_path),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=data_name,
                size_threshold=1024,
            )
        else:
            onnx.save_model(model, str(onnx_path))
        del model
    onnx.checker.check_model(str(onnx_path))  # path form: works with external data
    return onnx_files(onnx_path)


def _config_dict(config: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return json.loads(json.dumps(dataclasses.asdict(config), default=list))
    return dict(config or {})


def export_model_parts(
    shapes: ModelShapes,
    out_dir: str | Path,
    pi3: nn.Module | None = None,
    sam2: nn.Module | None = None,
    gmos_s_head: nn.Module | None = None,
    gmos_head: nn.Module | None = None,
    parts: Sequence[str] | None = None,
    config: Any = None,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    atol: float = 1e-3,
    rtol: float = 1e-3,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
    log: Any = None,
    extra_meta: dict[str, Any] | None = None,
    precision: str = "fp32",
) -> list[ExportResult]:
    """Export the requested parts (default: all buildable from the given components).

    Args:
        shapes: fixed shapes of the engines (π³ resolution, window length, SAM2 size ...).
        out_dir: directory for ``<part>.onnx`` + ``<part>.json``.
        pi3, sam2, gmos_s_head, gmos_head: the torch components (eval mode is set).
        parts: subset of `PARTS` to export.
        config: the `GmosModelConfig` (recorded in the metadata).
        check: compare with torch in onnxruntime (raises `ExportParityError` over the bound).
        log: callable taking one line of progress text (e.g. print); None for silence.
        precision: "fp32", or "fp16": an fp16 graph whose LayerNorms, softmax, reductions,
            pow/sqrt and RoPE stay fp32 by explicit casts (`training.export.fp16`); its parity
            bound against the fp32 torch module is `FP16_PARITY` (relative to the output's
            range), and the metadata records the graph's real precision.
        extra_meta: more metadata fields (gmos-export records the bundle and its sha256, which
            the runtime checks: an ONNX folder runs only with the bundle it was exported from).

    Returns:
        One `ExportResult` per exported part, in `PARTS` order.
    """
    import onnx

    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be fp32 or fp16, got {precision!r}")
    if precision == "fp16":
        atol = rtol = FP16_PARITY
    out_dir = Path(out_dir)
    mods = part_modules(shapes, pi3, sam2, gmos_s_head, gmos_head)  # type: ignore[arg-type]
    wanted = list(parts) if parts is not None else [p for p in PARTS if p in mods]
    missing = [p for p in wanted if p not in mods]
    if missing:
        raise ValueError(f"cannot export {missing}: their torch components were not given")
    specs = shapes.specs()
    results = []
    for part in wanted:
        spec, module = specs[part], mods[part]
        onnx_path = out_dir / f"{part}.onnx"
        t0 = time.perf_counter()
        with export_constants(shapes, pi3, sam2):  # type: ignore[arg-type]
            if precision == "fp16":
                with fp16_islands():
                    files = export_part(
                        Fp16Part(module), spec, onnx_path, opset, external_data_threshold
                    )
            else:
                files = export_part(module, spec, onnx_path, opset, external_data_threshold)
            export_s = time.perf_counter() - t0
            # fp16: against the fp32 module, i.e. the error the fp16 graph really makes.
            diffs, bounds = (
                ort_parity(module, spec, onnx_path, atol=atol, rtol=rtol) if check else ({}, {})
            )
        report = check_onnx_ops(onnx_path)
        sha = onnx_sha256(onnx_path)
        meta = {
            "format": EXPORT_FORMAT,
            "model_name": f"{shapes.config_name}.{part}",
            "part": part,
            "config_name": shapes.config_name,
            "config": _config_dict(config),
            "shapes": shapes.to_dict(),
            "inputs": [dataclasses.asdict(t) for t in spec.inputs],
            "outputs": [dataclasses.asdict(t) for t in spec.outputs],
            "input_shapes": spec.input_shapes(),
            "opset": opset,
            "sha256": sha,
            "files": [f.name for f in files],
            "external_data": len(files) > 1,
            "bytes": sum(f.stat().st_size for f in files),
            "layer_norm_nodes": report.op_counts.get("LayerNormalization", 0),
            "parity": {
                "runtime": "onnxruntime CPUExecutionProvider",
                "checked": check,
                "max_abs_diff": diffs,
                "bound": bounds,
            },
            "tensorrt_ops": report.to_dict(),
            "exporter": f"torch.onnx.export(dynamo=False) torch {torch.__version__}",
            "onnx_version": onnx.__version__,
            "export_s": round(export_s, 3),
            "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "precision": precision,
            **({"fp16_graph": graph_precision_report(onnx_path)} if precision == "fp16" else {}),
            **(extra_meta or {}),
        }
        meta_path = out_dir / f"{part}.json"
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
        res = ExportResult(
            part, onnx_path, meta_path, sha, files, diffs, bounds, report.to_dict(), export_s
        )
        results.append(res)
        if log is not None:
            worst = max(diffs.values(), default=float("nan"))
            log(
                f"{part}: {onnx_path} ({meta['bytes'] / 1e6:.1f} MB, {export_s:.1f} s), "
                f"max |ort - torch| = {worst:.2e}, TensorRT ops: {report.summary()}"
            )
    return results


def bundle_meta(bundle: str | Path) -> dict[str, Any]:
    """Export metadata naming the bundle the weights come from (checked by `gmos_core.deploy`)."""
    return {"bundle": str(bundle), "bundle_sha256": bundle_sha256(bundle)}


def export_bundle_parts(
    bundle: str | Path,
    out: str | Path,
    frame_hw: tuple[int, int] | None = None,
    parts: Sequence[str] | None = None,
    check: bool = True,
    log: Any = None,
    precision: str = "fp32",
) -> list[ExportResult]:
    """`gmos-export --bundle`: the bundle's parts (default: those its variant runs), with the
    bundle's sha256 in the metadata (the runtime runs them only with that bundle)."""
    m = build_frame_model_from_bundle(bundle)
    wanted = parts or ["pi3_encoder", "pi3_decoder", "sam2_encoder", head_part(m.mode)]
    return export_model_parts(
        ModelShapes.from_config(m.config, frame_hw),
        out,
        pi3=m.pi3,
        sam2=m.sam2,
        gmos_s_head=m.head if isinstance(m.head, GmosS) else None,
        gmos_head=m.head if isinstance(m.head, GmosProposer) else None,
        parts=wanted,
        config=m.config,
        check=check,
        log=log,
        extra_meta=bundle_meta(bundle),
        precision=precision,
    )


def read_metadata(onnx_path: str | Path) -> dict[str, Any]:
    """The export metadata JSON beside an .onnx file (``<part>.json``)."""
    p = Path(onnx_path)
    meta = p.with_suffix(".json")
    if not meta.is_file():
        raise FileNotFoundError(
            f"{p}: no export metadata {meta.name} beside it (export with gmos-export)"
        )
    return json.loads(meta.read_text())


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gmos-export", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="micro", help="model configuration (micro | paper | path)")
    ap.add_argument("--bundle", type=Path, help="trained one-file bundle (else random weights)")
    ap.add_argument("--frame-hw", type=int, nargs=2, metavar=("H", "W"), help="camera frame size")
    ap.add_argument("--parts", nargs="+", choices=PARTS, help="subset of parts (default: all five)")
    ap.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    ap.add_argument(
        "--precision",
        choices=["fp32", "fp16"],
        default="fp32",
        help="graph precision: fp16 keeps LayerNorm, softmax, reductions, pow/sqrt and RoPE in "
        "fp32 by explicit casts (what fp16 TensorRT engines are built from)",
    )
    ap.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    ap.add_argument("--out", type=Path, default=Path("out/onnx"))
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``gmos-export``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.opset < 17:
        print(
            "gmos-export: opset >= 17 is required (LayerNormalization for TensorRT)",
            file=sys.stderr,
        )
        return 2
    if args.bundle is not None:
        model = build_frame_model_from_bundle(args.bundle)

        cfg = GmosModelConfig.load(read_bundle(args.bundle)[0].config)
        heads = {"gmos_s_head": None, "gmos_head": None}
        heads["gmos_s_head" if isinstance(model.head, GmosS) else "gmos_head"] = model.head
    else:
        cfg = GmosModelConfig.load(args.config)
        model = build_frame_model(cfg, "gmos")
        # Same seed, same construction order: π³ and SAM2 weights equal those of the gmos model.
        s_head = build_frame_model(cfg, "gmos_s").head
        heads = {"gmos_s_head": s_head, "gmos_head": model.head}
    shapes = ModelShapes.from_config(cfg, tuple(args.frame_hw) if args.frame_hw else None)
    try:
        results = export_model_parts(
            shapes,
            args.out,
            pi3=model.pi3,
            sam2=model.sam2,
            gmos_s_head=heads["gmos_s_head"] if isinstance(heads["gmos_s_head"], GmosS) else None,
            gmos_head=heads["gmos_head"] if isinstance(heads["gmos_head"], GmosProposer) else None,
            parts=args.parts,
            config=cfg,
            opset=args.opset,
            check=not args.no_check,
            log=print,
            extra_meta=bundle_meta(args.bundle) if args.bundle is not None else None,
            precision=args.precision,
        )
    except ExportParityError as exc:
        print(f"gmos-export: parity check failed: {exc}", file=sys.stderr)
        return 1
    bad = [r.part for r in results if not r.op_report.get("ok", False)]
    if bad:
        print(f"gmos-export: parts with ops TensorRT cannot parse: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
