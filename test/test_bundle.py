"""One-file model bundles: round trip (float32 and float16) and named errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmos_core.bundle import BundleError, read_bundle, save_bundle
from gmos_core.models.build import build_frame_model, build_frame_model_from_bundle


@pytest.fixture(scope="module")
def micro_s():
    return build_frame_model("micro", "gmos_s", seed=3)


def test_bundle_round_trip_reproduces_outputs(micro_s, tmp_path) -> None:
    path = save_bundle(
        tmp_path / "m.safetensors",
        micro_s.pi3,
        micro_s.sam2.sam_model,
        micro_s.head,
        config="micro",
        variant="gmos_s",
        extra={"steps": "12"},
    )
    info, parts = read_bundle(path)
    assert info.variant == "gmos_s" and info.extra == {"steps": "12"}
    assert not any(k.startswith("memory_attention") for k in parts["sam2"])
    loaded = build_frame_model_from_bundle(path)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (64, 80, 3), dtype=np.uint8) for _ in range(5)]
    outs = []
    for m in (micro_s.frame_model(), loaded.frame_model()):
        geo = [m.geometry_features(f) for f in frames]
        seg = m.segmentation_features(frames[2])
        outs.append(m.predict(geo, seg, (64, 80)).fg_prob)
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-6)


def test_half_bundle_is_smaller_and_close(micro_s, tmp_path) -> None:
    full = save_bundle(
        tmp_path / "f.st", micro_s.pi3, micro_s.sam2.sam_model, micro_s.head, "micro", "gmos_s"
    )
    half = save_bundle(
        tmp_path / "h.st",
        micro_s.pi3,
        micro_s.sam2.sam_model,
        micro_s.head,
        "micro",
        "gmos_s",
        half=True,
    )
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = build_frame_model_from_bundle(half)
    w0 = micro_s.head.state_dict()["merge_projector.proj.weight"]
    w1 = loaded.head.state_dict()["merge_projector.proj.weight"]
    assert w1.dtype == torch.float32 and torch.allclose(w0, w1, atol=1e-3)


def test_bad_bundles_are_named(micro_s, tmp_path) -> None:
    txt = tmp_path / "x.safetensors"
    txt.write_text("not a bundle")
    with pytest.raises(BundleError, match="not a readable"):
        read_bundle(txt)
    from safetensors.torch import save_file

    other = tmp_path / "o.safetensors"
    save_file({"a": torch.zeros(2)}, str(other))
    with pytest.raises(BundleError, match="not a gmos bundle"):
        read_bundle(other)
    # a Gmos-S bundle declared as the proposer variant: head keys do not fit
    wrong = save_bundle(
        tmp_path / "w.st", micro_s.pi3, micro_s.sam2.sam_model, micro_s.head, "micro", "gmos"
    )
    with pytest.raises(BundleError, match="head"):
        build_frame_model_from_bundle(wrong)
