"""The node on every backend: the demo bag through `GmosNode` on onnxruntime and on torch
(CPU) gives the same motion states on every frame and the same masks up to a stated pixel
tolerance; a missing ONNX folder, an unknown provider and every kind of wrong engine are
refused at configure (node stays unconfigured, nothing rebuilt), each with one clear message.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("gmos_msgs.msg")
pytest.importorskip("onnxruntime")

from rclpy.context import Context  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from gmos_core.backends import ModelShapes  # noqa: E402
from gmos_core.deploy import BackendRefused, plan_backend  # noqa: E402
from gmos_core.streaming.build import DEFAULT_BUNDLES, RuntimeSettings  # noqa: E402
from gmos_ros.node import GmosNode  # noqa: E402
from gmos_ros.node_bench import InProcessNode, bag_images  # noqa: E402
from training.export.onnx_export import export_bundle_parts  # noqa: E402

pytestmark = pytest.mark.ros

# Masks of the two backends may differ where a logit sits within float noise (~1e-5) of a
# decision threshold: at most this fraction of a frame's pixels (measured: 0 on the demo bag).
MASK_PIXEL_TOLERANCE = 0.002
PARTS_GMOS = ["pi3_encoder", "pi3_decoder", "sam2_encoder", "gmos_head"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    """The demo bag (`gmos-bag synth` defaults: 24 frames, 128x128, 10 fps) and an ONNX export
    of the shipped micro Gmos for its frame size."""
    from gmos_ros.bag import write_synthetic_bag

    root = tmp_path_factory.mktemp("node_backends")
    bundle = DEFAULT_BUNDLES["gmos_online"]
    assert bundle.is_file(), f"shipped bundle {bundle} missing"
    write_synthetic_bag(root / "bag", "mcap", seed=0)
    onnx = root / "onnx"
    export_bundle_parts(bundle, onnx, (128, 128), PARTS_GMOS, check=False)
    return {"bag": root / "bag", "onnx": onnx, "root": root}


def run_node(params: dict, msgs: list) -> tuple[list, GmosNode]:
    run = InProcessNode(params)
    try:
        run.feed_all(msgs)
        return run.results, run.node
    finally:
        run.close()


def test_demo_bag_through_the_node_onnxruntime_equals_torch(demo) -> None:
    msgs = bag_images(demo["bag"])
    assert len(msgs) == 24
    torch_res, torch_node = run_node({"backend": "torch"}, msgs)
    ort_res, ort_node = run_node(
        {"backend": "onnxruntime", "onnx_dir": str(demo["onnx"]), "ort_provider": "cpu"}, msgs
    )
    assert torch_node.plan.backend == "torch" and ort_node.plan.backend == "onnxruntime"
    assert [r.stamp_ns for r in ort_res] == [r.stamp_ns for r in torch_res]
    assert len(torch_res) == len(msgs)
    worst = 0.0
    for a, b in zip(torch_res, ort_res):
        assert {o.obj_id: o.moving for o in a.objects} == {o.obj_id: o.moving for o in b.objects}
        worst = max(worst, float(np.mean(a.instance_ids != b.instance_ids)))
        np.testing.assert_allclose(
            [o.motion_prob for o in a.objects], [o.motion_prob for o in b.objects], atol=1e-4
        )
    assert worst <= MASK_PIXEL_TOLERANCE, worst
    assert any(o.moving for r in torch_res for o in r.objects), "nothing moved: a vacuous check"


# ------------------------------------------------------------------------ refused at configure


def _refused_node(params: dict) -> GmosNode:
    """A node whose configure must fail: it stays unconfigured and never loads a model."""
    calls = []
    ctx = Context()
    rclpy.init(context=ctx, domain_id=int(os.environ.get("ROS_DOMAIN_ID", "87")))
    try:
        node = GmosNode(
            "gmos",
            model_loader=lambda s: calls.append(s),
            context=ctx,
            parameter_overrides=[
                Parameter(k, value=v) for k, v in {"autostart": False, **params}.items()
            ],
        )
        node.trigger_configure()
        assert node.params is None and node.plan is None and node.cameras == []
        node.trigger_activate()
        assert not node.active and calls == []
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
    return node


def test_missing_onnx_folder_and_unknown_provider_are_refused_at_configure(demo) -> None:
    _refused_node({"backend": "onnxruntime", "onnx_dir": str(demo["root"] / "nope")})
    _refused_node({"backend": "onnxruntime", "onnx_dir": str(demo["onnx"]), "ort_provider": "x"})
    _refused_node({"backend": "tensorrt", "onnx_dir": str(demo["onnx"])})  # no engine cache
    base = RuntimeSettings(backend="onnxruntime", onnx_dir=str(demo["root"] / "nope"))
    with pytest.raises(BackendRefused, match=r"does not exist; export it: gmos-export"):
        plan_backend(base)
    with pytest.raises(BackendRefused, match="must be one of"):
        plan_backend(
            RuntimeSettings(backend="onnxruntime", onnx_dir=str(demo["onnx"]), provider="x")
        )
    with pytest.raises(BackendRefused, match="'cuda'.*not available"):
        plan_backend(
            RuntimeSettings(backend="onnxruntime", onnx_dir=str(demo["onnx"]), provider="cuda")
        )
    with pytest.raises(BackendRefused, match="holds fp32 graphs"):
        plan_backend(
            RuntimeSettings(backend="onnxruntime", onnx_dir=str(demo["onnx"]), precision="fp16")
        )
    with pytest.raises(BackendRefused, match="backend 'tflite'"):
        plan_backend(RuntimeSettings(backend="tflite"))
    # The export records its bundle: another bundle (here: recalibrated) with these graphs is
    # refused, its thresholds were not chosen for these weights' export.
    from gmos_core.bundle import write_operating_point
    from gmos_core.operating_point import OperatingPoint

    other = write_operating_point(
        DEFAULT_BUNDLES["gmos_online"], demo["root"] / "other.safetensors", OperatingPoint()
    )
    with pytest.raises(BackendRefused, match="other weights than bundle"):
        plan_backend(
            RuntimeSettings(backend="onnxruntime", onnx_dir=str(demo["onnx"]), bundle=str(other))
        )
    ok = plan_backend(RuntimeSettings(backend="onnxruntime", onnx_dir=str(demo["onnx"])))
    assert ok.parts == tuple(PARTS_GMOS) and ok.shapes.pi3_hw == (126, 126)


FAKE_GPU = {"tensorrt_version": "10.3.0", "compute_capability": "8.7", "gpu_name": "Orin"}


def _fake_engine_cache(demo: dict, cache: Path, **wrong: object) -> None:
    """Manifests as gmos-build-engines writes them (engine bytes are a stand-in: configure
    reads only the manifests), with some fields `wrong`."""
    from gmos_core.backends.base import onnx_sha256
    from gmos_core.backends.trt_backend import ENGINE_FILE, EngineManifest, engine_dir

    shapes = ModelShapes.from_dict(
        json.loads((demo["onnx"] / "pi3_encoder.json").read_text())["shapes"]
    )
    specs = shapes.specs()
    precision = str(wrong.get("precision", "fp16"))
    for part in PARTS_GMOS:
        d = engine_dir(cache, f"{shapes.config_name}.{part}", precision)
        d.mkdir(parents=True, exist_ok=True)
        (d / ENGINE_FILE).write_bytes(b"stand-in plan")
        shapes_in = specs[part].input_shapes()
        if "input_shapes" in wrong and part == "pi3_encoder":
            shapes_in = {"images": [1, 3, 252, 252]}
        EngineManifest(
            model_name=f"{shapes.config_name}.{part}",
            onnx_sha256=str(wrong.get("onnx_sha256", onnx_sha256(demo["onnx"] / f"{part}.onnx"))),
            tensorrt_version=str(wrong.get("tensorrt_version", FAKE_GPU["tensorrt_version"])),
            compute_capability=str(wrong.get("compute_capability", FAKE_GPU["compute_capability"])),
            precision=precision,
            input_shapes=shapes_in,
            gpu_name=FAKE_GPU["gpu_name"],
        ).write(d / "manifest.json")


@pytest.mark.parametrize(
    "wrong, field",
    [
        ({"compute_capability": "8.9"}, "compute_capability"),  # other GPU
        ({"tensorrt_version": "11.4.0"}, "tensorrt_version"),  # other TensorRT
        ({"onnx_sha256": "0" * 64}, "onnx_sha256"),  # other model (stale engine)
        ({"precision": "fp32"}, "no fp16 engine"),  # other precision
        ({"input_shapes": True}, "input_shapes"),  # other shapes
    ],
)
def test_a_wrong_engine_is_refused_at_configure_and_not_rebuilt(
    demo, tmp_path, monkeypatch, wrong, field
) -> None:
    """Without a GPU the machine's TensorRT / GPU are stood in for (`tensorrt_runtime_info`);
    the manifest checks are the real ones."""
    from gmos_core.backends import trt_backend

    monkeypatch.setattr(trt_backend, "tensorrt_runtime_info", lambda device=0: dict(FAKE_GPU))
    cache = tmp_path / "engines"
    _fake_engine_cache(demo, cache, **wrong)
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    settings = RuntimeSettings(
        backend="tensorrt", onnx_dir=str(demo["onnx"]), engine_dir=str(cache), precision="fp16"
    )
    with pytest.raises(BackendRefused, match=field) as err:
        plan_backend(settings)
    assert "gmos-build-engines --onnx" in str(err.value)
    _refused_node(
        {
            "backend": "tensorrt",
            "onnx_dir": str(demo["onnx"]),
            "engine_dir": str(cache),
            "precision": "fp16",
        }
    )
    after = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    assert after == before  # nothing rebuilt or rewritten


def test_a_matching_engine_cache_passes_configure_and_names_what_runs(
    demo, tmp_path, monkeypatch
) -> None:
    from gmos_core.backends import trt_backend

    monkeypatch.setattr(trt_backend, "tensorrt_runtime_info", lambda device=0: dict(FAKE_GPU))
    _fake_engine_cache(demo, tmp_path / "engines")
    plan = plan_backend(
        RuntimeSettings(
            backend="tensorrt",
            onnx_dir=str(demo["onnx"]),
            engine_dir=str(tmp_path / "engines"),
            precision="fp16",
        )
    )
    assert plan.precision == "fp16" and set(plan.manifests) == set(PARTS_GMOS)
    lines = plan.manifest_lines()
    assert len(lines) == 4 and all("TensorRT 10.3.0 on Orin (sm 8.7)" in ln for ln in lines)


def test_without_tensorrt_the_tensorrt_backend_is_refused_by_name(demo, tmp_path) -> None:
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here: the refusal is for machines without it")
    except ImportError:
        pass
    with pytest.raises(BackendRefused, match="TensorRT is not installed"):
        plan_backend(
            RuntimeSettings(
                backend="tensorrt", onnx_dir=str(demo["onnx"]), engine_dir=str(tmp_path)
            )
        )


def test_the_clis_take_the_same_backend_options_and_refuse_the_same_way(demo, capsys) -> None:
    from gmos_ros.bag import main as bag_main
    from training.infer import main as infer_main

    missing = str(demo["root"] / "nope")
    assert (
        bag_main(["eval", str(demo["bag"]), "--backend", "onnxruntime", "--onnx-dir", missing]) == 2
    )
    assert "does not exist; export it: gmos-export" in capsys.readouterr().err
    frames = demo["root"] / "frames"
    frames.mkdir(exist_ok=True)
    args = ["--model", "gmos", "--input", str(frames), "--out", str(demo["root"] / "inf")]
    assert infer_main([*args, "--backend", "tensorrt", "--onnx-dir", str(demo["onnx"])]) == 2
    assert "engine_dir" in capsys.readouterr().err
    assert infer_main([*args, "--backend", "onnxruntime", "--onnx-dir", missing]) == 2
    assert "gmos-export" in capsys.readouterr().err
