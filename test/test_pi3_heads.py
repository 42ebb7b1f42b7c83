"""π³ heads (point, confidence, camera): official key layout, parity with the official code, loading.

Fixture: ``test/fixtures/pi3_heads_parity.npz``, made by running the official ``yyfz/Pi3`` code at
``9fa3ddb3`` (``training/fixtures/make_pi3_heads_fixture.py``) with the PARITY.md weight fill on a
truncated model (2 DINOv2 blocks, 4 decoder blocks, 2 blocks per head transformer).

Tolerances (float32, CPU; the official run used 1 thread):
- confidence logits, camera poses, raw point-head outputs (x/z, y/z, log z): ``atol 1e-4``;
- local and world points (π³ exponentiates depth, values reach 1e4): ``|diff| <= 1e-4 · max(|p|, 1)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from gmos_core.models.checkpoints import CheckpointError
from gmos_core.models.layers import rope2d_cos_sin
from gmos_core.models.pi3 import IGNORED_HEAD_PREFIXES, Pi3Encoder, pi3_positions
from gmos_core.models.pi3_heads import run_heads, svd_orthogonalize
from gmos_core.models.weight_fill import fill_module_, keep_pi3_buffers

FIXTURE = Path(__file__).parent / "fixtures" / "pi3_heads_parity.npz"
ATOL = 1e-4
PTS_TOL = 1e-4


@pytest.fixture(scope="module")
def ref():
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = Pi3Encoder(encoder_depth=2, decoder_depth=4, with_heads=True, head_depth=2).eval()
    fill_module_(m, skip=keep_pi3_buffers)
    return m


def _check_geometry(geom, ref) -> None:
    lp = geom.local_points.numpy()
    r = ref["local_points"]
    assert lp.shape == r.shape == (1, 5, 70, 98, 3)
    # Raw head outputs: log depth and the normalised image-plane coordinates.
    np.testing.assert_allclose(np.log(lp[..., 2]), np.log(r[..., 2]), atol=ATOL, rtol=0)
    np.testing.assert_allclose(
        lp[..., :2] / lp[..., 2:], r[..., :2] / r[..., 2:], atol=ATOL, rtol=0
    )
    scale = np.maximum(np.linalg.norm(r, axis=-1, keepdims=True), 1.0)
    assert (np.abs(lp - r) / scale).max() <= PTS_TOL
    assert (np.abs(geom.points.numpy() - ref["points"]) / scale).max() <= PTS_TOL
    np.testing.assert_allclose(geom.conf.numpy(), ref["conf"][..., 0], atol=ATOL, rtol=0)
    np.testing.assert_allclose(geom.camera_poses.numpy(), ref["camera_poses"], atol=ATOL, rtol=0)


def test_key_manifest_equals_official(fixtures_dir):
    """All 1,210 official keys, same shapes, same order (the shared manifest of the full ``Pi3()``)."""
    with open(fixtures_dir / "pi3_state_dict_manifest.json") as f:
        official = [(e["key"], tuple(e["shape"])) for e in json.load(f)["keys"]]
    with torch.device("meta"):
        full = Pi3Encoder(with_heads=True)
    mine = [(k, tuple(v.shape)) for k, v in full.state_dict().items()]
    assert mine == official


def test_fixture_head_input_is_the_shared_decoder_output(ref, fixtures_dir):
    """The heads read concat(decoder block 2, block 3) of the encoder fixture (same official run)."""
    with np.load(fixtures_dir / "pi3_parity.npz") as p:
        cat = np.concatenate(
            [
                p["decoder_block2_out"].reshape(5, 40, -1),
                p["decoder_block3_out"].reshape(5, 40, -1),
            ],
            axis=-1,
        )
    np.testing.assert_allclose(ref["head_input"], cat, atol=ATOL, rtol=ATOL)


def test_heads_parity_on_official_head_input(model, ref):
    pos = pi3_positions(5, 7)
    rope = rope2d_cos_sin(pos, 64, 100.0, torch.float32)
    with torch.no_grad():
        geom = run_heads(model, torch.from_numpy(ref["head_input"]), pos, 100.0, 1, 5, 7, 5)
        cam = model.camera_decoder(torch.from_numpy(ref["head_input"]), rope)
        pts = model.point_decoder(torch.from_numpy(ref["head_input"]), rope)
    np.testing.assert_allclose(cam[..., :8].numpy(), ref["camera_decoder_out_ch0_7"], atol=ATOL)
    np.testing.assert_allclose(pts[..., :8].numpy(), ref["point_decoder_out_ch0_7"], atol=ATOL)
    _check_geometry(geom, ref)


def test_heads_parity_end_to_end(model, ref):
    """Images → DINOv2 → decoder → heads in one pass; the features are those of decode_window."""
    imgs = torch.from_numpy(ref["input_imgs"])
    with torch.no_grad():
        tokens = model.encode_frames(imgs.flatten(0, 1)).reshape(1, 5, 35, -1)
        feats, geom = model.decode_window_geometry(tokens, 5, 7)
        plain = model.decode_window(tokens, 5, 7)
    assert torch.equal(feats, plain)
    _check_geometry(geom, ref)


def test_svd_orthogonalize_gives_rotations():
    g = torch.Generator().manual_seed(3)
    rots = svd_orthogonalize(torch.randn(64, 9, generator=g))
    eye = torch.eye(3).expand(64, 3, 3)
    torch.testing.assert_close(rots @ rots.transpose(-1, -2), eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.det(rots), torch.ones(64), atol=1e-5, rtol=0)
    # A rotation (rows already unit norm) is its own nearest rotation.
    torch.testing.assert_close(svd_orthogonalize(rots), rots, atol=1e-5, rtol=0)


TINY = dict(
    encoder_depth=1,
    decoder_depth=2,
    embed_dim=64,
    num_heads=4,
    pos_grid=4,
    with_heads=True,
    head_depth=1,
    head_width=32,
    head_num_heads=4,
    camera_width=32,
)


def _tiny(seed: int) -> Pi3Encoder:
    torch.manual_seed(seed)
    m = Pi3Encoder(**TINY).eval()
    for p in m.parameters():  # non-trivial values everywhere (LayerScale, biases)
        p.data.normal_(0, 0.2)
    return m


def test_loading_with_and_without_heads(tmp_path):
    src = _tiny(1)
    sd = src.state_dict()
    x = torch.rand(1, 3, 3, 28, 42)
    tok = src.encode_frames(x.flatten(0, 1)).reshape(1, 3, 6, -1)
    with torch.no_grad():
        f_src, g_src = src.decode_window_geometry(tok, 2, 3)

    full = Pi3Encoder(**TINY)
    rep = full.load_official_state_dict(sd)
    assert rep.heads_loaded and full.heads_loaded and not rep.ignored
    with torch.no_grad():
        f, g = full.eval().decode_window_geometry(tok, 2, 3)
    torch.testing.assert_close(g.camera_poses, g_src.camera_poses)
    torch.testing.assert_close(g.local_points, g_src.local_points)
    heads = full.heads_module()  # shares the modules: the same outputs from the same input
    assert heads.camera_head is full.camera_head
    assert set(heads.state_dict()) == {
        k for k in full.state_dict() if k.startswith(IGNORED_HEAD_PREFIXES)
    }

    # A checkpoint without heads still loads (masks need only the trunk); heads are reported absent.
    trunk = {k: v for k, v in sd.items() if not k.startswith(IGNORED_HEAD_PREFIXES)}
    masks_only = Pi3Encoder(**TINY)
    rep = masks_only.load_official_state_dict(trunk)
    assert not rep.heads_loaded and not masks_only.heads_loaded
    torch.testing.assert_close(masks_only.eval().decode_window(tok, 2, 3), f_src)

    # A model without heads ignores (and lists) the checkpoint's heads.
    no_heads = Pi3Encoder(**{**TINY, "with_heads": False})
    rep = no_heads.load_official_state_dict(sd)
    assert rep.ignored and all(k.startswith(IGNORED_HEAD_PREFIXES) for k in rep.ignored)
    assert not any(k.startswith(IGNORED_HEAD_PREFIXES) for k in no_heads.state_dict())

    # Half a set of heads is an error naming the missing keys.
    partial = {k: v for k, v in sd.items() if not k.startswith("camera_head.")}
    with pytest.raises(CheckpointError, match="camera_head"):
        Pi3Encoder(**TINY).load_official_state_dict(partial)

    # From a file: with heads, and a heads-less file into a with-heads model (heads get storage).
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "full.safetensors"))
    save_file({k: v.contiguous() for k, v in trunk.items()}, str(tmp_path / "trunk.safetensors"))
    kw = {
        k: v for k, v in TINY.items() if k not in ("encoder_depth", "decoder_depth", "head_depth")
    }
    m1, r1 = Pi3Encoder.from_safetensors(tmp_path / "full.safetensors", **kw)
    assert r1.heads_loaded and m1.head_depth == 1
    with torch.no_grad():
        torch.testing.assert_close(m1.decode_window_geometry(tok, 2, 3)[1].points, g_src.points)
    m2, r2 = Pi3Encoder.from_safetensors(tmp_path / "trunk.safetensors", **kw)
    assert not r2.heads_loaded
    with torch.no_grad():
        f2, g2 = m2.decode_window_geometry(tok, 2, 3)
    torch.testing.assert_close(f2, f_src)
    assert torch.isfinite(g2.camera_poses).all()


def test_heads_reject_bad_input():
    m = _tiny(2)
    with pytest.raises(ValueError, match="registers"):
        run_heads(m, torch.zeros(3, 10, 128), pi3_positions(2, 3), 100.0, 1, 2, 3, 5)
    with pytest.raises(ValueError, match="without heads"):
        Pi3Encoder(**{**TINY, "with_heads": False}).decode_window_geometry(
            torch.zeros(1, 3, 6, 64), 2, 3
        )
