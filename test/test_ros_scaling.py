"""max_input_pixels: the model sees at most that many pixels, results come back at input size
with boxes and areas exact on the published map."""

from __future__ import annotations

import numpy as np
import pytest

from gmos_core.streaming import FrameResult, objects_from_ids
from gmos_ros.scaling import downscale, model_size, upscale_result


@pytest.mark.parametrize(
    ("hw", "limit"), [((3000, 4000), 2_073_600), ((480, 640), 100_000), ((1080, 1920), 1_000_000)]
)
def test_model_size_keeps_aspect_under_the_limit(hw, limit):
    h, w = model_size(*hw, limit)
    assert h * w <= limit and h * w > 0.95 * limit
    assert abs(w / h - hw[1] / hw[0]) < 2.0 * hw[1] / hw[0] / min(h, w)
    assert model_size(*hw, 0) == hw and model_size(480, 640, 640 * 480) == (480, 640)


def test_upscaled_objects_agree_exactly_with_the_upscaled_map():
    rng = np.random.default_rng(0)
    ids = np.zeros((37, 53), np.uint16)
    ids[3:10, 4:20] = 1
    ids[20:36, 30:52] = 2
    ids[rng.random(ids.shape) < 0.02] = 3  # scattered pixels
    ids[0, 0] = 4  # a one-pixel object at the corner
    objs = objects_from_ids(ids, {1: True}, {1: 0.9}, {1: 0.8, 2: 0.7})
    small = FrameResult(stamp_ns=5, frame_index=0, instance_ids=ids, objects=objs,
                        fg_prob=(ids > 0).astype(np.float32))  # fmt: skip
    big = upscale_result(small, (300, 411))
    assert big.instance_ids.shape == (300, 411) and big.fg_prob.shape == (300, 411)
    assert big.objects == _measured_on(big.instance_ids, objs)
    assert set(np.unique(big.instance_ids)) == set(np.unique(ids))
    assert upscale_result(small, (37, 53)) is small
    with pytest.raises(ValueError, match="smaller"):
        upscale_result(small, (10, 10))


def _measured_on(ids: np.ndarray, objs) -> tuple:
    """`objs` with their boxes and areas measured on `ids` (`objects_from_ids`)."""
    return objects_from_ids(
        ids,
        {o.obj_id: o.moving for o in objs},
        {o.obj_id: o.motion_prob for o in objs},
        {o.obj_id: o.iou for o in objs},
    )


def test_propagator_results_upscale_exactly():
    """`upscale_result` maps the objects' own boxes, so it relies on them describing the id
    map exactly: true of the propagator's results too (gmos_online outputs, weight-free
    ego_residual variant on a rendered scene), at non-integer scales."""
    from gmos_core.data.synthetic import SceneConfig, generate_scene
    from gmos_core.streaming.build import RuntimeSettings, build_segmenter

    s = generate_scene(
        SceneConfig(seed=5, scene_kind="dynamic", num_frames=12, height=72, width=96)
    )
    seg = build_segmenter(RuntimeSettings(variant="ego_residual", span_s=0.2))
    results = []
    for t in range(s.num_frames):
        results += seg.step(s.frames[t], int(s.stamps_ns[t]))
    results += seg.flush()
    with_objects = [r for r in results if r.objects]
    assert len(with_objects) >= 4 and max(len(r.objects) for r in with_objects) >= 2
    for r in with_objects:
        assert r.objects == _measured_on(r.instance_ids, r.objects)  # the contract relied on
        for size in ((193, 251), (72 * 3, 96 * 3)):
            big = upscale_result(r, size)
            assert big.objects == _measured_on(big.instance_ids, r.objects)


def test_downscale_averages_area():
    frame = np.zeros((4, 4, 3), np.uint8)
    frame[:, :2] = 200
    out = downscale(frame, (2, 2))
    assert out.shape == (2, 2, 3) and out[0, 0, 0] == 200 and out[0, 1, 0] == 0
    assert downscale(frame, (4, 4)) is frame
