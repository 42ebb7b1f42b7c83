"""The π³ heads on the runtime's decoder pass: loading (checkpoint, bundle), the backend frame
model's `predict_with_geometry`, and the streaming segmenter's `FrameResult.geometry`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from gmos_core.bundle import BundleError, read_bundle_info, save_bundle
from gmos_core.data.synthetic import SceneConfig, generate_scene
from gmos_core.models.build import (
    build_frame_model,
    build_frame_model_from_bundle,
    build_pi3,
)
from gmos_core.models.pi3_heads import Pi3HeadSizes
from gmos_core.streaming.build import DEFAULT_BUNDLES, RuntimeSettings, build_segmenter

SIZES = Pi3HeadSizes(width=64, depth=1, num_heads=4, camera_width=64)


@pytest.fixture(scope="module")
def heads_bundle(tmp_path_factory):
    m = build_frame_model("micro", "gmos", pi3_heads=SIZES)
    assert m.pi3.with_heads and not m.pi3.heads_loaded  # built, not loaded: not used
    path = tmp_path_factory.mktemp("b") / "heads.safetensors"
    return save_bundle(path, m.pi3, m.sam2.sam_model, m.head, "micro", "gmos")


@pytest.fixture(scope="module")
def scene():
    return generate_scene(SceneConfig(seed=5, num_frames=9, scene_kind="dynamic"))


def _stream(seg, s):
    out = []
    for t in range(s.num_frames):
        out += seg.step(s.frames[t], int(s.stamps_ns[t]))
    return out + seg.flush()


def test_bundle_with_heads_round_trip(heads_bundle, tmp_path):
    assert read_bundle_info(heads_bundle).pi3_heads == SIZES
    m = build_frame_model_from_bundle(heads_bundle)
    assert m.pi3.heads_loaded and m.frame_model().window_geometry
    # The heads' attention head count is in the metadata: without it the bundle is refused.
    tensors = load_file(str(heads_bundle))
    from safetensors import safe_open

    with safe_open(str(heads_bundle), framework="pt") as f:
        meta = {k: v for k, v in (f.metadata() or {}).items() if k != "pi3_heads"}
    bad = tmp_path / "no_meta.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(BundleError, match="pi3_heads"):
        build_frame_model_from_bundle(bad)


@pytest.mark.skipif(not DEFAULT_BUNDLES["gmos_online"].is_file(), reason="no shipped bundle")
def test_shipped_bundle_has_no_heads():
    m = build_frame_model_from_bundle(DEFAULT_BUNDLES["gmos_online"])
    assert not m.pi3.with_heads and not m.frame_model().window_geometry
    assert read_bundle_info(DEFAULT_BUNDLES["gmos_online"]).pi3_heads is None


def test_official_layout_checkpoint_with_heads_loads_them(tmp_path):
    torch.manual_seed(1)
    heads = Pi3HeadSizes(width=64, depth=1, num_heads=16, camera_width=64)  # 16: official count
    pi3 = build_pi3("micro", heads=heads)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in pi3.state_dict().items()}, str(path))
    m = build_frame_model("micro", "gmos_s", pi3_checkpoint=path)
    assert m.pi3.heads_loaded and m.frame_model().window_geometry
    torch.testing.assert_close(m.pi3.point_head.proj.weight, pi3.point_head.proj.weight)
    off = build_frame_model("micro", "gmos_s", pi3_checkpoint=path, with_pi3_heads=False)
    assert not off.pi3.with_heads and not off.frame_model().window_geometry


def test_geometry_comes_with_the_same_prediction_and_window_stamps(heads_bundle, scene):
    s = scene
    fm = build_frame_model_from_bundle(heads_bundle).frame_model()
    seg = build_segmenter(RuntimeSettings(variant="gmos_online"), model=fm)
    assert seg.window_geometry
    with_geom = _stream(seg, s)
    plain = build_segmenter(RuntimeSettings(variant="gmos_online"), model=fm)
    plain.window_geometry = False
    without = _stream(plain, s)
    assert len(with_geom) == len(without) == s.num_frames
    hw = fm.shapes.pi3_hw
    for a, b in zip(with_geom, without):
        # Same decoder features, so the same masks and motion states.
        assert b.geometry is None
        np.testing.assert_array_equal(a.instance_ids, b.instance_ids)
        assert a.objects == b.objects
        g = a.geometry
        assert g is not None and g.num_frames == 5
        assert g.local_points.shape == (5, *hw, 3) and g.conf.shape == (5, *hw)
        assert g.stamps_ns[g.center] == a.stamp_ns
        assert list(g.stamps_ns) == sorted(g.stamps_ns)
        r = g.camera_poses[:, :3, :3]
        np.testing.assert_allclose(
            r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape), atol=1e-5
        )
        assert (g.local_points[..., 2] > 0).all()


def test_proposer_stride_and_models_without_heads(heads_bundle, scene):
    fm = build_frame_model_from_bundle(heads_bundle).frame_model()
    seg = build_segmenter(RuntimeSettings(variant="gmos_online", proposer_stride=2), model=fm)
    res = _stream(seg, scene)
    # Geometry only where the window decoder ran (every 2nd frame).
    assert [r.geometry is not None for r in res] == [i % 2 == 0 for i in range(len(res))]
    no_heads = build_frame_model("micro", "gmos").frame_model()
    assert not no_heads.window_geometry
    seg = build_segmenter(RuntimeSettings(variant="gmos_online"), model=no_heads)
    assert not seg.window_geometry
    with pytest.raises(ValueError, match="does not run the π³ heads"):
        seg.window_geometry = True
