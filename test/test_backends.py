"""Backends against the torch reference (micro configuration): per part and end to end through
`BackendFrameModel.predict` and the streaming runtime. CUDA / TensorRT variants skip here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmos_core.backends import (
    PARTS,
    Backend,
    BackendError,
    BackendFrameModel,
    BackendUnavailable,
    ModelShapes,
    available_backends,
    make_backend,
)
from gmos_core.backends.torch_backend import TorchBackend
from gmos_core.models.build import GmosModelConfig, build_frame_model
from gmos_core.streaming import ForegroundPrediction, ProposalPrediction, StreamingSegmenter
from training.export.onnx_export import export_model_parts


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One intra-op thread: on the shared 2-core machines, two threads contend with other jobs
    and run ~10x slower; results do not depend on it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _frames(n: int, seed: int = 0, hw: tuple[int, int] = (128, 128)) -> list[np.ndarray]:
    """A textured square moving over a textured background (non-trivial features)."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(0, 255, (*hw, 3), dtype=np.uint8)
    out = []
    for t in range(n):
        f = bg.copy()
        f[40:80, 10 + 6 * t : 50 + 6 * t] = (220, 40, 40)
        out.append(f)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    cfg = GmosModelConfig.load("micro")
    gmos = build_frame_model(cfg, "gmos")
    gmos_s = build_frame_model(cfg, "gmos_s")
    # Random init gives 16 near-identical object queries (std 1e-6), whose top-k order is decided
    # by float noise; spread them so that the proposal order is a property of the model.
    with torch.no_grad():
        torch.manual_seed(3)
        gmos.head.obj_token.normal_(0.0, 1.0)
    shapes = ModelShapes.from_config(cfg)
    out = tmp_path_factory.mktemp("onnx_backends")
    export_model_parts(
        shapes,
        out,
        pi3=gmos.pi3,
        sam2=gmos.sam2,
        gmos_s_head=gmos_s.head,
        gmos_head=gmos.head,
        check=False,
    )
    torch_b = TorchBackend(shapes, gmos.pi3, gmos.sam2, gmos_s.head, gmos.head)
    ort_b = make_backend("onnxruntime", onnx_dir=out, provider="cpu", threads=1)
    return {
        "cfg": cfg,
        "gmos": gmos,
        "gmos_s": gmos_s,
        "shapes": shapes,
        "dir": out,
        "torch": torch_b,
        "ort": ort_b,
    }


def _close(a: np.ndarray, b: np.ndarray, rel: float = 1e-4) -> float:
    diff = float(np.abs(a - b).max())
    assert diff <= rel * (1.0 + float(np.abs(b).max())), diff
    return diff


def test_backends_implement_the_protocol(models):
    for b in (models["torch"], models["ort"]):
        assert isinstance(b, Backend)
        assert set(b.parts) == set(PARTS)
        assert b.shapes == models["shapes"]
        assert b.describe()["backend"] == b.name


@pytest.mark.parametrize("part", PARTS)
def test_onnxruntime_matches_torch_per_part(models, part):
    spec = models["shapes"].specs()[part]
    inputs = spec.random_inputs(seed=7)
    ref = models["torch"].run(part, inputs)
    got = models["ort"].run(part, inputs)
    assert list(got) == list(spec.output_names)
    for name in spec.output_names:
        assert got[name].shape == spec.outputs[spec.output_names.index(name)].shape
        _close(got[name], ref[name])


# The torch backend against the torch modules composed by hand: test_frame_model.py (bitwise).
@pytest.mark.parametrize("backend", ["ort"])
def test_end_to_end_gmos_s_prediction_matches_torch_frame_model(models, backend):
    ref_model = models["gmos_s"].frame_model(frame_hw=(128, 128))
    fm = BackendFrameModel(models[backend], "gmos_s", models["cfg"].pi3.pixel_limit)
    frames = _frames(5)
    geo_ref = [ref_model.geometry_features(f) for f in frames]
    ref = ref_model.predict(geo_ref, ref_model.segmentation_features(frames[2]), (128, 128))
    got = fm.predict(
        [fm.geometry_features(f) for f in frames], fm.segmentation_features(frames[2]), (128, 128)
    )
    assert isinstance(got, ForegroundPrediction) and got.fg_prob.shape == (128, 128)
    _close(got.fg_prob, ref.fg_prob)
    assert abs(got.iou - ref.iou) < 1e-4
    # Thresholded masks agree except possibly for pixels within float noise of 0.5.
    near = np.abs(ref.fg_prob - 0.5) < 1e-4
    assert np.array_equal((got.fg_prob > 0.5)[~near], (ref.fg_prob > 0.5)[~near])


@pytest.mark.parametrize("backend", ["ort"])
def test_end_to_end_proposals_match_torch_frame_model(models, backend):
    ref_model = models["gmos"].frame_model(frame_hw=(128, 128))
    fm = BackendFrameModel(
        models[backend], "gmos", models["cfg"].pi3.pixel_limit, models["cfg"].top_k
    )
    frames = _frames(5, seed=1)
    ref = ref_model.predict(
        [ref_model.geometry_features(f) for f in frames],
        ref_model.segmentation_features(frames[2]),
        (128, 128),
    )
    got = fm.predict(
        [fm.geometry_features(f) for f in frames], fm.segmentation_features(frames[2]), (128, 128)
    )
    assert isinstance(got, ProposalPrediction)
    assert got.masks.shape == ref.masks.shape == (models["cfg"].top_k, 128, 128)
    _close(got.motion_prob, ref.motion_prob)
    _close(got.iou, ref.iou)
    agree = float((got.masks == ref.masks).mean())
    assert agree > 0.999, agree


def test_streaming_segmenter_runs_on_a_backend_frame_model(models):
    """The runtime cannot tell a backend model from the torch one: same ids, same encodes."""
    frames = _frames(6, seed=2)
    stamps = [int(i * 1e8) for i in range(6)]
    ort_fm = BackendFrameModel(models["ort"], "gmos_s", models["cfg"].pi3.pixel_limit)
    out = {}
    for key, model in (("ref", models["gmos_s"].frame_model()), ("ort", ort_fm)):
        seg = StreamingSegmenter(model, "gmos_s", span_s=0.4)
        results = [r for f, s in zip(frames, stamps) for r in seg.step(f, s)] + seg.flush()
        out[key] = (results, seg.stats)
    (ref, ref_stats), (got, got_stats) = out["ref"], out["ort"]
    assert [r.stamp_ns for r in got] == stamps
    assert got_stats.geometry_encodes == ref_stats.geometry_encodes == 6
    for a, b in zip(got, ref):
        _close(a.fg_prob, b.fg_prob)


def test_wrong_shapes_and_parts_are_named_errors(models):
    spec = models["shapes"].specs()["pi3_encoder"]
    bad = {"images": np.zeros((1, 3, 140, 140), np.float32)}
    for b in (models["torch"], models["ort"]):
        with pytest.raises(BackendError, match=r"images.*\(1, 3, 126, 126\)"):
            b.run("pi3_encoder", bad)
        with pytest.raises(BackendError, match="expected inputs"):
            b.run("pi3_encoder", {"x": spec.inputs[0].zeros()})
        with pytest.raises(BackendError, match="no part"):
            b.run("nope", {})
    fm = BackendFrameModel(models["ort"], "gmos_s", models["cfg"].pi3.pixel_limit)
    with pytest.raises(BackendError, match="gmos-export --frame-hw"):
        fm.geometry_features(np.zeros((96, 160, 3), np.uint8))
    with pytest.raises(BackendError, match="window has 3 frames"):
        g = fm.geometry_features(_frames(1)[0])
        fm.head_outputs([g] * 3, fm.segmentation_features(_frames(1)[0]))


def test_backend_frame_model_needs_the_head_of_its_variant(models, tmp_path):
    gmos = models["gmos"]
    only_s = TorchBackend(models["shapes"], gmos.pi3, gmos.sam2, gmos_s_head=models["gmos_s"].head)
    with pytest.raises(BackendError, match="gmos_head"):
        BackendFrameModel(only_s, "gmos", 16384)
    with pytest.raises(ValueError, match="variant"):
        BackendFrameModel(only_s, "other", 16384)


def test_make_backend_selects_by_name_and_explains_missing_runtimes(models):
    tb = make_backend("torch", model=models["gmos"], shapes=models["shapes"])
    assert tb.name == "torch" and "gmos_head" in tb.parts and "gmos_s_head" not in tb.parts
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("tflite")
    with pytest.raises(ValueError, match="onnx_dir"):
        make_backend("onnxruntime")
    avail = available_backends()
    assert avail["torch"] == "ok" and avail["onnxruntime"].startswith("ok")
    if not avail["tensorrt"].startswith("ok"):
        with pytest.raises(BackendUnavailable, match="TensorRT"):
            make_backend("tensorrt", engine_dir=models["dir"], onnx_dir=models["dir"])


def test_onnxruntime_provider_is_never_a_silent_cpu_fallback(models):
    import onnxruntime as ort

    for provider, ep in (
        ("cuda", "CUDAExecutionProvider"),
        ("tensorrt", "TensorrtExecutionProvider"),
    ):
        if ep in ort.get_available_providers():
            continue
        with pytest.raises(BackendUnavailable, match=f"{ep}.*not available.*onnxruntime-gpu"):
            make_backend("onnxruntime", onnx_dir=models["dir"], provider=provider)
    with pytest.raises(ValueError, match="provider"):
        make_backend("onnxruntime", onnx_dir=models["dir"], provider="vulkan")
    with pytest.raises(BackendError, match="gmos-export"):
        make_backend("onnxruntime", onnx_dir=models["dir"] / "missing")


def _ort_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (GPU-only test)")
def test_torch_frame_model_streams_on_cuda_like_cpu():  # pragma: no cover - GPU only
    """A CUDA model through the streaming runtime (post-processing copies to host) gives the
    CPU model's label maps. Found on an H200: `.numpy()` on CUDA logits crashed here."""
    from gmos_core.streaming.build import RuntimeSettings, build_segmenter

    cfg = GmosModelConfig.load("micro")
    frames = [
        np.random.default_rng(i).integers(0, 255, (96, 128, 3), dtype=np.uint8) for i in range(8)
    ]
    for variant, mode in (("gmos_s", "gmos_s"), ("gmos_online", "gmos")):
        torch.manual_seed(0)
        cpu = build_frame_model(cfg, mode)
        cuda = build_frame_model(cfg, mode, device="cuda")
        for part in ("pi3", "sam2", "head"):
            getattr(cuda, part).load_state_dict(getattr(cpu, part).state_dict())
        out = {}
        for name, model in (("cpu", cpu), ("cuda", cuda)):
            seg = build_segmenter(
                RuntimeSettings(variant=variant, device=name, span_s=0.4),
                model=model.frame_model(),
            )
            res = [r for i, f in enumerate(frames) for r in seg.step(f, i * 100_000_000)]
            out[name] = res + seg.flush()
        assert len(out["cpu"]) == len(out["cuda"]) == len(frames)
        agree = np.mean(
            [np.mean(a.instance_ids == b.instance_ids) for a, b in zip(out["cpu"], out["cuda"])]
        )
        assert agree > 0.99, (variant, agree)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (GPU-only test)")
def test_torch_cuda_backend_matches_cpu(models):  # pragma: no cover - GPU only
    cpu = models["torch"]
    gmos = build_frame_model(models["cfg"], "gmos", device="cuda")
    with torch.no_grad():
        gmos.head.load_state_dict(models["gmos"].head.state_dict())
    cuda = make_backend("torch", model=gmos, shapes=models["shapes"], device="cuda")
    for part in cuda.parts:
        inputs = models["shapes"].specs()[part].random_inputs()
        a, b = cuda.run(part, inputs), cpu.run(part, inputs)
        for k in a:
            _close(a[k], b[k], rel=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(
    not torch.cuda.is_available() or "CUDAExecutionProvider" not in _ort_providers(),
    reason="needs a CUDA GPU and onnxruntime-gpu with the CUDA provider (GPU-only test)",
)
def test_onnxruntime_cuda_provider_matches_torch(models):  # pragma: no cover - GPU only
    b = make_backend("onnxruntime", onnx_dir=models["dir"], provider="cuda")
    for part in b.parts:
        inputs = models["shapes"].specs()[part].random_inputs()
        a, ref = b.run(part, inputs), models["torch"].run(part, inputs)
        for k in a:
            _close(a[k], ref[k], rel=1e-3)


# ------------------------------------------------------------------ benchmark helpers (cheap)


def test_image_conversion_stand_in_honours_step_and_encoding():
    from training.bench import ImageMsg, image_msg_to_rgb, make_image_msg

    frame = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    msg = make_image_msg(frame, row_padding=11)
    assert msg.step == 7 * 3 + 11 and len(msg.data) == 5 * msg.step
    assert np.array_equal(image_msg_to_rgb(msg), frame)
    bgr = ImageMsg(5, 7, msg.step, "bgr8", msg.data)
    assert np.array_equal(image_msg_to_rgb(bgr), frame[..., ::-1])


def test_flop_count_includes_cpu_attention():
    from torch.nn import functional as F

    from training.bench import count_flops

    q = torch.randn(1, 2, 64, 16)
    flops = count_flops(lambda: F.scaled_dot_product_attention(q, q, q))
    # QK^T and AV: 2 matmuls of 2*L*L*d multiply-adds per head.
    assert flops == 2 * (2 * 2 * 64 * 64 * 16)


def test_message_building_and_scripted_propagator_step():
    from gmos_core.streaming import FrameResult
    from training.bench import (
        build_messages,
        live_tracking,
        propagation_available,
        scripted_proposals,
    )

    ids = np.zeros((6, 6), np.uint16)
    ids[1:3, 1:3] = 2
    from gmos_core.streaming import objects_from_ids

    res = FrameResult(5, 0, ids, objects_from_ids(ids, {2: True}, {2: 0.8}, {2: 0.7}))
    msg = build_messages(res)
    assert len(msg["ids"]) == 72 and msg["dynamic"].count(255) == 4
    assert msg["objects"] == [(2, True, 0.8, 0.7, (1, 1, 2, 2), 4)]
    if propagation_available() is not None:
        pytest.skip(f"propagator not available: {propagation_available()}")
    track = live_tracking()
    for i in range(3):
        frame = track.step(i, scripted_proposals(i, (64, 64), 4), None, (64, 64))
    assert frame.full_instance_map.shape == (64, 64) and any(o.moving for o in frame.objects)
    carried = track.step(3, None, None, (64, 64))
    assert carried.full_instance_map.shape == (64, 64)


def test_torch_backend_precision_runs_autocast_and_refuses_cpu_fp16(models):
    from gmos_core.backends.torch_backend import AUTOCAST_DTYPES

    assert set(AUTOCAST_DTYPES) == {"fp32", "bf16", "fp16"}
    cpu = models["torch"]
    bf16 = make_backend("torch", model=models["gmos"], shapes=models["shapes"], precision="bf16")
    assert bf16.precision == "bf16" and bf16.describe()["precision"] == "bf16"
    inputs = models["shapes"].specs()["sam2_encoder"].random_inputs()
    a, b = bf16.run("sam2_encoder", inputs), cpu.run("sam2_encoder", inputs)
    for k in a:
        assert a[k].dtype == np.float32  # outputs are always float32 arrays
        assert 0 < np.abs(a[k] - b[k]).max() < 0.2 * (1 + np.abs(b[k]).max())
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        make_backend("torch", model=models["gmos"], shapes=models["shapes"], precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        make_backend("torch", model=models["gmos"], shapes=models["shapes"], precision="int8")
