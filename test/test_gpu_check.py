"""`gmos-gpu-check` on the CPU: the comparison arithmetic, the per-part / chain parity with a
reduced precision, the stream parity of a trained bundle and the CLI's refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training import gpu_check


def test_compare_reports_relative_errors_and_decision_flips():
    ref = np.array([1.0, -2.0, 3.0, -4.0], dtype=np.float32)
    out = ref + np.array([0.0, 0.0, 0.0, 4.5], dtype=np.float32)  # last one flips sign
    e = gpu_check.compare(ref, out, decision=True)
    assert e["max_abs"] == pytest.approx(4.5)
    assert e["rel_max"] == pytest.approx(4.5 / 4.0)
    assert e["rel_rms"] == pytest.approx(np.sqrt(4.5**2 / 4) / np.sqrt(30 / 4))
    assert e["decision_flip_fraction"] == pytest.approx(0.25)
    assert gpu_check.compare(ref, ref)["max_abs"] == 0.0
    assert gpu_check.compare(ref, ref)["cosine"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        gpu_check.compare(ref, ref[:2])


def test_part_parity_fp32_is_exact_and_bf16_is_close_but_not_equal(tiny_model):
    res = gpu_check.part_parity(tiny_model, "cpu", ["fp32", "bf16"], seed=3, log=lambda s: None)
    assert set(res["precisions"]) == {"fp32", "bf16"}
    for kind in ("per_part", "chain"):
        fp32 = res["precisions"]["fp32"][kind]
        bf16 = res["precisions"]["bf16"][kind]
        assert set(fp32) == set(gpu_check.PARTS)
        # Same device, same kernels: fp32 reproduces the reference bit for bit.
        assert all(e["max_abs"] == 0.0 for p in fp32.values() for e in p.values())
        # bf16 (8-bit mantissa) moves every feature map, but only slightly.
        main = [bf16["pi3_decoder"]["features"], bf16["sam2_encoder"]["bottleneck"]]
        assert all(0.0 < e["rel_rms"] < 0.2 and e["cosine"] > 0.98 for e in main)
        assert bf16["gmos_head"]["mask"]["decision_flip_fraction"] < 0.1
    # The chain feeds each part its own (rounded) inputs: the head error can only grow.
    chain = res["precisions"]["bf16"]["chain"]["gmos_head"]["mask"]["rel_rms"]
    part = res["precisions"]["bf16"]["per_part"]["gmos_head"]["mask"]["rel_rms"]
    assert chain >= part * 0.5


def test_cli_writes_json_and_plot_and_streams_a_bundle_identically(tmp_path, tiny_model):
    rc = gpu_check.main(
        [
            "--device",
            "cpu",
            "--config",
            tiny_model,
            "--precisions",
            "fp32",
            "--bundles",
            str(gpu_check.DEFAULT_BUNDLES["gmos_s"]),
            "--clips",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert (tmp_path / "gpu_check.png").stat().st_size > 1000
    stream = res["stream"]["micro_gmos_s.safetensors"]
    assert stream["variant"] == "gmos_s" and stream["frames"] == 24
    assert stream["pixel_agreement_min"] == 1.0


def test_cli_refusals(tmp_path, capsys):
    assert gpu_check.main(["--device", "cpu", "--precisions", "fp16", "--out", str(tmp_path)]) == 2
    assert "fp16 needs a CUDA device" in capsys.readouterr().err
    missing = tmp_path / "nope.safetensors"
    assert (
        gpu_check.main(["--device", "cpu", "--bundles", str(missing), "--out", str(tmp_path)]) == 2
    )
    assert "not found" in capsys.readouterr().err
