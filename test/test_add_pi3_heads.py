"""training.add_pi3_heads: trained π³ heads into a shipped micro bundle, masks unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gmos_core.bundle import read_bundle, read_bundle_info
from gmos_core.models.build import build_frame_model_from_bundle
from gmos_core.models.pi3_heads import Pi3HeadSizes, build_heads
from training.add_pi3_heads import add_pi3_heads, body_fp16_of_config, head_sizes_of_config, main
from training.resume import save_fp16_state

BUNDLE = Path("gmos_core/assets/micro_gmos_s.safetensors")


def _heads_state(path: Path, sizes: Pi3HeadSizes, seed: int = 5) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    heads = build_heads(128, sizes.width, sizes.depth, sizes.num_heads, sizes.camera_width, 14)
    sd = {f"{n}.{k}": v for n, m in heads.items() for k, v in m.state_dict().items()}
    save_fp16_state(path, {"pi3_heads": sd}, step=7)
    return sd


def _masks(bundle: Path) -> list[np.ndarray]:
    model = build_frame_model_from_bundle(bundle).frame_model()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (64, 80, 3), dtype=np.uint8) for _ in range(5)]
    geo = [model.geometry_features(f) for f in frames]
    out = model.predict(geo, model.segmentation_features(frames[2]), (64, 80))
    return [out.fg_prob]


def test_heads_enter_the_bundle_and_masks_stay_bitwise(tmp_path):
    sizes = head_sizes_of_config("pi3_heads_micro")
    sd = _heads_state(tmp_path / "heads.st", sizes)
    out = add_pi3_heads(
        BUNDLE,
        tmp_path / "heads.st",
        tmp_path / "b.st",
        sizes,
        body_fp16_of_config("pi3_heads_micro"),
    )
    info, parts = read_bundle(out)
    assert info.pi3_heads == sizes
    before_info, before = read_bundle(BUNDLE)
    assert before_info.pi3_heads is None
    # Every original tensor unchanged, the heads added in float16.
    for part in ("pi3", "sam2", "head"):
        for k, v in before[part].items():
            assert torch.equal(parts[part][k], v), k
    assert all(torch.equal(parts["pi3"][k], v.half()) for k, v in sd.items())
    model = build_frame_model_from_bundle(out)
    assert model.pi3.heads_loaded
    for a, b in zip(_masks(BUNDLE), _masks(out), strict=True):
        assert np.array_equal(a, b)


def test_bad_inputs_are_named(tmp_path):
    sizes = head_sizes_of_config("pi3_heads_micro")
    body = body_fp16_of_config("pi3_heads_micro")
    _heads_state(tmp_path / "heads.st", sizes)
    with pytest.raises(ValueError, match="overwrite the input"):
        add_pi3_heads(BUNDLE, tmp_path / "heads.st", BUNDLE, sizes, body)
    wrong = Pi3HeadSizes(width=sizes.width * 2, depth=sizes.depth, num_heads=sizes.num_heads,
                         camera_width=sizes.camera_width)  # fmt: skip
    with pytest.raises(ValueError, match="do not have sizes"):
        add_pi3_heads(BUNDLE, tmp_path / "heads.st", tmp_path / "o.st", wrong, body)
    # Heads trained on another body: refused.
    other_body = tmp_path / "body.st"
    info, parts = read_bundle(BUNDLE)
    save_fp16_state(other_body, {"pi3": {k: v + 1 for k, v in parts["pi3"].items()}}, step=1)
    with pytest.raises(ValueError, match="not the body"):
        add_pi3_heads(BUNDLE, tmp_path / "heads.st", tmp_path / "o.st", sizes, other_body)
    # A bundle that already has heads, and a state without heads.
    with_heads = add_pi3_heads(BUNDLE, tmp_path / "heads.st", tmp_path / "w.st", sizes, body)
    with pytest.raises(ValueError, match="already carries"):
        add_pi3_heads(with_heads, tmp_path / "heads.st", tmp_path / "o.st", sizes, body)
    with pytest.raises(ValueError, match="no pi3_heads"):
        add_pi3_heads(BUNDLE, other_body, tmp_path / "o.st", sizes, body)
    assert not (tmp_path / "o.st").exists()
    assert read_bundle_info(BUNDLE).pi3_heads is None  # the input is never touched
    code = main(
        ["--bundle", str(BUNDLE), "--heads", str(other_body), "--out", str(tmp_path / "o.st")]
    )
    assert code == 2
