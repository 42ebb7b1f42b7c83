"""Checkpoint loading/saving in the official formats, and a clear error for every bad input."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from gmos_core.models.checkpoints import (
    CheckpointError,
    load_gmos_checkpoint,
    load_sam2_checkpoint_state,
    save_gmos_checkpoint,
)
from gmos_core.models.gmos import GmosProposer, GmosS
from gmos_core.models.weight_fill import fill_module_

SMALL = dict(embed_dim=32, pi3_dim=16, sam_dim=16, grid=4, encoder_depth=1, num_heads=2, mlp_dim=32)


def _proposer() -> GmosProposer:
    m = GmosProposer(**SMALL, decoder_depth=1, num_obj_tokens=4)
    fill_module_(m)
    return m


def _gmos_s() -> GmosS:
    m = GmosS(**SMALL)
    fill_module_(m)
    return m


def _assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


class NotAllowed:
    """An arbitrary class: a weights-only load must refuse to rebuild it."""


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("make", [_proposer, _gmos_s])
@pytest.mark.parametrize("ddp_prefix", [False, True])
def test_gmos_round_trip(tmp_path, make, ddp_prefix):
    src = make()
    path = tmp_path / "ckpt.pth"
    if ddp_prefix:
        # What DataParallel / DDP training writes, plus the usual extra entries.
        sd = OrderedDict(("module." + k, v) for k, v in src.state_dict().items())
        torch.save({"model_state_dict": sd, "epoch": 3, "optimizer_state_dict": {}}, path)
    else:
        assert save_gmos_checkpoint(src, path) == [path]
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert list(raw)[0] == "model_state_dict"

    dst = type(src)(
        **SMALL, **({"decoder_depth": 1, "num_obj_tokens": 4} if make is _proposer else {})
    )
    report = load_gmos_checkpoint(dst, path)
    _assert_same(src, dst)
    assert report.missing == [] and report.unexpected == []
    assert report.ignored == (["epoch", "optimizer_state_dict"] if ddp_prefix else [])


def test_round_trip_into_meta_model_and_safetensors(tmp_path):
    from safetensors.torch import load_file

    src = _proposer()
    written = save_gmos_checkpoint(src, tmp_path / "sub" / "p.pth", safetensors=True)
    assert [p.name for p in written] == ["p.pth", "p.safetensors"]
    st = load_file(str(written[1]))
    assert st.keys() == src.state_dict().keys()
    assert torch.equal(st["motion_bias"], src.motion_bias.detach())  # 0-d survives

    with torch.device("meta"):
        dst = GmosProposer(**SMALL, decoder_depth=1, num_obj_tokens=4)
    load_gmos_checkpoint(dst, written[0])
    assert not any(p.is_meta for p in dst.parameters())
    _assert_same(src, dst)


def test_unexpected_keys_are_reported(tmp_path):
    src = _gmos_s()
    sd = src.state_dict()
    sd["extra.head.weight"] = torch.zeros(2)
    torch.save({"model_state_dict": sd}, tmp_path / "x.pth")
    report = load_gmos_checkpoint(GmosS(**SMALL), tmp_path / "x.pth")
    assert report.unexpected == ["extra.head.weight"]


def test_sam2_round_trip(tmp_path):
    sd = {
        "no_mem_embed": torch.randn(1, 1, 8),
        "image_encoder.neck.convs.0.conv.bias": torch.randn(8),
    }
    torch.save({"model": sd}, tmp_path / "sam.pt")
    got = load_sam2_checkpoint_state(tmp_path / "sam.pt")
    assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)

    save_gmos_checkpoint(_gmos_s(), tmp_path / "g.pth")
    with pytest.raises(CheckpointError, match="Gmos checkpoint"):
        load_sam2_checkpoint_state(tmp_path / "g.pth")
    with pytest.raises(CheckpointError, match="SAM2"):
        load_gmos_checkpoint(GmosS(**SMALL), tmp_path / "sam.pt")


# ---------------------------------------------------------------- bad inputs


def test_wrong_file_types(tmp_path):
    model = GmosS(**SMALL)
    save_gmos_checkpoint(_gmos_s(), tmp_path / "a.pth", safetensors=True)
    cases = {
        "a.safetensors": (None, "safetensors"),
        "notes.txt": (b"model_state_dict = weights\n", "text file"),
        "arr.npz": (None, "not a torch checkpoint"),
        "arr.npy": (None, r"\.npy"),
        "empty.pth": (b"", "empty"),
    }
    np.savez(tmp_path / "arr.npz", a=np.zeros(3))
    np.save(tmp_path / "arr.npy", np.zeros(3))
    for name, (content, msg) in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=msg):
            load_gmos_checkpoint(model, tmp_path / name)
        with pytest.raises(CheckpointError, match=msg):
            load_sam2_checkpoint_state(tmp_path / name)
    with pytest.raises(CheckpointError, match="not found"):
        load_gmos_checkpoint(model, tmp_path / "nope.pth")
    assert issubclass(CheckpointError, ValueError)


@pytest.mark.parametrize("zip_format", [True, False])
def test_truncated_file(tmp_path, zip_format):
    path = tmp_path / "full.pth"
    torch.save(
        {"model_state_dict": _gmos_s().state_dict()},
        path,
        _use_new_zipfile_serialization=zip_format,
    )
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 10):
        short = tmp_path / f"cut{cut}.pth"
        short.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            load_gmos_checkpoint(GmosS(**SMALL), short)


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model_state_dict": _gmos_s().state_dict(), "extra": NotAllowed()}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_gmos_checkpoint(GmosS(**SMALL), path)


def test_other_models_checkpoint(tmp_path):
    save_gmos_checkpoint(_gmos_s(), tmp_path / "s.pth")
    save_gmos_checkpoint(_proposer(), tmp_path / "p.pth")
    with pytest.raises(
        CheckpointError, match="is a GmosS checkpoint but the model is a GmosProposer"
    ):
        load_gmos_checkpoint(
            GmosProposer(**SMALL, decoder_depth=1, num_obj_tokens=4), tmp_path / "s.pth"
        )
    with pytest.raises(
        CheckpointError, match="is a GmosProposer checkpoint but the model is a GmosS"
    ):
        load_gmos_checkpoint(GmosS(**SMALL), tmp_path / "p.pth")


def test_shape_mismatch_names_key_and_shapes(tmp_path):
    save_gmos_checkpoint(_proposer(), tmp_path / "p.pth")
    bigger = GmosProposer(**SMALL, decoder_depth=1, num_obj_tokens=6)
    with pytest.raises(CheckpointError) as err:
        load_gmos_checkpoint(bigger, tmp_path / "p.pth")
    assert "obj_token: checkpoint (1, 4, 32) vs model (1, 6, 32)" in str(err.value)


def test_missing_keys_are_named(tmp_path):
    sd = _gmos_s().state_dict()
    del sd["fg_out.bias"], sd["trans_encoder.layers.0.norm2.weight"]
    torch.save({"model_state_dict": sd}, tmp_path / "m.pth")
    with pytest.raises(CheckpointError) as err:
        load_gmos_checkpoint(GmosS(**SMALL), tmp_path / "m.pth")
    msg = str(err.value)
    assert "lacks 2 parameter(s)" in msg
    assert "fg_out.bias" in msg and "trans_encoder.layers.0.norm2.weight" in msg


def test_wrong_layout(tmp_path):
    sd = _gmos_s().state_dict()
    torch.save(sd, tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match="bare state dict"):
        load_gmos_checkpoint(GmosS(**SMALL), tmp_path / "bare.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_gmos_checkpoint(GmosS(**SMALL), Path(tmp_path / "list.pth"))
