"""gmos_core.data: label PNGs, DAVIS / YouTube-VOS layouts, motion CSV, video, MoCA, MOS-I GT."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from gmos_core.data import (
    DAVIS_PALETTE,
    DataFormatError,
    DavisDataset,
    LabelReadError,
    MocaAnnotationError,
    TimeAnnoError,
    TimeAnnoRow,
    VideoReadError,
    YouTubeVOSDataset,
    mos_i_ground_truth,
    motion_matrix,
    read_frames,
    read_label_png,
    read_moca_annotations,
    read_time_anno,
    select_annotated,
    video_fps,
    write_indexed_png,
    write_mp4,
    write_time_anno,
)

# ---------------------------------------------------------------- palette / label PNGs


def test_palette_bit_pattern():
    assert DAVIS_PALETTE.shape == (256, 3) and DAVIS_PALETTE.dtype == np.uint8
    assert DAVIS_PALETTE[0].tolist() == [0, 0, 0]
    assert DAVIS_PALETTE[1].tolist() == [128, 0, 0]
    assert DAVIS_PALETTE[2].tolist() == [0, 128, 0]
    assert DAVIS_PALETTE[3].tolist() == [128, 128, 0]
    assert DAVIS_PALETTE[8].tolist() == [64, 0, 0]
    assert DAVIS_PALETTE[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in DAVIS_PALETTE.tolist()}) == 256  # every id has its own colour


def test_indexed_png_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 256, size=(13, 17), dtype=np.uint8)
    f = tmp_path / "a" / "00000.png"
    write_indexed_png(f, lab)
    with Image.open(f) as im:
        assert im.mode == "P"
        assert im.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
    np.testing.assert_array_equal(read_label_png(f), lab)
    # int64 input (an argmax) is accepted if it fits
    write_indexed_png(f, lab.astype(np.int64))
    np.testing.assert_array_equal(read_label_png(f), lab)
    with pytest.raises(ValueError, match="0, 255"):
        write_indexed_png(f, np.full((2, 2), 300, dtype=np.int32))


def test_l_mode_png_is_read(tmp_path):
    lab = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    Image.fromarray(lab, mode="L").save(tmp_path / "l.png")
    np.testing.assert_array_equal(read_label_png(tmp_path / "l.png"), lab)


def test_rgb_png_is_rejected(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8), mode="RGB").save(tmp_path / "rgb.png")
    with pytest.raises(LabelReadError, match=r"rgb\.png.*colour image"):
        read_label_png(tmp_path / "rgb.png")


def test_corrupt_png_names_the_file(tmp_path):
    good = tmp_path / "good.png"
    write_indexed_png(good, np.ones((64, 64), np.uint8) * np.arange(64, dtype=np.uint8))
    data = good.read_bytes()
    bad = tmp_path / "00007.png"
    bad.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(LabelReadError, match="00007.png"):
        read_label_png(bad)
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    with pytest.raises(LabelReadError, match="junk.png"):
        read_label_png(tmp_path / "junk.png")


# ---------------------------------------------------------------- DAVIS


def make_davis(root: Path, seqs: dict[str, np.ndarray], unsup: bool = True) -> None:
    """A tiny DAVIS root: ImageSets/2017/val.txt, JPEGImages, Annotations(_unsupervised)."""
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(seqs) + "\n")
    for seq, labels in seqs.items():
        for t, lab in enumerate(labels):
            img = np.zeros((*lab.shape, 3), np.uint8)
            img[..., 0] = lab * 40
            (root / "JPEGImages" / "480p" / seq).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg"), img)
            write_indexed_png(root / "Annotations" / "480p" / seq / f"{t:05d}.png", lab)
            if unsup:
                write_indexed_png(
                    root / "Annotations_unsupervised" / "480p" / seq / f"{t:05d}.png", lab
                )


def _labels(t: int, h: int = 12, w: int = 16, n_obj: int = 2) -> np.ndarray:
    lab = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        for k in range(1, n_obj + 1):
            lab[i, 2 * k : 2 * k + 3, i + 2 * k : i + 2 * k + 4] = k
    return lab


def test_davis_reader(tmp_path):
    a, b = _labels(4), _labels(3, n_obj=1)
    a[0, 0, 0] = 255  # void kept
    make_davis(tmp_path, {"bear": a, "car": b})
    ds = DavisDataset(tmp_path, split="val", task="unsupervised")
    assert ds.sequences() == ["bear", "car"]
    assert [p.name for p in ds.frames("bear")] == [f"{t:05d}.jpg" for t in range(4)]
    gt = ds.gt_labels("bear")
    assert gt.shape == (4, 12, 16) and gt.dtype == np.uint8 and gt[0, 0, 0] == 255
    np.testing.assert_array_equal(gt, a)
    assert ds.num_objects("bear") == 2

    res = tmp_path / "res"
    for seq, lab in (("bear", a), ("car", b)):
        for t, x in enumerate(lab):
            write_indexed_png(res / seq / f"{t:05d}.png", np.where(x == 255, 0, x))
    ds.check_results(res)
    np.testing.assert_array_equal(ds.read_results(res, "car"), b)


def test_davis_missing_frame_wrong_names_unknown_label(tmp_path):
    a = _labels(4)
    make_davis(tmp_path, {"bear": a, "car": a})
    ds = DavisDataset(tmp_path, task="unsupervised")
    res = tmp_path / "res"
    for t, x in enumerate(a):
        write_indexed_png(res / "bear" / f"{t:05d}.png", x)
        write_indexed_png(res / "Car" / f"{t:05d}.png", x)
    with pytest.raises(DataFormatError, match=r"lacks 1 of 2 sequence\(s\): car"):
        ds.check_results(res)
    (res / "bear" / "00002.png").unlink()
    with pytest.raises(DataFormatError, match=r"sequence bear, frame 00002.*missing"):
        ds.read_results(res, "bear")
    x = a[2].copy()
    x[0, 0] = 23
    write_indexed_png(res / "bear" / "00002.png", x)
    with pytest.raises(DataFormatError, match=r"sequence bear, frame 00002: label 23 exceeds.*20"):
        ds.read_results(res, "bear", max_label=20)


def test_davis_missing_image_set(tmp_path):
    make_davis(tmp_path, {"bear": _labels(2)})
    with pytest.raises(DataFormatError, match="ImageSets/2017/train.txt"):
        DavisDataset(tmp_path, split="train").sequences()


# ---------------------------------------------------------------- YouTube-VOS


def test_ytvos_sparse_annotation_mapping(tmp_path):
    split = tmp_path / "valid"
    allf = tmp_path / "valid_all_frames"
    seq = "0a1b2c3d4e"
    ann = ["00000", "00005", "00010"]
    meta = {"videos": {seq: {"objects": {"1": {"frames": ann}, "2": {"frames": ann[1:]}}}}}
    split.mkdir()
    (split / "meta.json").write_text(json.dumps(meta))
    for n in ann:
        (split / "JPEGImages" / seq).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(split / "JPEGImages" / seq / f"{n}.jpg"), np.zeros((8, 8, 3), np.uint8))
    write_indexed_png(split / "Annotations" / seq / "00000.png", np.ones((8, 8), np.uint8))
    (allf / "JPEGImages" / seq).mkdir(parents=True)
    for t in range(12):
        cv2.imwrite(str(allf / "JPEGImages" / seq / f"{t:05d}.jpg"), np.zeros((8, 8, 3), np.uint8))

    ds = YouTubeVOSDataset(split, all_frames_root=allf)
    assert ds.sequences() == [seq]
    assert ds.annotated_frames(seq) == ann
    assert len(ds.all_frames(seq)) == 12
    names, gt = ds.gt_labels(seq)
    assert names == ["00000"] and gt.shape == (1, 8, 8)

    # all-frame results (frame t has label value t) -> the annotated subset, in order
    res = tmp_path / "res"
    full = np.stack([np.full((8, 8), t, np.uint8) for t in range(12)])
    for t in range(12):
        write_indexed_png(res / seq / f"{t:05d}.png", full[t])
    sub = ds.read_results(res, seq)
    assert sub[:, 0, 0].tolist() == [0, 5, 10]
    sel = select_annotated(seq, ds.all_frames(seq), full, ann)
    np.testing.assert_array_equal(sel, sub)
    (res / seq / "00010.png").unlink()
    with pytest.raises(DataFormatError, match=rf"sequence {seq}, frame 00010"):
        ds.read_results(res, seq)
    with pytest.raises(DataFormatError, match=rf"sequence {seq}, frame 00010"):
        select_annotated(seq, ds.all_frames(seq)[:10], full[:10], ann)


# ---------------------------------------------------------------- motion-interval CSV


def test_real_gmos2k_csv(shared_dir):
    csv_path = shared_dir / "data" / "gmos2k_time_annotation.csv"
    if not csv_path.is_file():
        pytest.skip(f"{csv_path} not available")
    all_rows = read_time_anno(csv_path, drop_empty=False)
    # gmos2k_time_annotation.md: 2,210 rows; 115 empty dicts (85 ytvos train, 30 ytvos test).
    assert len(all_rows) == 2210 and all_rows.num_skipped == 0
    assert sum(1 for r in all_rows if not r.intervals) == 115
    assert len(read_time_anno(csv_path)) == 2210 - 115
    davis = read_time_anno(csv_path, dataset="davis17-im")
    ytvos = read_time_anno(csv_path, dataset="ytvos19-im")
    assert len(davis) == 19 and all(r.dataset == "davis" and r.split == "test" for r in davis)
    assert len(ytvos) == 261 - 30
    assert len(read_time_anno(csv_path, dataset="ytvos19-im", drop_empty=False)) == 261
    assert len(read_time_anno(csv_path, dataset="davis", split="train")) == 44
    # CSV order is kept and intervals are ints
    r0 = all_rows[0]
    assert r0.seq_name == "bear" and r0.intervals == {1: [(0, 81)]} and r0.line == 2
    assert (r0.ann_frames, r0.vid_frames) == (82, 82)
    box = next(r for r in all_rows if r.seq_name == "boxing-fisheye")
    assert box.intervals[3] == [(0, 71), (76, 86)]


def test_csv_round_trip_and_bad_rows(tmp_path):
    rows = [
        TimeAnnoRow("a", {1: [(0, 4)], 3: [(1, 2), (5, 9)]}, 10, 10, "davis", "test"),
        TimeAnnoRow("b", {}, 5, 25, "ytvos", "test"),
    ]
    f = tmp_path / "t.csv"
    write_time_anno(f, rows)
    assert (
        f.read_text().splitlines()[1]
        == "a,\"{'1': [[0, 4]], '3': [[1, 2], [5, 9]]}\",10,10,davis,test"
    )
    back = read_time_anno(f, drop_empty=False)
    assert [(r.seq_name, r.intervals, r.ann_frames) for r in back] == [
        ("a", rows[0].intervals, 10),
        ("b", {}, 5),
    ]

    bad = tmp_path / "bad.csv"
    bad.write_text(
        "seq_name,time_anno,ann_frames,vid_frames,dataset,split\n"
        "good,\"{'1': [[0, 3]]}\",4,4,davis,test\n"
        "broken,\"{'1': [[0, 3]\",4,4,davis,test\n"
        "evil,\"__import__('os').getcwd()\",4,4,davis,test\n"
        "other,\"{'1': [[0 3]]}\",4,4,ytvos,test\n"
    )
    with pytest.raises(TimeAnnoError, match=r"bad.csv:3: sequence 'broken'"):
        read_time_anno(bad, dataset="davis17-im")
    kept = read_time_anno(bad, dataset="davis17-im", on_error="skip")
    assert [r.seq_name for r in kept] == ["good"]
    assert [(ln, s) for ln, s, _ in kept.skipped] == [(3, "broken"), (4, "evil")]
    # a broken row of another dataset does not matter when it is filtered out (official order)
    assert len(read_time_anno(bad, dataset="ytvos19-im", on_error="skip").skipped) == 1

    for cell, msg in [
        ("{'21': [[0, 3]]}", "outside"),
        ("{'1': [[4, 3]]}", "start <= end"),
        ("{'1': [[-1, 3]]}", "start <= end"),
        ("[[0, 3]]", "must be a dict"),
    ]:
        bad.write_text(f'seq_name,time_anno\nq,"{cell}"\n')
        with pytest.raises(TimeAnnoError, match=msg):
            read_time_anno(bad)
    bad.write_text('seq_name,time_anno\nq,"{}"\nq,"{\'1\': [[0, 1]]}"\nq,"{\'1\': [[0, 1]]}"\n')
    with pytest.raises(TimeAnnoError, match="already listed on line 3"):
        read_time_anno(bad)


# ---------------------------------------------------------------- MOS-I ground truth


def test_mos_i_ground_truth():
    gt = np.zeros((6, 4, 5), np.uint8)
    gt[:, 0, 0] = 1
    gt[:, 1, 1] = 2  # id 2 never moving (no interval)
    gt[:, 2, 2] = 3
    intervals = {1: [(0, 1), (4, 10)], 3: [(2, 3)]}
    m = motion_matrix(intervals, 6)
    assert m.shape == (6, 20) and m.dtype == bool
    assert m[:, 0].tolist() == [True, True, False, False, True, True]  # clipped to T
    assert m[:, 2].tolist() == [False, False, True, True, False, False]
    g = mos_i_ground_truth(gt, intervals)
    assert g.shape == (6, 20, 4, 5) and g.dtype == bool
    assert g[:, 0, 0, 0].tolist() == m[:, 0].tolist()
    assert not g[:, 1].any()  # static object removed
    assert g[:, 2, 2, 2].tolist() == m[:, 2].tolist()
    assert g[:, 3:].sum() == 0 and g.sum() == m[:, 0].sum() + m[:, 2].sum()


# ---------------------------------------------------------------- video


def _frames(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    out = []
    for t in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[:, :, 0] = 200  # red: checks the BGR->RGB swap
        f[8:24, 4 * t : 4 * t + 16, 1] = 255
        out.append(f)
    return out


def test_mp4_round_trip(tmp_path):
    f = tmp_path / "v" / "clip.mp4"
    assert write_mp4(f, _frames(6), fps=12.0) == 6
    assert video_fps(f) == pytest.approx(12.0)
    got = list(read_frames(f))
    assert len(got) == 6 and got[0].shape == (48, 64, 3) and got[0].dtype == np.uint8
    assert abs(float(got[0][40:, :, 0].mean()) - 200) < 12 and got[0][40:, :, 2].mean() < 12
    with pytest.raises(ValueError, match="frame 2 is 32x48"):
        write_mp4(tmp_path / "bad.mp4", [*_frames(2), np.zeros((48, 32, 3), np.uint8)], 10)
    assert not (tmp_path / "bad.mp4").exists()


def test_image_folder_and_conversions(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    frames = _frames(3)
    for t, fr in enumerate(frames):
        cv2.imwrite(str(d / f"{t}.png"), fr[:, :, ::-1])
    cv2.imwrite(str(d / "10.png"), frames[0][:, :, ::-1])  # numeric order: 0,1,2,10
    (d / "notes.txt").write_text("ignored")
    got = list(read_frames(d))
    assert len(got) == 4 and video_fps(d) is None
    np.testing.assert_array_equal(got[1], frames[1])  # PNG is lossless: exact RGB

    g = tmp_path / "gray"
    g.mkdir()
    cv2.imwrite(str(g / "00000.png"), np.full((5, 6), 77, np.uint8))
    cv2.imwrite(str(g / "00001.png"), np.full((5, 6, 4), (10, 20, 30, 0), np.uint8))
    cv2.imwrite(str(g / "00002.png"), np.full((5, 6), 65535, np.uint16))
    a, b, c = read_frames(g)
    assert a.shape == (5, 6, 3) and (a == 77).all()
    assert b[0, 0].tolist() == [30, 20, 10]  # BGRA -> RGB, alpha dropped
    assert c.dtype == np.uint8 and (c == 255).all()


def test_frame_size_change_error(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "00000.jpg"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(d / "00001.jpg"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(d / "00002.jpg"), np.zeros((8, 10, 3), np.uint8))
    it = read_frames(d)
    next(it), next(it)
    with pytest.raises(VideoReadError, match=r"frame 2 \(00002.jpg\) is 10x8"):
        next(it)


def test_zero_length_video_and_empty_folder(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoReadError, match="empty.mp4"):
        list(read_frames(empty))
    (tmp_path / "none").mkdir()
    with pytest.raises(VideoReadError, match="no .*images"):
        list(read_frames(tmp_path / "none"))
    with pytest.raises(FileNotFoundError):
        read_frames(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="no frames"):
        write_mp4(tmp_path / "z.mp4", [], 10)


# ---------------------------------------------------------------- MoCA


def test_moca_annotations(tmp_path):
    f = tmp_path / "annotations.csv"
    f.write_text(
        ",file_list,spatial_coordinates,metadata\n"
        '2,/fox/00001.jpg,"[2,-3,5,10,20]",{}\n'
        "0,/fox/00000.jpg,\"[2,1,2,3,4]\",{'1': '1'}\n"
        "1,/fox/00002.jpg,[],{'1': '0'}\n"
        "3,/viper/00000.jpg,\"[2,482.5,225,507,191]\",{'1': '2'}\n"
    )
    ann = read_moca_annotations(f)
    assert list(ann) == ["fox", "viper"]
    assert sorted(ann["fox"]) == [0, 1]  # frame 2 has no box
    assert ann["fox"][1].motion == 1  # '{}' carries the previous label (in file-name order)
    assert ann["fox"][1].xyxy() == (0.0, 5.0, 10.0, 25.0)  # official clamp quirk
    assert ann["viper"][0].x == 482.5 and ann["viper"][0].motion == 2

    f.write_text(',file_list,spatial_coordinates,metadata\n0,/fox/00000.jpg,"[2,1,2]",{}\n')
    with pytest.raises(MocaAnnotationError, match=r"annotations.csv:2"):
        read_moca_annotations(f)
