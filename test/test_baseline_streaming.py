"""The weight-free baselines stream: frame t's labels leave as soon as its window is in, and
what they hold does not grow with the clip (gmos-baseline's memory is flat in video length)."""

from __future__ import annotations

import numpy as np
import pytest

from gmos_core.baselines_extra import (
    FrameDifferencingBaseline,
    InstanceLinker,
    iter_window_baseline,
    link_instances,
    run_window_baseline,
)
from gmos_core.data.synthetic import SceneConfig, generate_scene


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return generate_scene(SceneConfig(seed=11, height=64, width=80)).frames


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_streamed_windows_equal_the_whole_clip_and_read_ahead_is_bounded(clip, stride):
    base = FrameDifferencingBaseline()
    whole = run_window_baseline(clip, base.segment, stride)
    consumed = []
    read_ahead = []

    def frames():
        for t, f in enumerate(clip):
            consumed.append(t)
            yield f

    out = []
    for t, labels in enumerate(iter_window_baseline(frames(), base.segment, stride)):
        read_ahead.append(len(consumed) - 1 - t)  # frames read beyond the one yielded
        out.append(labels)
    assert np.array_equal(np.stack(out), whole)
    # Never more than the window's forward reach read ahead: memory is flat in clip length.
    assert max(read_ahead) <= 2 * stride
    assert read_ahead[0] == 2 * stride


def test_linker_one_frame_at_a_time_equals_the_clip_linker(clip):
    labels = run_window_baseline(clip, FrameDifferencingBaseline().segment, 1)
    tracks, motion = link_instances(labels)
    linker = InstanceLinker()
    for t in range(labels.shape[0]):
        tr, row = linker.step(labels[t])
        assert np.array_equal(tr, tracks[t]) and np.array_equal(row, motion[t])
    assert tracks.max() > 0  # the scene has moving objects: the comparison is not vacuous
