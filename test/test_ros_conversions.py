"""Image / CompressedImage -> RGB, output builders, header bookkeeping."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("gmos_msgs.msg")

from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from gmos_core.data.video import read_frames  # noqa: E402
from gmos_core.models.preprocess import to_rgb_uint8  # noqa: E402
from gmos_core.streaming import FrameResult, StreamingSegmenter, objects_from_ids  # noqa: E402
from gmos_core.visualize import overlay_instances  # noqa: E402
from gmos_ros.conversions import (  # noqa: E402
    ConversionError,
    compressed_to_rgb,
    image_to_rgb,
    raw_to_rgb,
)
from gmos_ros.messages import (  # noqa: E402
    HeaderedStream,
    restamp_camera_info,
    result_masks,
    result_messages,
    stamp_to_ns,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def _image(arr: np.ndarray, encoding: str, step: int | None = None, big: bool = False) -> Image:
    msg = Image()
    msg.height, msg.width = arr.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = int(big)
    row = arr[0].tobytes()
    pad = 0 if step is None else step - len(row)
    msg.step = len(row) + pad
    msg.data = b"".join(r.tobytes() + b"\xee" * pad for r in arr)
    return msg


@pytest.mark.parametrize(
    ("encoding", "arr", "expected"),
    [
        ("rgb8", RGB, RGB),
        ("bgr8", RGB[..., ::-1].copy(), RGB),
        ("rgba8", np.dstack([RGB, np.full((5, 7), 9, np.uint8)]), RGB),
        ("bgra8", np.dstack([RGB[..., ::-1], np.full((5, 7), 9, np.uint8)]), RGB),
        ("mono8", RGB[..., 0].copy(), np.repeat(RGB[..., :1], 3, axis=2)),
    ],
)
@pytest.mark.parametrize("step_pad", [0, 5])
def test_eight_bit_encodings_with_and_without_row_padding(encoding, arr, expected, step_pad):
    step = arr[0].nbytes + step_pad
    out = image_to_rgb(_image(arr, encoding, step=step))
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
@pytest.mark.parametrize("big", [False, True])
def test_sixteen_bit_honours_endianness(encoding, big):
    vals = RNG.integers(0, 65536, (5, 7), dtype=np.uint16)
    arr = vals.astype(">u2" if big else "<u2")
    out = image_to_rgb(_image(arr, encoding, step=7 * 2 + 2, big=big))
    assert np.array_equal(out[..., 0], ((vals.astype(np.uint32) + 128) // 257).astype(np.uint8))
    assert np.array_equal(out[..., 0], out[..., 2])


def test_node_and_offline_sixteen_bit_conversions_agree(tmp_path):
    # One rule (gmos_core.bit_depth): a mono16 message (node), a 16-bit PNG message
    # (node, CompressedImage), a 16-bit PNG file (gmos-infer's reader) and a uint16 array
    # (gmos-infer's preprocessing) all give the same 8-bit frame.
    vals = RNG.integers(0, 65536, (5, 7), dtype=np.uint16)
    vals[0, :4] = [0, 128, 129, 65535]
    node = image_to_rgb(_image(vals, "mono16"))
    ok, png = cv2.imencode(".png", vals)
    assert ok
    node_png = compressed_to_rgb(CompressedImage(format="png", data=png.tobytes()))
    (tmp_path / "seq").mkdir()
    cv2.imwrite(str(tmp_path / "seq" / "00000.png"), vals)
    (offline_file,) = list(read_frames(tmp_path / "seq"))
    offline = to_rgb_uint8(vals)
    for other in (node_png, offline_file, offline):
        assert np.array_equal(node, other)
    assert list(node[0, :4, 0]) == [0, 0, 1, 255]


def test_last_row_without_padding_is_accepted():
    msg = _image(RGB, "rgb8", step=7 * 3 + 4)
    msg.data = bytes(msg.data)[:-4]
    assert np.array_equal(image_to_rgb(msg), RGB)


@pytest.mark.parametrize(
    ("mutate", "kind", "words"),
    [
        (lambda m: setattr(m, "encoding", "yuv420"), "encoding", "unsupported encoding"),
        (lambda m: setattr(m, "encoding", "32FC1"), "encoding", "32FC1"),
        (lambda m: setattr(m, "step", 7 * 3 - 1), "step", "step 20 < width 7"),
        (lambda m: setattr(m, "height", 0), "size", "zero-sized"),
        (lambda m: setattr(m, "width", 0), "size", "zero-sized"),
        (lambda m: setattr(m, "data", bytes(m.data)[:50]), "truncated", "50 bytes"),
    ],
)
def test_bad_images_raise_typed_errors(mutate, kind, words):
    msg = _image(RGB, "rgb8")
    mutate(msg)
    with pytest.raises(ConversionError, match=words) as err:
        image_to_rgb(msg)
    assert err.value.kind == kind


def _compressed(fmt: str, img_bgr: np.ndarray) -> CompressedImage:
    ok, buf = cv2.imencode(".png" if fmt == "png" else ".jpg", img_bgr)
    assert ok
    msg = CompressedImage()
    msg.format = fmt
    msg.data = buf.tobytes()
    return msg


def test_png_is_lossless_and_jpeg_is_close():
    png = compressed_to_rgb(_compressed("png", RGB[..., ::-1].copy()))
    assert np.array_equal(png, RGB)
    smooth = np.zeros((32, 32, 3), np.uint8)
    smooth[..., 0] = 200  # red in RGB
    jpg = compressed_to_rgb(_compressed("jpeg", smooth[..., ::-1].copy()))
    assert jpg.shape == (32, 32, 3) and abs(int(jpg[..., 0].mean()) - 200) < 4
    gray = compressed_to_rgb(_compressed("png", RGB[..., 0].copy()))
    assert np.array_equal(gray[..., 1], RGB[..., 0])


def test_corrupt_and_unknown_compressed_data():
    msg = _compressed("jpeg", RGB[..., ::-1].copy())
    msg.data = bytes(msg.data)[:20]
    with pytest.raises(ConversionError) as err:
        compressed_to_rgb(msg)
    assert err.value.kind == "decode"
    msg.data = b"GIF89a" + b"\0" * 30
    with pytest.raises(ConversionError, match="neither JPEG nor PNG") as err:
        compressed_to_rgb(msg)
    assert err.value.kind == "format"
    msg.data = b""
    with pytest.raises(ConversionError) as err:
        compressed_to_rgb(msg)
    assert err.value.kind == "size"


def test_numpy_buffers_from_rosbags_work_too():
    data = np.frombuffer(_image(RGB, "bgr8").data, np.uint8)
    assert np.array_equal(raw_to_rgb(data, 5, 7, "bgr8", 21), RGB[..., ::-1])


def _header(stamp_ns: int, frame: str = "cam") -> Header:
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return h


def _result(stamp: int) -> FrameResult:
    ids = np.zeros((6, 8), np.uint16)
    ids[1:3, 2:5] = 3
    ids[4:6, 0:2] = 7
    objs = objects_from_ids(ids, {3: True, 7: False}, {3: 0.9, 7: 0.1}, {3: 0.8, 7: 0.5})
    return FrameResult(stamp, 0, ids, objs)


def test_result_messages_copy_header_and_agree():
    header = _header(5_250_000_000, "left_optical")
    inst, dyn, objs = result_messages(_result(5_250_000_000), header)
    for m in (inst, dyn, objs):
        assert stamp_to_ns(m.header) == 5_250_000_000 and m.header.frame_id == "left_optical"
    ids = np.frombuffer(inst.data, np.uint16).reshape(6, 8)
    assert (inst.encoding, inst.step, dyn.encoding, dyn.step) == ("mono16", 16, "mono8", 8)
    assert [(o.id, o.moving, o.area) for o in objs.objects] == [(3, True, 6), (7, False, 4)]
    assert (objs.objects[0].x, objs.objects[0].y, objs.objects[0].width) == (2, 1, 3)
    mask = np.frombuffer(dyn.data, np.uint8).reshape(6, 8)
    assert np.array_equal(mask == 255, ids == 3) and set(np.unique(mask)) == {0, 255}
    # Capping keeps the largest objects in both the mask and the list.
    inst1, _, objs1 = result_messages(_result(1), header, max_objects=1)
    assert [o.id for o in objs1.objects] == [3]
    assert set(np.unique(np.frombuffer(inst1.data, np.uint16))) == {0, 3}


@pytest.mark.parametrize("max_objects", [0, 1])
def test_overlay_from_arrays_matches_overlay_from_decoded_messages(max_objects):
    # The node draws from `result_masks` and encodes once; drawing from the decoded
    # messages (what it did before) must give the same picture.
    frame = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    result, header = _result(9), _header(9)
    masks = result_masks(result, max_objects)
    inst, dyn, objs = result_messages(result, header, max_objects, masks=masks)
    ids = np.frombuffer(inst.data, np.uint16).reshape(6, 8)
    moving = {o.id for o in objs.objects if o.moving}
    assert np.array_equal(masks.ids, ids) and masks.moving_ids == moving
    assert np.array_equal(masks.dynamic, np.frombuffer(dyn.data, np.uint8).reshape(6, 8))
    assert inst.data == result_messages(result, header, max_objects)[0].data
    assert np.array_equal(
        overlay_instances(frame, masks.ids, set(masks.moving_ids)),
        overlay_instances(frame, ids, moving),
    )


def test_overlay_and_camera_info_restamp():
    frame = np.zeros((6, 8, 3), np.uint8)
    ov = overlay_instances(frame, _result(0).instance_ids, {3})
    assert ov.shape == (6, 8, 3) and ov[2, 3].any() and not ov[0, 7].any()
    info = CameraInfo(header=_header(1, "x"), height=6, width=8)
    info.k = [1.0] * 9
    out = restamp_camera_info(info, _header(42, "cam"))
    assert stamp_to_ns(out.header) == 42 and out.header.frame_id == "cam"
    assert list(out.k) == [1.0] * 9 and out.width == 8


class _Model:
    """Gmos-S stand-in: foreground = bright pixels (no weights, instant)."""

    def geometry_features(self, frame):
        return None

    def segmentation_features(self, frame):
        return frame

    def predict(self, geometry, segmentation, out_hw):
        from gmos_core.streaming import ForegroundPrediction

        return ForegroundPrediction((segmentation[..., 0] > 128).astype(np.float32))


def test_headered_stream_gives_each_result_its_own_header():
    stream = HeaderedStream(StreamingSegmenter(_Model(), "gmos_s", span_s=0.2), keep_frames=True)
    frame = np.zeros((4, 4, 3), np.uint8)
    out = []
    for i in range(6):
        out += stream.step(frame, _header(i * 100_000_000, f"f{i}"))
    assert stream.pending > 0  # results lag by half a window
    out += stream.flush()
    assert [stamp_to_ns(r.header) for r in out] == [i * 100_000_000 for i in range(6)]
    assert [r.header.frame_id for r in out] == [f"f{i}" for i in range(6)]
    assert all(r.result.stamp_ns == stamp_to_ns(r.header) for r in out)
    assert stream.pending == 0 and stream.unmatched == 0
    # A rejected frame (duplicate stamp) leaves no header behind.
    stream.step(frame, _header(10**9))
    with pytest.raises(ValueError, match="duplicate"):
        stream.step(frame, _header(10**9))
    assert stream.pending == 1
