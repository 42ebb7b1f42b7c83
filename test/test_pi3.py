"""Pi3 encoder: official key layout, numerical parity with the fixtures, checkpoint loading."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from gmos_core.models.checkpoints import CheckpointError
from gmos_core.models.pi3 import (
    IGNORED_HEAD_PREFIXES,
    Pi3Decoder,
    Pi3Encoder,
    load_safetensors_file,
    pi3_positions,
)
from gmos_core.models.weight_fill import fill_module_, fill_rule, fill_value, keep_pi3_buffers

ATOL = RTOL = 1e-4


@pytest.fixture(scope="module")
def manifest(fixtures_dir):
    with open(fixtures_dir / "pi3_state_dict_manifest.json") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def parity(fixtures_dir):
    with np.load(fixtures_dir / "pi3_parity.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def parity_model():
    torch.manual_seed(0)
    model = Pi3Encoder(encoder_depth=2, decoder_depth=4).eval()
    fill_module_(model, skip=keep_pi3_buffers)
    return model


@pytest.fixture(scope="module")
def parity_run(parity_model, parity):
    """Run the parity model once on the fixture input, capturing intermediates with hooks."""
    model = parity_model
    cap: dict[str, torch.Tensor] = {}
    hooks = [
        model.encoder.patch_embed.register_forward_hook(
            lambda _m, _i, o: cap.__setitem__("dino_patch_embed", o)
        )
    ]
    for i, blk in enumerate(model.encoder.blocks):
        hooks.append(
            blk.register_forward_hook(
                lambda _m, _i, o, i=i: cap.__setitem__(f"dino_block{i}_out", o)
            )
        )
    for i, blk in enumerate(model.decoder):
        # Frame-wise blocks output (B*N, 5+hw, C), global ones (B, N*(5+hw), C): same memory order.
        hooks.append(
            blk.register_forward_hook(
                lambda _m, _i, o, i=i: cap.__setitem__(
                    f"decoder_block{i}_out", o.reshape(1, 5, 40, -1)
                )
            )
        )
    imgs = torch.from_numpy(parity["input_imgs"])
    with torch.no_grad():
        cap["pi3_hidden"] = model(imgs)
    for h in hooks:
        h.remove()
    with torch.no_grad():
        normed = (imgs.flatten(0, 1) - model.image_mean) / model.image_std
        feats = model.encoder.forward_features(normed)
    cap["dino_x_norm_clstoken"] = feats["x_norm_clstoken"]
    cap["dino_x_norm_regtokens"] = feats["x_norm_regtokens"]
    cap["dino_x_norm_patchtokens"] = feats["x_norm_patchtokens"]
    cap["dino_pos_embed_interp"] = model.pos_embed_for_grid(5, 7).detach()
    cap["decoder_pos"] = pi3_positions(5, 7)[None].expand(5, -1, -1)
    return cap


# --------------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------------


def test_paper_size_state_dict_matches_official_manifest(manifest):
    with torch.device("meta"):
        model = Pi3Encoder()  # 757.9 M parameters: meta device, nothing allocated
    mine = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    official = [(e["key"], e["shape"]) for e in manifest["keys"] if e["gmos_uses"]]
    assert len(official) == 994
    # Same keys, same shapes, same order as the official Pi3 state dict (heads removed).
    assert mine == official
    assert sum(v.numel() for v in model.state_dict().values()) == manifest["num_gmos_used"]
    buffers = {k for k, _ in model.named_buffers()}
    assert (
        buffers
        == {e["key"] for e in manifest["keys"] if e["is_buffer"]}
        == {"image_mean", "image_std"}
    )
    # Everything the manifest flags as unused is one of the ignored heads.
    unused = [e["key"] for e in manifest["keys"] if not e["gmos_uses"]]
    assert unused and all(k.startswith(IGNORED_HEAD_PREFIXES) for k in unused)


def test_meta_construction_of_decoder_and_encoder_parts():
    with torch.device("meta"):
        dec = Pi3Decoder()
    keys = list(dec.state_dict())
    assert keys[0] == "register_token" and keys[1] == "decoder.0.norm1.weight"
    assert "decoder.35.attn.q_norm.weight" in keys and "decoder.36.norm1.weight" not in keys


def test_bad_head_dim_is_rejected():
    with pytest.raises(ValueError, match="multiple of 4"):
        Pi3Encoder(encoder_depth=0, decoder_depth=1, embed_dim=36, num_heads=6)


# --------------------------------------------------------------------------------------------------
# Weight fill
# --------------------------------------------------------------------------------------------------


def test_fill_value_reference_formula():
    # The closed-form rule of PARITY.md §2, evaluated independently for one key of each kind.
    for key, shape in [
        ("a.weight", (4, 3, 2)),
        ("a.pos_embed", (1, 5, 3)),
        ("a.gamma", (7,)),
        ("a.bias", (7,)),
        ("motion_bias", ()),
    ]:
        v = np.random.default_rng(zlib.crc32(key.encode())).standard_normal(shape)
        if len(shape) >= 2:
            v = v / math.sqrt(np.prod(shape[1:])) if key.endswith("weight") else v
        elif key.endswith(("weight", "gamma")):
            v = 1 + 0.1 * v
        else:
            v = 0.02 * v
        got = fill_value(key, shape)
        assert got.dtype == np.float32 and got.shape == shape
        np.testing.assert_array_equal(got, np.asarray(v, dtype=np.float32))


def test_fill_matches_manifest(manifest, parity_model):
    entries = manifest["parity_model"]["keys"]
    sd = parity_model.state_dict()
    # Every key of the truncated official model that this model has (all but the heads).
    assert set(sd) == {k for k in entries if not k.startswith(IGNORED_HEAD_PREFIXES)}
    for key, tensor in sd.items():
        e = entries[key]
        assert list(tensor.shape) == e["shape"], key
        if e["kept_official"]:
            assert key in ("image_mean", "image_std")
        else:
            assert fill_rule(key, tensor.shape) == e["rule"], key
        flat = tensor.flatten()
        np.testing.assert_array_equal(flat[:3].numpy(), np.float32(e["first3"]), err_msg=key)
        assert math.isclose(flat.double().sum().item(), e["sum"], rel_tol=1e-9, abs_tol=1e-9), key
    # The heads' fill is covered by the same rule: check the small head tensors directly.
    for key, e in entries.items():
        if key.startswith(IGNORED_HEAD_PREFIXES) and math.prod(e["shape"]) <= 300_000:
            v = fill_value(key, e["shape"])
            np.testing.assert_array_equal(v.reshape(-1)[:3], np.float32(e["first3"]), err_msg=key)
            assert math.isclose(
                float(v.astype(np.float64).sum()), e["sum"], rel_tol=1e-9, abs_tol=1e-9
            )


def test_fill_module_skip_and_meta_error():
    m = Pi3Encoder(encoder_depth=1, decoder_depth=1, embed_dim=32, num_heads=2, pos_grid=4)
    fill_module_(m, skip=lambda k: k == "image_std")
    np.testing.assert_array_equal(
        m.image_mean.flatten().numpy(), fill_value("image_mean", (1, 3, 1, 1)).flatten()
    )
    np.testing.assert_allclose(m.image_std.flatten().numpy(), [0.229, 0.224, 0.225])
    with torch.device("meta"):
        meta = Pi3Encoder(encoder_depth=1, decoder_depth=1, embed_dim=32, num_heads=2, pos_grid=4)
    with pytest.raises(ValueError, match="meta device"):
        fill_module_(meta)


# --------------------------------------------------------------------------------------------------
# Numerical parity
# --------------------------------------------------------------------------------------------------


def test_parity_input_is_the_documented_seed(parity, manifest):
    spec = manifest["parity_input"]
    ref = np.random.default_rng(spec["seed"]).random(spec["shape"]).astype(np.float32)
    np.testing.assert_array_equal(parity["input_imgs"], ref)


PARITY_ARRAYS = [
    "dino_patch_embed",
    "dino_pos_embed_interp",
    "dino_block0_out",
    "dino_block1_out",
    "dino_x_norm_clstoken",
    "dino_x_norm_regtokens",
    "dino_x_norm_patchtokens",
    "decoder_block0_out",
    "decoder_block1_out",
    "decoder_block2_out",
    "decoder_block3_out",
    "pi3_hidden",
]


@pytest.mark.parametrize("name", PARITY_ARRAYS)
def test_parity_arrays(name, parity, parity_run):
    mine = parity_run[name].detach().numpy()
    ref = parity[name]
    assert mine.shape == ref.shape
    np.testing.assert_allclose(mine, ref, atol=ATOL, rtol=RTOL, err_msg=name)


def test_parity_decoder_positions(parity, parity_run):
    assert parity["decoder_pos"].dtype == np.int64
    np.testing.assert_array_equal(parity_run["decoder_pos"].numpy(), parity["decoder_pos"])


def test_split_path_and_fixed_grid_equal_forward(parity_model, parity, parity_run):
    model = parity_model
    imgs = torch.from_numpy(parity["input_imgs"])
    with torch.no_grad():
        tokens = model.encode_frames(imgs.flatten(0, 1))  # (5, 35, D)
        split = model.decode_window(tokens.reshape(1, 5, 35, -1), 5, 7)
        shared = model.window_decoder()(tokens.reshape(1, 5, 35, -1), 5, 7)
        model.set_fixed_grid(5, 7)
        try:
            assert "fixed_pos_embed" not in model.state_dict()
            fixed = model(imgs)
            with pytest.raises(ValueError, match="fixed grid"):
                model(torch.zeros(1, 2, 3, 70, 70))
        finally:
            model.clear_fixed_grid()
    full = parity_run["pi3_hidden"]
    assert torch.equal(split, full)
    assert torch.equal(shared, full)
    torch.testing.assert_close(fixed, full, atol=0, rtol=0)
    assert model.window_decoder().register_token is model.register_token


def test_pos_embed_skip_condition(monkeypatch):
    enc = Pi3Encoder(
        encoder_depth=0, decoder_depth=1, embed_dim=16, num_heads=1, pos_grid=3
    ).encoder
    torch.nn.init.normal_(enc.pos_embed)
    calls = []
    real = torch.nn.functional.interpolate

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "interpolate", spy)
    # Square G x G grid with square pixels: the official code uses pos_embed as is.
    assert torch.equal(enc.pos_embed_for_grid(3, 3), enc.pos_embed) and not calls
    # The official condition looks at pixel sizes: same patch count, non-square pixels -> resize.
    assert enc.pos_embed_for_grid(3, 3, pixel_hw=(42, 43)).shape == (1, 10, 16)
    assert calls == [{"size": (3, 3), "mode": "bicubic", "antialias": True, "align_corners": False}]
    assert enc.pos_embed_for_grid(2, 5).shape == (1, 11, 16) and len(calls) == 2


def test_input_errors(parity_model):
    model = parity_model
    with pytest.raises(ValueError, match="multiple of 14"):
        model(torch.zeros(1, 2, 3, 70, 100))
    with pytest.raises(ValueError, match=r"\(B, N, 3, H, W\)"):
        model(torch.zeros(2, 3, 70, 98))
    with pytest.raises(ValueError, match="grid is 5x6"):
        model.decode_window(torch.zeros(1, 2, 35, 1024), 5, 6)
    with pytest.raises(TypeError, match="floating-point"):
        model.encoder(torch.zeros(1, 3, 14, 14, dtype=torch.uint8))


# --------------------------------------------------------------------------------------------------
# Checkpoint round trip
# --------------------------------------------------------------------------------------------------

SMALL = {"embed_dim": 32, "num_heads": 2, "pos_grid": 5}


def _official_layout_checkpoint(manifest, enc_depth=2, dec_depth=6) -> dict[str, torch.Tensor]:
    """A small random state dict laid out like the official Pi3 file (heads included)."""
    g = torch.Generator().manual_seed(7)
    model = Pi3Encoder(encoder_depth=enc_depth, decoder_depth=dec_depth, **SMALL)
    sd = {k: torch.randn(v.shape, generator=g) for k, v in model.state_dict().items()}
    sd["image_mean"] = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    sd["image_std"] = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    for e in manifest["keys"]:
        if not e["gmos_uses"]:
            # Head keys with their official names and a small made-up shape of the same rank.
            shape = [min(d, 3) for d in e["shape"]]
            sd[e["key"]] = torch.randn(shape, generator=g)
    return sd


@pytest.fixture(scope="module")
def small_ckpt(manifest, tmp_path_factory):
    sd = _official_layout_checkpoint(manifest)
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_file(sd, str(path), metadata={"format": "pt"})  # what huggingface_hub's mixin writes
    return path, sd


def test_round_trip_official_layout(small_ckpt):
    path, sd = small_ckpt
    model, report = Pi3Encoder.from_safetensors(path, **SMALL)
    assert len(model.encoder.blocks) == 2 and len(model.decoder) == 6
    own = model.state_dict()
    assert set(report.loaded) == set(own)
    assert set(report.ignored) == {k for k in sd if k.startswith(IGNORED_HEAD_PREFIXES)}
    assert len(report.ignored) == 216 and not report.truncated
    for k, v in own.items():
        assert v.dtype == torch.float32 and v.device.type == "cpu"
        assert torch.equal(v, sd[k]), k
    assert not model.training
    # Head tensors are listed but not read.
    lazy = load_safetensors_file(path, skip_prefixes=IGNORED_HEAD_PREFIXES)
    assert lazy.keys() == sd.keys()
    assert lazy["camera_head.fc_rot.weight"].device.type == "meta"
    assert lazy["camera_head.fc_rot.weight"].shape == sd["camera_head.fc_rot.weight"].shape
    assert torch.equal(lazy["encoder.pos_embed"], sd["encoder.pos_embed"])
    out = model(torch.rand(1, 2, 3, 28, 42))
    assert out.shape == (1, 2, 2, 3, 32) and torch.isfinite(out).all()


def test_truncation_requires_opt_in(small_ckpt):
    path, sd = small_ckpt
    with pytest.raises(
        CheckpointError, match=r"decoder: checkpoint 6 blocks vs model 4.*truncate=True"
    ):
        Pi3Encoder.from_safetensors(path, decoder_depth=4, **SMALL)
    model, report = Pi3Encoder.from_safetensors(path, decoder_depth=4, truncate=True, **SMALL)
    assert len(model.decoder) == 4
    assert report.truncated and all(
        k.startswith(("decoder.4.", "decoder.5.")) for k in report.truncated
    )
    assert torch.equal(model.decoder[3].mlp.fc2.weight, sd["decoder.3.mlp.fc2.weight"])
    # More blocks in the model than in the file: missing keys, with the depth in the message.
    with pytest.raises(
        CheckpointError, match=r"missing .*decoder: checkpoint has 6 blocks, model 8"
    ):
        Pi3Encoder.from_safetensors(path, decoder_depth=8, **SMALL)


def test_load_into_existing_model_and_dtype(small_ckpt):
    _, sd = small_ckpt
    model = Pi3Encoder(encoder_depth=2, decoder_depth=6, **SMALL)
    model.set_fixed_grid(2, 3)
    half = {k: v.to(torch.bfloat16) for k, v in sd.items()}
    report = model.load_official_state_dict(half)
    assert len(report.loaded) == len(model.state_dict())
    assert model.encoder.pos_embed.dtype == torch.float32
    assert torch.equal(model.encoder.pos_embed, sd["encoder.pos_embed"].to(torch.bfloat16).float())
    # The precomputed position embedding follows the new weights.
    torch.testing.assert_close(model.encoder.fixed_pos_embed, model.pos_embed_for_grid(2, 3))


def test_state_dict_errors(small_ckpt):
    _, sd = small_ckpt
    model = Pi3Encoder(encoder_depth=2, decoder_depth=6, **SMALL)
    bad = dict(sd)
    bad["decoder.1.attn.qkv.weight"] = torch.zeros(96, 33)
    with pytest.raises(
        CheckpointError, match=r"'decoder.1.attn.qkv.weight'.*\(96, 33\).*\(96, 32\)"
    ):
        model.load_official_state_dict(bad)
    bad = dict(sd)
    del bad["encoder.norm.bias"], bad["register_token"]
    with pytest.raises(CheckpointError, match=r"missing 2 key.*encoder.norm.bias.*register_token"):
        model.load_official_state_dict(bad)
    bad = dict(sd)
    bad["encoder.mask_token"] = torch.zeros(1, 32)
    with pytest.raises(CheckpointError, match="unexpected key.*encoder.mask_token"):
        model.load_official_state_dict(bad)
    wide = Pi3Encoder(encoder_depth=2, decoder_depth=6, embed_dim=64, num_heads=4, pos_grid=5)
    with pytest.raises(CheckpointError, match="shape mismatch for 'register_token'"):
        wide.load_official_state_dict(sd)


def test_file_errors(small_ckpt, tmp_path):
    path, sd = small_ckpt
    pth = tmp_path / "model.pth"
    torch.save({"register_token": sd["register_token"]}, pth)
    with pytest.raises(CheckpointError, match="PyTorch zip/pickle"):
        Pi3Encoder.from_safetensors(pth)
    txt = tmp_path / "model.safetensors"
    txt.write_text("<html>404 not found</html>" * 10)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_safetensors_file(txt)
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match="truncated"):
        Pi3Encoder.from_safetensors(cut, **SMALL)
    cut.write_bytes(data[:100])
    with pytest.raises(CheckpointError, match="not a safetensors file|truncated"):
        load_safetensors_file(cut)
    with pytest.raises(CheckpointError, match="not found"):
        load_safetensors_file(tmp_path / "nope.safetensors")
