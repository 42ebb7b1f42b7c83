"""Operating points: validation, bundle metadata, runtime wiring, and `gmos-calibrate` picking
thresholds on validation clips (scripted models whose right answer is known)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gmos_core.bundle import BundleError, read_bundle, save_bundle, write_operating_point
from gmos_core.models.build import build_frame_model, build_frame_model_from_bundle
from gmos_core.models.postprocess import proposals_to_label_map
from gmos_core.operating_point import OperatingPoint
from gmos_core.streaming.build import RuntimeSettings, build_segmenter
from training.calibrate import (
    CalibrationError,
    RecordingModel,
    ValidationSequence,
    calibrate_gmos,
    calibrate_gmos_s,
    main,
    validation_split,
)

H = W = 32


def test_operating_point_checks_and_json_round_trip() -> None:
    op = OperatingPoint(fg_threshold=0.25, mask_logit_threshold=-0.5, source="test")
    assert OperatingPoint.from_json(op.to_json()) == op
    with pytest.raises(ValueError, match="fg_threshold"):
        OperatingPoint(fg_threshold=1.5)
    with pytest.raises(ValueError, match="iou_threshold"):
        OperatingPoint(iou_threshold=float("nan"))
    with pytest.raises(ValueError, match="unknown operating-point keys"):
        OperatingPoint.from_dict({"fg_treshold": 0.3})
    assert op.propagator_overrides() == {
        "motion_threshold": 0.5,
        "iou_threshold": 0.7,
        "snap_iou": 0.5,
        "use_velocity": True,
    }
    with pytest.raises(ValueError, match="snap_iou"):
        OperatingPoint(snap_iou=1.5)
    with pytest.raises(ValueError, match="use_velocity"):
        OperatingPoint.from_dict({"use_velocity": "no"})
    # Bundles calibrated before the tracker settings existed run the tracker as before.
    old = OperatingPoint.from_json('{"motion_threshold": 0.1, "iou_threshold": -1.0}')
    assert (old.snap_iou, old.use_velocity) == (0.5, True)


@pytest.fixture()
def tiny_s(tiny_model: str) -> Any:
    return build_frame_model(tiny_model, "gmos_s", seed=1), tiny_model


def _bundle(model: Any, cfg_path: Any, path: Any, variant: str, **kw: Any) -> Any:
    return save_bundle(
        path,
        model.pi3,
        model.sam2.sam_model,
        model.head,
        config=str(cfg_path),
        variant=variant,  # type: ignore[arg-type]
        **kw,
    )


def test_bundle_stores_the_operating_point_and_rewrites_only_metadata(tiny_s, tmp_path) -> None:
    model, cfg = tiny_s
    plain = _bundle(model, cfg, tmp_path / "a.st", "gmos_s")
    assert read_bundle(plain)[0].operating_point == OperatingPoint()  # paper values
    op = OperatingPoint(fg_threshold=0.2, source="unit test")
    out = write_operating_point(plain, tmp_path / "b.st", op)
    info, parts = read_bundle(out)
    assert info.operating_point == op
    _, before = read_bundle(plain)
    for part in ("pi3", "sam2", "head"):
        assert before[part].keys() == parts[part].keys()
        for k, v in before[part].items():
            assert torch.equal(v, parts[part][k]), k
    # In place, and a second time: still one valid bundle.
    write_operating_point(out, out, OperatingPoint(fg_threshold=0.3))
    assert read_bundle(out)[0].operating_point.fg_threshold == 0.3
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "bad.st"
    from safetensors import safe_open

    with safe_open(str(plain), framework="pt") as f:
        meta = dict(f.metadata())
    save_file(load_file(str(plain)), str(bad), metadata={**meta, "operating_point": "{oops"})
    with pytest.raises(BundleError, match="operating_point"):
        read_bundle(bad)


def test_runtime_runs_at_the_bundles_operating_point_unless_told_otherwise(
    tiny_s, tmp_path
) -> None:
    model, cfg = tiny_s
    path = _bundle(
        model, cfg, tmp_path / "c.st", "gmos_s", operating_point=OperatingPoint(fg_threshold=0.2)
    )
    loaded = build_frame_model_from_bundle(path)
    s = RuntimeSettings(variant="gmos_s", bundle=str(path))
    assert build_segmenter(s, model=loaded).fg_threshold == 0.2
    s.fg_threshold = 0.6
    assert build_segmenter(s, model=loaded).fg_threshold == 0.6
    # A model without an operating point (a scripted one) runs at the paper's values.
    assert build_segmenter(RuntimeSettings(variant="gmos_s"), model=object()).fg_threshold == 0.5  # type: ignore[arg-type]

    class Proposer:
        operating_point = OperatingPoint(motion_threshold=0.3, iou_threshold=0.1)

    seg = build_segmenter(RuntimeSettings(variant="gmos_online"), model=Proposer())  # type: ignore[arg-type]
    assert (seg.tracking.config.motion_threshold, seg.tracking.config.iou_threshold) == (0.3, 0.1)
    seg = build_segmenter(
        RuntimeSettings(variant="gmos_online", propagator={"iou_threshold": 0.9}),
        model=Proposer(),  # type: ignore[arg-type]
    )
    assert (seg.tracking.config.motion_threshold, seg.tracking.config.iou_threshold) == (0.3, 0.9)

    class CarryingProposer:
        operating_point = OperatingPoint(snap_iou=0.2, use_velocity=False)

    seg = build_segmenter(RuntimeSettings(variant="gmos_online"), model=CarryingProposer())  # type: ignore[arg-type]
    tracker = seg.tracking._get((H, W)).tracker
    assert (tracker.snap_iou, tracker.use_velocity) == (0.2, False)
    # The offline pass's trackers are made at the same settings.
    offline = seg.tracking._mask_iou_tracker()
    assert (offline.snap_iou, offline.use_velocity) == (0.2, False)


def test_mask_logit_threshold_of_the_label_map() -> None:
    logits = torch.tensor([[[-0.4, 0.3], [-2.0, 1.0]], [[-0.6, 0.1], [-3.0, 0.5]]])
    np.testing.assert_array_equal(proposals_to_label_map(logits, (2, 2)), [[0, 1], [0, 1]])
    np.testing.assert_array_equal(
        proposals_to_label_map(logits, (2, 2), threshold=-0.5), [[1, 1], [0, 1]]
    )


# ---------------------------------------------------------------- scripted validation clips
def _disc(t: int) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (yy - 16) ** 2 + (xx - 6 - t) ** 2 <= 25


def _clip(n: int = 12) -> ValidationSequence:
    frames = np.zeros((n, H, W, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(n)  # the scripted models read the frame index here
    labels = np.stack([_disc(t) for t in range(n)]).astype(np.uint16)
    return ValidationSequence("clip", frames, 10.0, labels, {1: [(0, n - 1)]})


class ScriptedForeground:
    """Gmos-S stand-in: probability 0.3 on the moving disc, 0.1 elsewhere (under-confident)."""

    def geometry_features(self, frame: np.ndarray) -> int:
        return int(frame[0, 0, 0])

    def segmentation_features(self, frame: np.ndarray) -> int:
        return int(frame[0, 0, 0])

    def predict(self, geometry: Any, segmentation: int, out_hw: tuple[int, int]) -> Any:
        from gmos_core.streaming import ForegroundPrediction

        return ForegroundPrediction(np.where(_disc(segmentation), 0.3, 0.1).astype(np.float32))


def test_calibrating_gmos_s_finds_the_threshold_between_the_two_levels() -> None:
    seqs = [_clip()]
    op, rows = calibrate_gmos_s(ScriptedForeground(), seqs, grid=(0.05, 0.2, 0.5))
    assert op.fg_threshold == 0.2
    by_t = {r["fg_threshold"]: r for r in rows}
    assert by_t[0.2]["J"] == pytest.approx(1.0) and by_t[0.5]["J"] == 0.0
    assert by_t[0.05]["J"] < 0.2  # everything foreground


class ScriptedProposer:
    """Proposer stand-in with raw head outputs: query 0 covers the disc with logit -0.3,
    motion probability 0.45 and predicted IoU 0.2 (all below the paper's thresholds); query 1
    is a static background blob with logit 1 and motion probability 0.1."""

    top_k = 2

    def geometry_features(self, frame: np.ndarray) -> int:
        return int(frame[0, 0, 0])

    def segmentation_features(self, frame: np.ndarray) -> int:
        return int(frame[0, 0, 0])

    def head_outputs(self, geometry: Any, segmentation: int) -> dict[str, torch.Tensor]:
        mask = torch.full((1, 2, H, W), -5.0)
        mask[0, 0][torch.from_numpy(_disc(segmentation))] = -0.3
        mask[0, 1, 24:, 24:] = 1.0
        motion = torch.logit(torch.tensor([[[0.45], [0.1]]]))
        return {"mask": mask, "motion_logits": motion, "iou_pred": torch.tensor([[[0.2], [0.9]]])}


def test_recording_replays_the_same_predictions_at_any_operating_point() -> None:
    from gmos_core.models.prediction import head_outputs_to_prediction

    model = ScriptedProposer()
    rec = RecordingModel(model)
    first = rec.predict([0], 3, (H, W))
    rec.replay(OperatingPoint(mask_logit_threshold=-0.5))
    again = rec.predict([None], None, (H, W))  # no features needed in replay
    direct = head_outputs_to_prediction(model.head_outputs(None, 3), (H, W), 2, -0.5)
    np.testing.assert_array_equal(again.masks, direct.masks)
    assert not first.masks[0].any() and again.masks[0].sum() == _disc(3).sum()


def test_calibrating_gmos_recovers_the_under_confident_proposer() -> None:
    seqs = [_clip()]
    op, rows = calibrate_gmos(
        ScriptedProposer(),
        seqs,
        fp_budget=0.5,
        mask_grid=(-0.5, 0.0),
        motion_grid=(0.4, 0.5),
        iou_grid=(0.1, 0.7),
    )
    assert (op.mask_logit_threshold, op.motion_threshold, op.iou_threshold) == (-0.5, 0.4, 0.1)
    best = max(rows, key=lambda r: r["mtIoU"] + r["J_mov"])
    assert best["J_mov"] > 0.9 and best["FP"] == 0.0
    paper = next(r for r in rows if (r["mask_logit_threshold"], r["iou_threshold"]) == (0.0, 0.7))
    assert paper["J_mov"] == 0.0


def _jitter_x(t: int) -> int:
    """Disc centre that moves right 1 px/frame with a ±2 px zig-zag: consecutive discs
    overlap at IoU 0.24-0.45, below the tracker's default snap IoU."""
    return 10 + t + (2 if t % 2 else -2)


def _jitter_disc(t: int) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (yy - 16) ** 2 + (xx - _jitter_x(t)) ** 2 <= 25


class JitterProposer(ScriptedProposer):
    """A confident moving proposal on a disc whose position is noisy (a micro proposer's)."""

    def head_outputs(self, geometry: Any, segmentation: int) -> dict[str, torch.Tensor]:
        mask = torch.full((1, 1, H, W), -5.0)
        mask[0, 0][torch.from_numpy(_jitter_disc(segmentation))] = 2.0
        motion = torch.logit(torch.tensor([[[0.9]]]))
        return {"mask": mask, "motion_logits": motion, "iou_pred": torch.tensor([[[0.9]]])}


def test_calibration_picks_the_tracker_setting_that_keeps_a_noisy_object_in_one_track() -> None:
    n = 12
    clip = _clip(n)
    clip.labels[:] = np.stack([_jitter_disc(t) for t in range(n)]).astype(np.uint16)
    one = dict(mask_grid=(0.0,), motion_grid=(0.5,), iou_grid=(0.5,))
    op, rows = calibrate_gmos(
        JitterProposer(), [clip], fp_budget=10.0, tracker_grid=((0.5, True), (0.1, False)), **one
    )
    by = {(r["snap_iou"], r["use_velocity"]): r for r in rows}
    # At the default the track loses the disc and a second object takes over (J_mov split);
    # carried in place and snapped at 0.1 one track follows it on every frame.
    assert by[(0.1, False)]["J_mov"] == pytest.approx(1.0, abs=1e-6)
    assert by[(0.5, True)]["J_mov"] < 0.9
    assert (op.snap_iou, op.use_velocity) == (0.1, False)


def test_calibration_refuses_the_held_out_seeds(tmp_path, capsys) -> None:
    with pytest.raises(CalibrationError, match="held-out"):
        validation_split(3, seed=899_990)
    rc = main(
        ["--bundle", str(tmp_path / "x.st"), "--out", str(tmp_path / "y.st"), "--seed", "900000"]
    )
    assert rc == 2 and "held-out" in capsys.readouterr().err


def test_baselines_on_validation_clips_and_the_comparison(tmp_path) -> None:
    from training.calibrate import beats_baselines, validation_baselines

    rows = validation_baselines(2, 800_000, tmp_path)
    assert set(rows) == {"frame_diff", "ego_residual"}
    for r in rows.values():
        assert 0.0 <= r["mtIoU"] <= 100.0 and 0.0 <= r["J_mov"] <= 100.0 and r["FP"] >= 0.0
    assert (tmp_path / "data").is_dir() and (tmp_path / "eval" / "frame_diff").is_dir()
    base = {
        "a": {"mtIoU": 1.0, "J_mov": 7.0, "FP": 1.5},
        "b": {"mtIoU": 0.5, "J_mov": 8.0, "FP": 2},
    }
    # Candidate scores are fractions (score_gmos), baselines x100 (the benchmark's table).
    assert beats_baselines({"mtIoU": 0.011, "J_mov": 0.079, "FP": 1.4}, base) == {
        "mtIoU": True,
        "J_mov": False,
        "FP": True,
    }
    with pytest.raises(CalibrationError, match="held-out"):
        validation_baselines(3, 899_990, tmp_path)


def test_fp_budget_tied_to_the_better_baseline(tmp_path) -> None:
    from training.calibrate import calibrate_bundle, fp_budget_from_baselines

    base = {"frame_diff": {"FP": 2.29}, "ego_residual": {"FP": 1.83}}
    assert fp_budget_from_baselines(base) == pytest.approx(0.999 * 1.83)
    assert fp_budget_from_baselines(base, 0.15) == pytest.approx(0.999 * 0.85 * 1.83)
    with pytest.raises(CalibrationError, match="--fp-margin must lie in"):
        fp_budget_from_baselines(base, 1.0)
    with pytest.raises(CalibrationError, match="baseline"):
        fp_budget_from_baselines({})
    with pytest.raises(CalibrationError, match="--baselines"):
        calibrate_bundle(
            Path(__file__).resolve().parents[1] / "gmos_core/assets/micro_gmos.safetensors",
            tmp_path / "o.st",
            1,
            800_000,
            0.0,
            tmp_path,
        )


def test_deduplicated_sweep_gives_the_same_rows_as_the_full_sweep() -> None:
    seqs = [_clip()]
    grid = dict(mask_grid=(-0.5, 0.0), motion_grid=(0.3, 0.4, 0.5), iou_grid=(-1.0, 0.1, 0.7))
    op_a, rows_a = calibrate_gmos(ScriptedProposer(), seqs, fp_budget=0.5, dedupe=True, **grid)
    op_b, rows_b = calibrate_gmos(ScriptedProposer(), seqs, fp_budget=0.5, dedupe=False, **grid)
    assert rows_a == rows_b and op_a == op_b
    assert len({(r["J_mov"], r["FP"], r["mtIoU"]) for r in rows_a}) > 1  # the grid does matter


def test_the_check_scores_the_chosen_point_on_clips_the_sweep_never_saw(tmp_path) -> None:
    from training.calibrate import _check_split, score_on_check_clips

    class Proposer(ScriptedProposer):
        mode = "gmos"

    seqs = [_clip()]
    grid = dict(mask_grid=(-0.5, 0.0), motion_grid=(0.4, 0.5), iou_grid=(0.1, 0.7))
    op, rows = calibrate_gmos(Proposer(), seqs, fp_budget=0.5, **grid)
    # At the same point on the same clips the check reproduces the sweep's row exactly ...
    check = score_on_check_clips(Proposer(), op, seqs, 810_000, tmp_path)
    chosen = next(
        r
        for r in rows
        if (r["mask_logit_threshold"], r["motion_threshold"], r["iou_threshold"])
        == (op.mask_logit_threshold, op.motion_threshold, op.iou_threshold)
    )
    assert check["chosen"] == chosen and check["num_seqs"] == 1
    # ... and at the paper's point (the disc's logit -0.3 < 0) it finds nothing.
    paper = score_on_check_clips(Proposer(), OperatingPoint(), seqs, 810_000, tmp_path)
    assert paper["chosen"]["J_mov"] == 0.0 < check["chosen"]["J_mov"]
    # Check clips must be new to the sweep and stay off the held-out split.
    with pytest.raises(CalibrationError, match="overlap"):
        _check_split(5, 800_100, 30, 800_000)
    with pytest.raises(CalibrationError, match="held-out"):
        _check_split(3, 899_990, 30, 800_000)
    assert len(_check_split(2, 810_000, 30, 800_000)) == 2


def test_the_chooser_prefers_points_that_beat_both_baselines_on_all_three() -> None:
    from training.calibrate import choose_point

    base = {
        "frame_diff": {"mtIoU": 0.29, "J_mov": 5.9, "FP": 2.29},
        "ego_residual": {"mtIoU": 0.43, "J_mov": 7.05, "FP": 1.84},
    }
    high_j = {"mtIoU": 0.0037, "J_mov": 0.123, "FP": 1.82}  # below the ego baseline's mtIoU
    beats = {"mtIoU": 0.0129, "J_mov": 0.100, "FP": 1.36}
    loud = {"mtIoU": 0.02, "J_mov": 0.2, "FP": 3.0}  # over the budget
    rows = [high_j, beats, loud]
    assert choose_point(rows, 1.83)[0] is high_j  # the sum alone: J_mov dominates
    best, why = choose_point(rows, 1.83, base)
    assert best is beats and "beating both baselines" in why
    # Nothing beats them: the budget rule; nothing within the budget: the lowest FP.
    assert choose_point([high_j, loud], 1.83, base)[0] is high_j
    assert choose_point([loud], 1.0, base)[0] is loud


def test_the_tracker_settings_to_search_are_named_on_the_command_line(capsys) -> None:
    from training.calibrate import build_parser

    base = ["--bundle", "b.st", "--out", "o.st"]
    args = build_parser().parse_args(
        [*base, "--tracker", "0.2:in_place", "--tracker", "0.5:velocity"]
    )
    assert args.tracker == [(0.2, False), (0.5, True)]
    assert build_parser().parse_args(base).tracker is None  # the default grid
    for bad in ("0.2", "1.5:in_place"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([*base, "--tracker", bad])
    err = capsys.readouterr().err
    assert "SNAP:velocity or SNAP:in_place" in err and "must lie in [0, 1]" in err
