"""`--threads` on every CLI that runs a model, its default, and clean device errors."""

from __future__ import annotations

import pytest
import torch

from gmos_core.compute import DeviceUnavailableError, apply_threads, check_device, default_threads


def test_default_threads_by_core_count():
    assert default_threads(1) == 1 and default_threads(4) == 1
    assert default_threads(5) == 0 and default_threads(64) == 0


def test_apply_threads():
    before = torch.get_num_threads()
    try:
        assert apply_threads(1) == 1
        assert apply_threads(0) == 1  # 0 leaves the current setting
        with pytest.raises(ValueError, match="--threads"):
            apply_threads(-1)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    "module",
    ["training.infer", "training.calibrate", "training.bench", "training.gpu_check"],
)
def test_every_model_cli_has_threads(module):
    import importlib

    parser = importlib.import_module(module).build_parser()
    assert parser.parse_args(_required(module)).threads == default_threads()
    assert parser.parse_args([*_required(module), "--threads", "3"]).threads == 3


def _required(module: str) -> list[str]:
    return {
        "training.infer": ["--model", "gmos", "--input", "x", "--out", "y"],
        "training.calibrate": ["--bundle", "b", "--out", "o"],
    }.get(module, [])


def test_bag_eval_has_threads():
    pytest.importorskip("rclpy")
    from gmos_ros.bag import build_parser

    assert build_parser().parse_args(["eval", "x.mcap"]).threads == default_threads()


def test_unavailable_device_is_a_clean_error(tmp_path, capsys):
    with pytest.raises(DeviceUnavailableError, match="not a torch device"):
        check_device("gpu7")
    assert check_device("cpu") == "cpu"
    if torch.cuda.is_available():
        pytest.skip("a CUDA device exists here: nothing unavailable to ask for")
    with pytest.raises(DeviceUnavailableError, match="device 'cuda'"):
        check_device("cuda")
    from training.infer import main

    (tmp_path / "frames").mkdir()
    rc = main(["--model", "gmos", "--input", str(tmp_path / "frames"), "--out", str(tmp_path)]
              + ["--device", "cuda", "--no-mp4"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "device 'cuda'" in err and "Traceback" not in err
    # The runtime checks too: the node's activate and gmos-bag eval get the same message.
    from gmos_core.errors import ModelSetupError
    from gmos_core.streaming.build import RuntimeSettings, load_frame_model

    with pytest.raises(ModelSetupError, match="device 'cuda'"):
        load_frame_model(RuntimeSettings(device="cuda"))
