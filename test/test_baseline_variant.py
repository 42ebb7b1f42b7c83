"""The weight-free baselines as runtime variants (`variant: ego_residual` / `frame_diff`)."""

from __future__ import annotations

import numpy as np
import pytest

from gmos_core.baseline_model import BaselineFrameModel
from gmos_core.data.synthetic import SceneConfig, generate_scene
from gmos_core.errors import ModelSetupError
from gmos_core.streaming import FrameResult
from gmos_core.streaming.build import RuntimeSettings, build_segmenter, load_frame_model


@pytest.fixture(scope="module")
def scene():
    return generate_scene(SceneConfig(seed=900_007, num_frames=16, height=96, width=128, fps=10.0))


@pytest.mark.parametrize("variant", ["ego_residual", "frame_diff"])
def test_variant_streams_tracked_moving_objects(scene, variant):
    settings = RuntimeSettings(variant=variant, span_s=0.4)
    model = load_frame_model(settings)
    assert isinstance(model, BaselineFrameModel)
    seg = build_segmenter(settings, model=model)
    results: list[FrameResult] = []
    for t, f in enumerate(scene.frames):
        results += seg.step(f, int(t * 1e8))
    results += seg.flush()
    assert [r.stamp_ns for r in results] == [int(t * 1e8) for t in range(16)]
    assert all(r.instance_ids.shape == (96, 128) for r in results)
    found = [r for r in results if r.objects]
    assert found, "the baseline found nothing in a dynamic scene"
    # The objects are the mask's ids, flagged moving (the baseline calls everything it
    # finds moving), and ids persist across frames (tracked, not per-frame components).
    for r in found:
        assert {o.obj_id for o in r.objects} == {int(k) for k in np.unique(r.instance_ids) if k}
    ids_over_time = [{o.obj_id for o in r.objects} for r in found]
    assert any(a & b for a, b in zip(ids_over_time, ids_over_time[1:]))
    # Moving pixels overlap the ground truth's moving objects more than chance.
    moving_gt = np.stack(
        [
            np.isin(scene.instance_masks[t], scene.object_ids[scene.motion_state[t]])
            for t in range(16)
        ]
    )
    dyn = np.stack([r.dynamic_mask for r in results])
    assert moving_gt.any()
    assert (dyn & moving_gt).sum() / max(dyn.sum(), 1) > moving_gt.mean()


def test_variant_errors():
    with pytest.raises(ModelSetupError, match="fp32"):
        load_frame_model(RuntimeSettings(variant="ego_residual", precision="bf16"))
    with pytest.raises(ModelSetupError, match="mask_iou"):
        load_frame_model(RuntimeSettings(variant="frame_diff", tracker="sam2"))
    with pytest.raises(ValueError, match="ego_residual"):
        BaselineFrameModel("optical_flow")
