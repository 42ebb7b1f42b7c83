"""Gmos heads: official state-dict layout, numerical parity with the official code, small sizes,
and proposal post-processing.

Parity fixtures: ``shared/fixtures/gmos_{proposer,s}_parity.npz`` (PARITY.md §4.3-4.5), weights from
the ``crc32-normal-v1`` fill (§2), inputs from the seeds of §3.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gmos_core.models.gmos import GmosProposer, GmosS
from gmos_core.models.gmos_layers import RotaryPositionEmbedding2D, grid_positions
from gmos_core.models.postprocess import (
    gmos_s_to_prob,
    proposals_to_label_map,
    select_proposals,
)
from gmos_core.models.weight_fill import fill_module_, fill_value

ATOL = RTOL = 1e-4

MICRO = dict(
    embed_dim=64,
    pi3_dim=64,
    sam_dim=32,
    grid=16,
    encoder_depth=1,
    num_heads=4,
    mlp_dim=128,
)


@pytest.fixture(scope="module")
def manifest(fixtures_dir):
    return json.loads((fixtures_dir / "gmos_models_manifest.json").read_text())


@pytest.fixture(scope="module")
def inputs(manifest):
    """The four seeded inputs, checked against the manifest's checksums."""
    out = {}
    for spec in manifest["inputs"]:
        rng = np.random.default_rng(spec["seed"])
        arr = rng.standard_normal(tuple(spec["shape"]), dtype=np.float64).astype(np.float32)
        assert hashlib.sha256(arr.astype("<f4").tobytes()).hexdigest() == spec["sha256_float32_le"]
        assert np.isclose(arr.sum(dtype=np.float64), spec["sum_float64"], rtol=1e-9)
        np.testing.assert_array_equal(arr.reshape(-1)[:3], np.float32(spec["first3"]))
        out[spec["name"]] = torch.from_numpy(arr)
    return out


def _filled(cls: type[torch.nn.Module]) -> torch.nn.Module:
    model = cls().eval()
    fill_module_(model)
    return model


def _capture(module: torch.nn.Module, store: dict, name: str) -> None:
    def hook(_mod, _inp, out):
        store[name] = out

    module.register_forward_hook(hook)


def _compare(mine: dict[str, torch.Tensor], ref: np.lib.npyio.NpzFile) -> dict[str, float]:
    diffs = {}
    for name in ref.files:
        if name == "mask_query_index":
            continue
        got = mine[name].detach().numpy()
        want = ref[name]
        assert got.shape == want.shape, (name, got.shape, want.shape)
        diffs[name] = float(np.abs(got.astype(np.float64) - want).max())
        if name == "mask_sum_per_query":
            assert np.allclose(got, want, rtol=1e-4, atol=0.0), name
        else:
            assert np.allclose(got, want, atol=ATOL, rtol=RTOL), (name, diffs[name])
    print("max |diff|:", json.dumps(diffs, indent=1))
    return diffs


# ---------------------------------------------------------------- state-dict layout


@pytest.mark.parametrize("cls, entry", [(GmosProposer, "GMOSProposer"), (GmosS, "GMOS_S")])
def test_state_dict_matches_manifest(manifest, cls, entry):
    with torch.device("meta"):
        model = cls()
    assert all(p.is_meta for p in model.parameters())  # built without allocating
    mine = {k: list(v.shape) for k, v in model.state_dict().items()}
    ref = {e["key"]: e["shape"] for e in manifest[entry]["keys"]}
    assert len(ref) == manifest[entry]["num_keys"]
    assert sorted(set(mine) - set(ref)) == []
    assert sorted(set(ref) - set(mine)) == []
    assert mine == ref
    assert sum(p.numel() for p in model.parameters()) == manifest[entry]["num_params"]
    assert all(v.dtype == torch.float32 for v in model.state_dict().values())


def test_fill_matches_manifest_checks(manifest):
    # A few entries of each rule: the fill is what makes the fixtures reproducible.
    for entry in ("GMOSProposer", "GMOS_S"):
        for e in manifest[entry]["keys"][:6] + manifest[entry]["keys"][-4:]:
            v = fill_value(e["key"], e["shape"])
            np.testing.assert_allclose(v.reshape(-1)[:3], e["first3"], rtol=1e-6)
            assert np.isclose(v.sum(dtype=np.float64), e["sum"], rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- numerical parity


@torch.no_grad()
def test_proposer_parity(fixtures_dir, inputs):
    ref = np.load(fixtures_dir / "gmos_proposer_parity.npz")
    model = _filled(GmosProposer)
    cap: dict = {}
    _capture(model.pi3_projector, cap, "pi3")
    _capture(model.merge_projector, cap, "merge")
    _capture(model.trans_encoder, cap, "enc")
    _capture(model.trans_decoder, cap, "dec")
    _capture(model.upsampling.output_hypernetwork_mlp, cap, "hyper")
    out = model(
        inputs["token"], inputs["sam_btn"], high_res_features=[inputs["feat_s0"], inputs["feat_s1"]]
    )
    mask = out["mask"]
    assert tuple(mask.shape) == (1, 100, 256, 256)
    mine = {
        "motion_logits": out["motion_logits"],
        "iou_pred": out["iou_pred"],
        "conf_pred": out["conf_pred"],
        "mask_logits_sel": mask[:, torch.from_numpy(ref["mask_query_index"])],
        "mask_logits_stride8": mask[:, :, ::8, ::8],
        "mask_sum_per_query": mask.double().sum(dim=(2, 3)),
        "pi3_projector_out_ch0_7": cap["pi3"][..., :8],
        "merge_projector_out_ch0_7": cap["merge"][..., :8],
        "encoder_out_ch0_7": cap["enc"][:, :8],
        "decoder_obj_tokens_out": cap["dec"][0],
        "decoder_dense_out_ch0_7": cap["dec"][1][:, :8],
        "hyper_in": cap["hyper"],
        "motion_weight": model.motion_weight,
        "motion_bias": model.motion_bias,
    }
    _compare(mine, ref)
    assert float(out["conf_pred"].min()) >= 1.0 and float(out["conf_pred"].max()) <= 5.0

    # Post-processing on the real output: top-20 by motion, label map at a non-square size.
    sel = select_proposals(out)
    assert tuple(sel.masks.shape) == (1, 20, 256, 256)
    order = torch.argsort(out["motion_logits"][0, :, 0], descending=True)[:20]
    assert torch.equal(sel.indices[0], order)
    torch.testing.assert_close(sel.masks[0], mask[0, order])
    torch.testing.assert_close(sel.motion[0], out["motion_logits"][0, order, 0].sigmoid())
    torch.testing.assert_close(sel.iou[0], out["iou_pred"][0, order, 0])
    labels = proposals_to_label_map(sel.masks[0], (378, 672))
    assert labels.shape == (378, 672) and labels.dtype == np.uint8
    up = F.interpolate(sel.masks, size=(378, 672), mode="bilinear", align_corners=False)[0]
    want = np.where(up.max(0).values.numpy() > 0, up.argmax(0).numpy() + 1, 0)
    np.testing.assert_array_equal(labels, want)


@torch.no_grad()
def test_gmos_s_parity(fixtures_dir, inputs):
    ref = np.load(fixtures_dir / "gmos_s_parity.npz")
    model = _filled(GmosS)
    cap: dict = {}
    _capture(model.trans_encoder, cap, "enc")
    out = model(
        inputs["token"], inputs["sam_btn"], high_res_features=[inputs["feat_s0"], inputs["feat_s1"]]
    )
    mine = {
        "fg_mask": out["fg_mask"],
        "iou_pred": out["iou_pred"],
        "conf_pred": out["conf_pred"],
        "encoder_out_ch0_7": cap["enc"][:, :8],
        "encoder_out_mean_hw": cap["enc"].flatten(2).mean(2),
    }
    _compare(mine, ref)

    prob, fg = gmos_s_to_prob(out["fg_mask"][0], (100, 150))
    want = F.interpolate(out["fg_mask"], size=(100, 150), mode="bilinear", align_corners=False)
    want = want[0, 0].sigmoid().numpy()
    assert prob.dtype == np.float32 and prob.shape == (100, 150)
    np.testing.assert_allclose(prob, want, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(fg, want > 0.5)


# ---------------------------------------------------------------- small sizes, errors, RoPE


def _micro_inputs(b: int = 2, h: int = 5, w: int = 7):
    g, c = MICRO["grid"], MICRO["embed_dim"]
    gen = torch.Generator().manual_seed(0)
    token = torch.randn(b, h, w, MICRO["pi3_dim"], generator=gen)
    sam = torch.randn(b, MICRO["sam_dim"], g, g, generator=gen)
    s0 = torch.randn(b, c // 8, 4 * g, 4 * g, generator=gen)
    s1 = torch.randn(b, c // 4, 2 * g, 2 * g, generator=gen)
    return token, sam, [s0, s1]


@torch.no_grad()
def test_micro_shapes():
    token, sam, hr = _micro_inputs()
    prop = GmosProposer(**MICRO, decoder_depth=1, num_obj_tokens=16).eval()
    out = prop(token, sam, hr)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "mask": (2, 16, 64, 64),
        "motion_logits": (2, 16, 1),
        "iou_pred": (2, 16, 1),
        "conf_pred": (2, 16, 1),
    }
    assert all(torch.isfinite(v).all() for v in out.values())
    # Batch elements are independent.
    single = prop(token[1:], sam[1:], [f[1:] for f in hr])
    torch.testing.assert_close(single["mask"][0], out["mask"][1], atol=1e-5, rtol=1e-5)

    gs = GmosS(**MICRO).eval()
    out_s = gs(token, sam, hr)
    assert {k: tuple(v.shape) for k, v in out_s.items()} == {
        "fg_mask": (2, 1, 64, 64),
        "iou_pred": (2, 1),
        "conf_pred": (2, 1),
    }
    sel = select_proposals(out, top_k=50)  # clipped to Q like the official min(20, Q)
    assert tuple(sel.masks.shape) == (2, 16, 64, 64)


def test_bad_inputs_are_named():
    token, sam, hr = _micro_inputs(b=1)
    model = GmosS(**MICRO).eval()
    with pytest.raises(ValueError, match="token"):
        model(token[..., :10], sam, hr)
    with pytest.raises(ValueError, match="sam_btn"):
        model(token, sam[:, :, :8], hr)
    with pytest.raises(ValueError, match="high_res_features"):
        model(token, sam, None)
    with pytest.raises(ValueError, match=r"feat_s1"):
        model(token, sam, [hr[0], hr[0]])
    with pytest.raises(ValueError, match="num_heads"):
        GmosProposer(embed_dim=64, num_heads=3)
    with pytest.raises(ValueError, match="out_hw"):
        proposals_to_label_map(torch.zeros(2, 4, 4), (0, 5))
    with pytest.raises(ValueError, match="fg_logits"):
        gmos_s_to_prob(torch.zeros(2, 4, 4), (8, 8))


def test_rope_layout():
    # y rotates the first half of the head, x the second; pairs are (i, i + d/2) within a half.
    rope = RotaryPositionEmbedding2D(base=56.25)
    x = torch.randn(1, 1, 3, 8)
    pos = torch.tensor([[0, 0], [2, 0], [0, 3]])
    out = rope(x, pos)
    torch.testing.assert_close(out[0, 0, 0], x[0, 0, 0])  # position (0, 0): identity
    torch.testing.assert_close(out[0, 0, 1, 4:], x[0, 0, 1, 4:])  # y only: x half untouched
    torch.testing.assert_close(out[0, 0, 2, :4], x[0, 0, 2, :4])  # x only: y half untouched
    # Second half at x=3: pair (4, 6) turns by 3 rad, pair (5, 7) by 3 / 56.25 ** 0.5.
    for i, f in ((4, 1.0), (5, 56.25**-0.5)):
        a = torch.tensor(3.0 * f)
        x1, x2 = x[0, 0, 2, i], x[0, 0, 2, i + 2]
        torch.testing.assert_close(out[0, 0, 2, i], x1 * a.cos() - x2 * a.sin())
        torch.testing.assert_close(out[0, 0, 2, i + 2], x2 * a.cos() + x1 * a.sin())
    assert grid_positions(2, 3).tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]


def test_label_map_rules():
    logits = torch.full((3, 4, 4), -1.0)
    logits[1, :2] = 2.0  # channel 1 wins the top rows
    logits[2, :, :2] = 3.0  # channel 2 wins the left columns (beats channel 1 there)
    labels = proposals_to_label_map(logits, (4, 4))  # same size: no resize
    expected = np.array([[3, 3, 2, 2], [3, 3, 2, 2], [3, 3, 0, 0], [3, 3, 0, 0]], np.uint8)
    np.testing.assert_array_equal(labels, expected)
    assert proposals_to_label_map(np.zeros((300, 2, 2), np.float32), (2, 2)).dtype == np.uint16
    # Ties go to the lower channel, like numpy.argmax in the official get_numpy_hard_max.
    assert proposals_to_label_map(torch.ones(2, 1, 1), (1, 1)).item() == 1
