"""ONNX export of the five parts (micro configuration): onnxruntime parity, metadata, external
data, and the static TensorRT operator check. Paper-size export is in a slow test."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from gmos_core.backends.base import PARTS, ModelShapes, onnx_files, onnx_sha256
from gmos_core.models.build import GmosModelConfig, build_frame_model
from training.export import onnx_export
from training.export.onnx_export import export_model_parts
from training.export.trt_ops import (
    TRT_OPS_VERSION,
    TRT_SUPPORTED_OPS,
    TRT_UNSUPPORTED_OPS,
    check_onnx_ops,
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One intra-op thread: on the shared 2-core machines, two threads contend with other jobs
    and run ~10x slower; results do not depend on it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def micro():
    cfg = GmosModelConfig.load("micro")
    gmos = build_frame_model(cfg, "gmos")
    gmos_s = build_frame_model(cfg, "gmos_s")
    return cfg, ModelShapes.from_config(cfg), gmos, gmos_s.head


@pytest.fixture(scope="module")
def exported(micro, tmp_path_factory):
    cfg, shapes, gmos, s_head = micro
    out = tmp_path_factory.mktemp("onnx_micro")
    results = export_model_parts(
        shapes,
        out,
        pi3=gmos.pi3,
        sam2=gmos.sam2,
        gmos_s_head=s_head,
        gmos_head=gmos.head,
        config=cfg,
    )
    return out, {r.part: r for r in results}


def test_all_five_parts_export_and_match_torch_in_onnxruntime(exported, micro):
    out, results = exported
    assert list(results) == list(PARTS)
    specs = micro[1].specs()
    for part, r in results.items():
        assert set(r.max_abs_diff) == set(specs[part].output_names)
        for name, diff in r.max_abs_diff.items():
            # Measured ~1e-6 (fp32 graph rewrites only); the bound is the export's own.
            assert diff <= r.bound[name], (part, name, diff)
            assert diff < 1e-4, (part, name, diff)


def test_metadata_records_name_config_shapes_opset_and_sha256(exported, micro):
    out, results = exported
    specs = micro[1].specs()
    for part in results:
        meta = json.loads((out / f"{part}.json").read_text())
        assert meta["model_name"] == f"micro.{part}"
        assert meta["config"]["pi3"]["embed_dim"] == 128
        assert meta["opset"] >= 17
        assert meta["input_shapes"] == specs[part].input_shapes()
        assert [o["name"] for o in meta["outputs"]] == list(specs[part].output_names)
        # sha256 of the file itself (no external data at micro size).
        assert meta["files"] == [f"{part}.onnx"] and not meta["external_data"]
        assert meta["sha256"] == hashlib.sha256((out / f"{part}.onnx").read_bytes()).hexdigest()
        assert meta["sha256"] == onnx_sha256(out / f"{part}.onnx")
        # The graph really has the fixed input shape of the spec.
        model = onnx.load(str(out / f"{part}.onnx"), load_external_data=False)
        dims = {
            i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input
        }
        assert dims == specs[part].input_shapes()


def test_exported_graphs_use_only_tensorrt_ops_and_no_in_graph_pos_embed_resize(exported):
    out, results = exported
    for part, r in results.items():
        report = check_onnx_ops(out / f"{part}.onnx")
        assert report.ok, (part, report.summary())
        assert r.op_report["ok"]
    enc = check_onnx_ops(out / "pi3_encoder.onnx")
    # π³'s antialiased bicubic pos-embed resize was precomputed: no Resize left at all.
    assert "Resize" not in enc.op_counts
    # opset 17: LayerNorm is one LayerNormalization node (TensorRT INormalizationLayer).
    assert enc.op_counts["LayerNormalization"] >= 5
    sam = check_onnx_ops(out / "sam2_encoder.onnx")
    assert sam.ok and sam.op_counts.get("LayerNormalization", 0) > 0


def test_export_leaves_the_torch_modules_as_they_were(micro, exported):
    _, _, gmos, _ = micro
    assert gmos.pi3.encoder.fixed_grid is None
    assert "_get_pos_embed" not in vars(gmos.sam2.sam_model.image_encoder.trunk)


def test_trt_op_check_reports_unsupported_ops_by_name_and_count():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    then_g = helper.make_graph(
        [helper.make_node("Unique", ["x"], ["u"])],
        "then",
        [],
        [helper.make_tensor_value_info("u", TensorProto.FLOAT, [4])],
    )
    else_g = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["v"])],
        "else",
        [],
        [helper.make_tensor_value_info("v", TensorProto.FLOAT, [4])],
    )
    nodes = [
        helper.make_node("Unique", ["x"], ["a"]),
        helper.make_node("Unique", ["a"], ["b"]),
        helper.make_node("FusedGemm", ["b"], ["c"], domain="com.microsoft"),
        helper.make_node("Resize", ["c", "", "sc"], ["d"], mode="cubic"),
        helper.make_node("Resize", ["d", "", "sc"], ["e"], mode="linear", antialias=1),
        helper.make_node(
            "Constant", [], ["cond"], value=helper.make_tensor("t", TensorProto.BOOL, [], [True])
        ),
        helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g),
    ]
    sc = helper.make_tensor("sc", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[sc])
    report = check_onnx_ops(helper.make_model(graph))
    assert not report.ok
    # The Unique inside the If branch counts too (TensorRT parses subgraphs).
    assert report.unsupported == {"Unique": 3, "com.microsoft::FusedGemm": 1}
    assert sum(report.restrictions.values()) == 2
    assert "Unique x3" in report.summary() and "FusedGemm" in report.summary()
    assert report.op_counts["Resize"] == 2


def test_trt_op_list_is_the_published_tensorrt_10_list():
    assert TRT_OPS_VERSION.startswith("10.")
    assert not TRT_SUPPORTED_OPS & TRT_UNSUPPORTED_OPS
    for op in (
        "LayerNormalization",
        "MatMul",
        "Softmax",
        "Erf",
        "Resize",
        "Conv",
        "ConvTranspose",
        "If",
    ):
        assert op in TRT_SUPPORTED_OPS
    for op in ("Unique", "MatMulInteger", "SequenceAt"):
        assert op in TRT_UNSUPPORTED_OPS


def test_large_model_path_writes_external_data_and_hashes_it(micro, tmp_path):
    cfg, shapes, gmos, _ = micro
    # Threshold 0 forces the >2 GB code path on a small model.
    (r,) = export_model_parts(
        shapes, tmp_path, pi3=gmos.pi3, parts=["pi3_encoder"], external_data_threshold=0
    )
    data = tmp_path / "pi3_encoder.onnx.data"
    assert data.is_file() and data.stat().st_size > 1e6
    assert (tmp_path / "pi3_encoder.onnx").stat().st_size < 1e5  # graph only
    assert onnx_files(r.onnx_path) == [r.onnx_path, data]
    meta = json.loads(r.meta_path.read_text())
    assert meta["external_data"] and meta["files"] == ["pi3_encoder.onnx", "pi3_encoder.onnx.data"]
    assert r.max_abs_diff["tokens"] < 1e-4  # onnxruntime ran it from the external file
    # Changing one weight byte changes the hash (the engine cache key).
    before = onnx_sha256(r.onnx_path)
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 1
    data.write_bytes(bytes(raw))
    assert onnx_sha256(r.onnx_path) != before


def test_parity_check_raises_when_the_graph_is_wrong(micro, tmp_path):
    _, shapes, gmos, s_head = micro
    (r,) = export_model_parts(shapes, tmp_path, gmos_s_head=s_head, check=False)
    # Compare the exported graph against a *different* head: the check must fail loudly.
    other = build_frame_model("micro", "gmos_s", seed=1).head
    from gmos_core.backends.torch_backend import HeadPart

    with pytest.raises(onnx_export.ExportParityError, match="gmos_s_head"):
        onnx_export.ort_parity(HeadPart(other).eval(), shapes.specs()["gmos_s_head"], r.onnx_path)


def test_cli_rejects_opset_below_17(capsys):
    assert onnx_export.main(["--opset", "16"]) == 2
    assert "opset >= 17" in capsys.readouterr().err


def test_cli_exports_one_part(tmp_path, capsys):
    assert (
        onnx_export.main(["--config", "micro", "--parts", "gmos_s_head", "--out", str(tmp_path)])
        == 0
    )
    assert (tmp_path / "gmos_s_head.onnx").is_file() and (tmp_path / "gmos_s_head.json").is_file()
    assert "max |ort - torch|" in capsys.readouterr().out


@pytest.mark.slow
def test_paper_size_export_parity_and_trt_ops(tmp_path):
    """Paper architecture at the official resolution (672x378 π³, 1024² SAM2), random weights.

    Minutes and ~10 GB of RAM on 2 cores: run with --runslow.
    """
    cfg = GmosModelConfig.load("paper")
    torch.manual_seed(0)
    gmos = build_frame_model(cfg, "gmos")
    s_head = build_frame_model(cfg, "gmos_s").head
    shapes = ModelShapes.from_config(cfg)
    assert shapes.pi3_hw == (378, 672) and shapes.grid_hw == (27, 48)
    results = export_model_parts(
        shapes,
        tmp_path,
        pi3=gmos.pi3,
        sam2=gmos.sam2,
        gmos_s_head=s_head,
        gmos_head=gmos.head,
        config=cfg,
    )
    for r in results:
        assert r.op_report["ok"], r.part
        for name, diff in r.max_abs_diff.items():
            assert np.isfinite(diff) and diff <= r.bound[name], (r.part, name, diff)
