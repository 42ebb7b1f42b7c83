"""`gmos-bag record --compression {none,lz4,zstd}`: MCAP chunks compressed, every message
read back identical, by rosbags and by a plain MCAP chunk scan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")

from rosbags.rosbag2.storage_mcap import McapReader  # noqa: E402

from gmos_ros.bag import _open_writer, build_parser, iter_messages, make_typestore  # noqa: E402


def _image_bytes(store, i: int) -> bytes:
    Image = store.types["sensor_msgs/msg/Image"]
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    # Flat regions and a moving block, like a rendered scene (LZ codecs find repeats).
    img = np.zeros((48, 64, 3), np.uint8)
    img[:24] = (90, 140, 200)
    img[10:20, i % 40 : i % 40 + 12] = (250, 30, 30)
    data = img.reshape(-1)
    msg = Image(Header(Time(i, 0), "cam"), 48, 64, "rgb8", 0, 64 * 3, data)
    return store.serialize_cdr(msg, "sensor_msgs/msg/Image")


@pytest.mark.parametrize("compression", ["none", "lz4", "zstd"])
def test_compressed_mcap_reads_back_identical(tmp_path: Path, compression: str):
    store = make_typestore()
    out = tmp_path / f"bag_{compression}"
    writer = _open_writer(out, "mcap", compression)
    conn = writer.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=store)
    sent = [_image_bytes(store, i) for i in range(40)]
    for i, raw in enumerate(sent):
        writer.write(conn, (i + 1) * 10**8, raw)
    writer.close()
    got = [raw for _, _, _, raw in iter_messages(out)]
    assert got == sent
    reader = McapReader(next(out.glob("*.mcap")))
    reader.open()
    try:
        kinds = {c.compression for c in reader.chunks}
        ratio = sum(c.compressed_size for c in reader.chunks) / sum(
            c.uncompressed_size for c in reader.chunks
        )
    finally:
        reader.close()
    assert kinds == {"" if compression == "none" else compression}
    assert (ratio == 1.0) if compression == "none" else (ratio < 0.8)


def test_compression_needs_mcap_and_a_known_codec(tmp_path: Path):
    with pytest.raises(ValueError, match="needs the mcap storage"):
        _open_writer(tmp_path / "a", "sqlite3", "zstd")
    with pytest.raises(ValueError, match="compression must be one of"):
        _open_writer(tmp_path / "b", "mcap", "gzip")
    args = build_parser().parse_args(
        ["record", "--out", "x", "--topics", "/a", "--compression", "lz4"]
    )
    assert args.compression == "lz4"
