"""Model configurations (`gmos_core/configs/*.yaml`, `GmosModelConfig.load`)."""

import dataclasses

import pytest

from gmos_core.models.build import GmosModelConfig


def test_an_experiment_config_extends_micro_with_only_what_it_changes():
    micro, d3 = GmosModelConfig.load("micro"), GmosModelConfig.load("micro_d3")
    assert d3.name == "micro_d3" and d3.head.decoder_depth == 3 and micro.head.decoder_depth == 1
    # Everything else, the SAM2 overrides list included, comes from micro.
    same = dataclasses.replace(d3, name="micro", head=dataclasses.replace(d3.head, decoder_depth=1))
    assert same == micro


def test_extends_merges_sections_key_by_key_and_rejects_loops_and_unknown_keys(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "extends: micro\nhead: {num_obj_tokens: 4}\nwindow: {span_s: 1.0}\n"
    )
    a = GmosModelConfig.load(tmp_path / "a.yaml")
    micro = GmosModelConfig.load("micro")
    assert a.name == "a" and a.head.num_obj_tokens == 4 and a.span_s == 1.0
    assert a.head.decoder_depth == micro.head.decoder_depth and a.num_frames == micro.num_frames
    (tmp_path / "b.yaml").write_text(f"extends: {tmp_path / 'c.yaml'}\n")
    (tmp_path / "c.yaml").write_text(f"extends: {tmp_path / 'b.yaml'}\n")
    with pytest.raises(ValueError, match="loops"):
        GmosModelConfig.load(tmp_path / "b.yaml")
    (tmp_path / "d.yaml").write_text("extends: micro\nhead: {decoder_layers: 3}\n")
    with pytest.raises(ValueError, match="decoder_layers"):
        GmosModelConfig.load(tmp_path / "d.yaml")
    with pytest.raises(FileNotFoundError, match="not_a_config"):
        GmosModelConfig.load("not_a_config")
