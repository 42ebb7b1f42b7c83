"""SAM2 image features through the installed ``sam2`` package (SAM2.1 hiera_t, random weights).

One 1024x1024 hiera_t forward costs ~1.6 s on 2 cores; this file does two.
"""

from __future__ import annotations

import pytest
import torch

from gmos_core.models.checkpoints import CheckpointError
from gmos_core.models.sam2_features import Sam2FeatureExtractor, Sam2Features


def _clone(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_clone(v) for v in obj)
    return obj


def _assert_equal(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_equal(a[k], b[k])
    else:
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_equal(x, y)


@pytest.fixture(scope="module")
def tiny_run():
    """A randomly initialised hiera_t extractor, one image, its features, and a copy of the raw
    ``forward_image`` output taken the moment it was produced."""
    torch.manual_seed(0)
    ext = Sam2FeatureExtractor("tiny", device="cpu")
    seen = {}
    original = ext.sam_model.forward_image

    def spy(img):
        out = original(img)
        seen["backbone_out"] = _clone(out)
        return out

    ext.sam_model.forward_image = spy
    img = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats = ext(img)
    del ext.sam_model.forward_image  # back to the bound method
    return ext, img, feats, seen["backbone_out"]


def test_shapes(tiny_run):
    ext, _, feats, _ = tiny_run
    assert isinstance(feats, Sam2Features)
    assert ext.image_size == 1024 and not ext.sam_model.training
    assert tuple(feats.bottleneck.shape) == (1, 256, 64, 64)
    assert [tuple(f.shape) for f in feats.high_res] == [(1, 32, 256, 256), (1, 64, 128, 128)]
    assert set(feats.backbone_out) == {"vision_features", "vision_pos_enc", "backbone_fpn"}


def test_backbone_out_untouched_and_bottleneck(tiny_run):
    ext, _, feats, before = tiny_run
    _assert_equal(before, feats.backbone_out)  # no in-place += no_mem_embed
    bo = feats.backbone_out
    no_mem = ext.sam_model.no_mem_embed.detach()
    assert tuple(no_mem.shape) == (1, 1, 256)
    assert no_mem.abs().max() > 0
    want = bo["vision_features"] + no_mem.reshape(1, 256, 1, 1)
    torch.testing.assert_close(feats.bottleneck, want, rtol=0, atol=0)
    # high-res maps are the conv_s0 / conv_s1-projected FPN levels 0 and 1.
    assert torch.equal(feats.high_res[0], bo["backbone_fpn"][0])
    assert torch.equal(feats.high_res[1], bo["backbone_fpn"][1])


def test_official_checkpoint_round_trip(tiny_run, tmp_path):
    ext, img, feats, _ = tiny_run
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": ext.sam_model.state_dict()}, path)  # the official .pt layout
    torch.manual_seed(123)  # a different random init, overwritten by the load
    loaded = Sam2FeatureExtractor("tiny", checkpoint=path, device="cpu")
    for k, v in ext.sam_model.state_dict().items():
        assert torch.equal(v, loaded.sam_model.state_dict()[k]), k
    with torch.no_grad():
        again = loaded(img)
    torch.testing.assert_close(again.bottleneck, feats.bottleneck, rtol=0, atol=0)
    for a, b in zip(again.high_res, feats.high_res):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_errors(tiny_run, tmp_path):
    ext, _, _, _ = tiny_run
    with pytest.raises(ValueError, match="unknown SAM2 size"):
        Sam2FeatureExtractor("huge")
    with pytest.raises(ValueError, match=r"\(B, 3, 1024, 1024\)"):
        ext(torch.zeros(1, 3, 512, 512))
    # A checkpoint of another size (here: only part of the keys) is rejected by name.
    sd = ext.sam_model.state_dict()
    partial = {k: v for i, (k, v) in enumerate(sd.items()) if i % 2}
    torch.save({"model": partial}, tmp_path / "part.pt")
    with pytest.raises(CheckpointError, match="missing key"):
        ext.load_checkpoint(tmp_path / "part.pt")
    wrong = dict(sd)
    wrong["no_mem_embed"] = torch.zeros(1, 1, 128)
    torch.save({"model": wrong}, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match=r"no_mem_embed: checkpoint \(1, 1, 128\) vs model"):
        ext.load_checkpoint(tmp_path / "wrong.pt")
    (tmp_path / "t.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="text file"):
        ext.load_checkpoint(tmp_path / "t.txt")


def test_hydra_overrides_small_model():
    # The project's micro config shrinks SAM2 through hydra overrides; features follow image_size.
    overrides = [
        "++model.image_size=256",
        "++model.image_encoder.trunk.embed_dim=32",
        "++model.image_encoder.trunk.num_heads=1",
        "++model.image_encoder.trunk.stages=[1,1,2,1]",
        "++model.image_encoder.trunk.global_att_blocks=[3]",
        "++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
        "++model.memory_attention.layer.self_attention.feat_sizes=[16,16]",
        "++model.memory_attention.layer.cross_attention.feat_sizes=[16,16]",
    ]
    ext = Sam2FeatureExtractor("tiny", overrides=overrides)
    assert ext.image_size == 256
    with torch.no_grad():
        feats = ext(torch.randn(2, 3, 256, 256))
    assert tuple(feats.bottleneck.shape) == (2, 256, 16, 16)
    assert [tuple(f.shape) for f in feats.high_res] == [(2, 32, 64, 64), (2, 64, 32, 32)]
    with pytest.raises(ValueError, match=r"\(B, 3, 256, 256\)"):
        ext(torch.zeros(1, 3, 1024, 1024))
