"""Engine cache: keys, reuse, refusal of stale / foreign engines, --rebuild, with a fake builder.

The real `TensorRTBuilder` needs TensorRT and a GPU (tested only where one exists)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from onnx import TensorProto, helper, save_model

from gmos_core.backends.base import BackendUnavailable, onnx_sha256
from gmos_core.backends.trt_backend import (
    ENGINE_FILE,
    MANIFEST_FILE,
    EngineManifest,
    TrtBackend,
    engine_dir,
)
from training.export import engines
from training.export.engines import BuildStats, EngineCacheError, build_engines

SHAPE = [1, 3, 8, 8]


def _have_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    import torch

    return torch.cuda.is_available()


class FakeBuilder:
    """Writes a deterministic 'engine' and records every build."""

    def __init__(self, version: str = "10.3.0", cc: str = "8.7") -> None:
        self.version, self.cc = version, cc
        self.builds: list[tuple[str, str, Path]] = []

    def runtime_info(self) -> dict[str, str]:
        return {
            "tensorrt_version": self.version,
            "compute_capability": self.cc,
            "gpu_name": "FakeGPU",
        }

    def build(self, onnx_path, engine_path, precision, timing_cache, input_shapes) -> BuildStats:
        self.builds.append((onnx_path.name, precision, timing_cache))
        engine_path.write_bytes(f"{onnx_sha256(onnx_path)}:{precision}:{self.version}".encode())
        timing_cache.write_bytes(b"timing")
        return BuildStats(fp32_layers=3 if precision == "fp16" else 0, num_layers=7)


def _export(
    onnx_dir: Path, part: str = "gmos_s_head", scale: float = 1.0, precision: str = "fp16"
) -> str:
    """A tiny real ONNX file + metadata in the gmos-export format; returns its sha256."""
    onnx_dir.mkdir(parents=True, exist_ok=True)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, SHAPE)
    w = helper.make_tensor("w", TensorProto.FLOAT, [1], [scale])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    path = onnx_dir / f"{part}.onnx"
    save_model(helper.make_model(graph), str(path))
    sha = onnx_sha256(path)
    meta = {
        "model_name": f"micro.{part}",
        "sha256": sha,
        "input_shapes": {"x": SHAPE},
        "shapes": {},
        "precision": precision,  # what gmos-export --precision records
    }
    (onnx_dir / f"{part}.json").write_text(json.dumps(meta))
    return sha


@pytest.fixture
def setup(tmp_path):
    onnx_dir, cache = tmp_path / "onnx", tmp_path / "cache"
    sha = _export(onnx_dir)
    return onnx_dir, cache, sha


def test_first_build_writes_engine_and_manifest_with_every_key_field(setup):
    onnx_dir, cache, sha = setup
    b = FakeBuilder()
    (rec,) = build_engines(onnx_dir, cache, b, "fp16")
    assert rec.action == "built" and len(b.builds) == 1
    d = engine_dir(cache, "micro.gmos_s_head", "fp16")
    assert rec.engine_path == d / ENGINE_FILE and rec.engine_path.is_file()
    m = EngineManifest.read(d / MANIFEST_FILE)
    assert m.key() == {
        "model_name": "micro.gmos_s_head",
        "onnx_sha256": sha,
        "tensorrt_version": "10.3.0",
        "compute_capability": "8.7",
        "precision": "fp16",
        "input_shapes": {"x": SHAPE},
    }
    assert m.engine_sha256 and m.fp32_layers == 3 and m.gpu_name == "FakeGPU"
    # One timing cache per TensorRT version and GPU architecture.
    assert b.builds[0][2] == cache / "timing-trt10.3.0-sm8.7.cache"
    assert not list(d.glob("*.tmp"))


def test_matching_engine_is_reused_without_building(setup):
    onnx_dir, cache, _ = setup
    b = FakeBuilder()
    build_engines(onnx_dir, cache, b)
    (rec,) = build_engines(onnx_dir, cache, b)
    assert rec.action == "reused" and len(b.builds) == 1


def test_stale_engine_after_reexport_is_refused_with_rebuild_hint(setup):
    onnx_dir, cache, _ = setup
    b = FakeBuilder()
    build_engines(onnx_dir, cache, b)
    _export(onnx_dir, scale=2.0)  # new weights -> new sha256
    with pytest.raises(EngineCacheError, match="onnx_sha256") as err:
        build_engines(onnx_dir, cache, b)
    assert "--rebuild" in str(err.value) and "not rebuilt silently" in str(err.value)
    assert len(b.builds) == 1  # nothing was rebuilt
    (rec,) = build_engines(onnx_dir, cache, b, rebuild=True)
    assert rec.action == "rebuilt" and len(b.builds) == 2
    assert EngineManifest.read(rec.manifest_path).onnx_sha256 == onnx_sha256(
        onnx_dir / "gmos_s_head.onnx"
    )


@pytest.mark.parametrize(
    ("builder", "field"),
    [
        (FakeBuilder(version="10.7.0"), "tensorrt_version"),
        (FakeBuilder(cc="9.0"), "compute_capability"),
    ],
)
def test_foreign_engine_from_other_tensorrt_or_gpu_is_refused(setup, builder, field):
    onnx_dir, cache, _ = setup
    build_engines(onnx_dir, cache, FakeBuilder())
    with pytest.raises(EngineCacheError, match=field):
        build_engines(onnx_dir, cache, builder)
    assert builder.builds == []


def test_other_input_shape_is_refused(setup):
    onnx_dir, cache, _ = setup
    build_engines(onnx_dir, cache, FakeBuilder())
    meta_path = onnx_dir / "gmos_s_head.json"
    meta = json.loads(meta_path.read_text())
    meta["input_shapes"] = {"x": [1, 3, 16, 16]}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(EngineCacheError, match="input_shapes"):
        build_engines(onnx_dir, cache, FakeBuilder())


def test_precisions_have_separate_cache_entries(setup, tmp_path):
    onnx_dir, cache, _ = setup
    b = FakeBuilder()
    build_engines(onnx_dir, cache, b, "fp16")
    _export(tmp_path / "onnx32", precision="fp32")
    (rec,) = build_engines(tmp_path / "onnx32", cache, b, "fp32")
    assert rec.action == "built" and "fp32" in str(rec.engine_path)
    assert [x[1] for x in b.builds] == ["fp16", "fp32"]


def test_engine_without_manifest_or_tampered_engine_is_refused(setup):
    onnx_dir, cache, _ = setup
    (rec,) = build_engines(onnx_dir, cache, FakeBuilder())
    rec.engine_path.write_bytes(b"someone else's engine")
    with pytest.raises(EngineCacheError, match="sha256 in its manifest"):
        build_engines(onnx_dir, cache, FakeBuilder())
    rec.manifest_path.unlink()
    with pytest.raises(EngineCacheError, match="manifest missing"):
        build_engines(onnx_dir, cache, FakeBuilder())
    (rec,) = build_engines(onnx_dir, cache, FakeBuilder(), rebuild=True)
    assert rec.action == "rebuilt" and rec.manifest_path.is_file()


def test_onnx_changed_after_export_metadata_is_an_input_error(setup):
    onnx_dir, cache, _ = setup
    meta_path = onnx_dir / "gmos_s_head.json"
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="changed after export"):
        build_engines(onnx_dir, cache, FakeBuilder())


def test_cli_exit_codes_and_messages(setup, capsys):
    onnx_dir, cache, _ = setup
    argv = ["--onnx", str(onnx_dir), "--cache", str(cache)]
    assert engines.main(argv, builder=FakeBuilder()) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["gmos_s_head"]["action"] == "built"
    assert engines.main(argv, builder=FakeBuilder(version="11.0")) == engines.EXIT_REFUSED
    err = capsys.readouterr().err
    assert "tensorrt_version" in err and "gmos-build-engines" in err and "--rebuild" in err
    assert engines.main([*argv, "--rebuild"], builder=FakeBuilder(version="11.0")) == 0
    capsys.readouterr()
    assert (
        engines.main(
            ["--onnx", str(cache / "nothing"), "--cache", str(cache)], builder=FakeBuilder()
        )
        == 4
    )


@pytest.mark.skipif(
    _have_tensorrt(), reason="checks the no-TensorRT message; TensorRT is installed here"
)
def test_without_tensorrt_the_cli_stops_with_a_clear_message(setup, capsys):
    onnx_dir, cache, _ = setup
    assert (
        engines.main(["--onnx", str(onnx_dir), "--cache", str(cache)]) == engines.EXIT_NO_TENSORRT
    )
    err = capsys.readouterr().err
    assert "TensorRT" in err and ("not installed" in err or "no CUDA" in err)
    assert not cache.exists()  # nothing was written


@pytest.mark.skipif(
    _have_tensorrt(), reason="checks the no-TensorRT error; TensorRT is installed here"
)
def test_trt_backend_without_tensorrt_raises_backend_unavailable(tmp_path):
    from gmos_core.backends.base import ModelShapes
    from gmos_core.models.build import GmosModelConfig

    shapes = ModelShapes.from_config(GmosModelConfig.load("micro"))
    with pytest.raises(BackendUnavailable, match="TensorRT"):
        TrtBackend(tmp_path, shapes)


def test_manifest_comparison_treats_tuples_and_lists_alike():
    m = EngineManifest("a", "s", "10", "8.9", "fp16", {"x": [1, 2]})
    assert m.mismatches({"input_shapes": {"x": (1, 2)}, "precision": "fp16"}) == []
    assert m.mismatches({"precision": "fp32"}) == ["precision: cached 'fp16', wanted 'fp32'"]


@pytest.mark.gpu
@pytest.mark.skipif(not _have_tensorrt(), reason="needs a CUDA GPU and TensorRT (GPU-only test)")
def test_real_tensorrt_build_and_backend_parity(tmp_path):  # pragma: no cover - GPU only
    import numpy as np

    from gmos_core.backends import make_backend
    from gmos_core.backends.base import ModelShapes
    from gmos_core.models.build import GmosModelConfig, build_frame_model
    from training.export.onnx_export import export_model_parts

    cfg = GmosModelConfig.load("micro")
    model = build_frame_model(cfg, "gmos_s")
    shapes = ModelShapes.from_config(cfg)
    export_model_parts(
        shapes, tmp_path / "onnx", pi3=model.pi3, sam2=model.sam2, gmos_s_head=model.head
    )
    assert (
        engines.main(
            [
                "--onnx",
                str(tmp_path / "onnx"),
                "--cache",
                str(tmp_path / "eng"),
                "--precision",
                "fp32",
            ]
        )
        == 0
    )
    trt_b = make_backend(
        "tensorrt", engine_dir=tmp_path / "eng", onnx_dir=tmp_path / "onnx", precision="fp32"
    )
    torch_b = make_backend("torch", model=model, shapes=shapes)
    for part in trt_b.parts:
        inputs = shapes.specs()[part].random_inputs()
        a, b = trt_b.run(part, inputs), torch_b.run(part, inputs)
        for k in a:
            assert np.abs(a[k] - b[k]).max() < 1e-2 * (1 + np.abs(b[k]).max()), (part, k)


def test_engine_precision_is_the_graphs_own(setup, tmp_path):
    """Strongly typed builds (TensorRT 10.x flag, 11.x always): an engine has the precision of
    its ONNX graph, so fp16 engines from an fp32 export (and the reverse) are refused with the
    export command, before anything is built."""
    onnx_dir, cache, _ = setup
    b = FakeBuilder()
    with pytest.raises(
        ValueError, match="fp16 graph but fp32 engines.*gmos-export --precision fp32"
    ):
        build_engines(onnx_dir, cache, b, "fp32")
    _export(tmp_path / "onnx32", precision="fp32")
    with pytest.raises(
        ValueError, match="fp32 graph but fp16 engines.*gmos-export --precision fp16"
    ):
        build_engines(tmp_path / "onnx32", cache, b, "fp16")
    assert b.builds == []
