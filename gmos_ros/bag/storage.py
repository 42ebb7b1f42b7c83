"""Bag files on disk: the typestore (ROS 2 kilted + gmos_msgs), message classes,
reading messages in log-time order and opening (optionally compressed) writers."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lz4.frame
import yaml
from rosbags.rosbag2 import CompressionFormat, CompressionMode, Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

REPO = Path(__file__).resolve().parents[2]
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}


def _notice(text: str) -> None:
    print(f"gmos-bag: {text}", file=sys.stderr, flush=True)


def _msg_dirs() -> list[Path]:
    dirs = [REPO / "msg" / "msg", Path(sys.prefix) / "share" / "gmos_msgs" / "msg"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share" / "gmos_msgs" / "msg")
    return dirs


def make_typestore() -> Typestore:
    """The ROS 2 kilted typestore plus gmos_msgs (registered from the .msg text)."""
    store = get_typestore(Stores.ROS2_KILTED)
    for d in _msg_dirs():
        if (d / "MovingObject.msg").is_file():
            types: dict[str, Any] = {}
            for name in ("MovingObject", "MovingObjectArray", "EgoMotion"):
                types.update(
                    get_types_from_msg((d / f"{name}.msg").read_text(), f"gmos_msgs/msg/{name}")
                )
            store.register(types)
            break
    return store


def message_class(msgtype: str) -> type | None:
    """The rclpy class of "pkg/msg/Type", or None if it cannot be imported here."""
    parts = msgtype.split("/")
    if len(parts) != 3:
        return None
    try:
        return getattr(importlib.import_module(f"{parts[0]}.{parts[1]}"), parts[2])
    except (ImportError, AttributeError):
        return None


COMPRESSIONS = ("none", "lz4", "zstd")


def _open_writer(path: Path, storage: str, compression: str = "none") -> Writer:
    """A rosbags writer; `compression` compresses MCAP chunks (as rosbag2's MCAP storage
    does, so any MCAP reader decodes them; the bag metadata says no file/message compression).

    rosbags offers zstd chunks only (CompressionMode.STORAGE); lz4 swaps the chunk compressor
    of its MCAP storage, lz4 frame format as the MCAP specification defines it.
    """
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    if compression != "none" and storage != "mcap":
        raise ValueError(f"compression {compression!r} needs the mcap storage, not {storage!r}")
    writer = Writer(path, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage])
    if compression != "none":
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    writer.open()
    if compression == "lz4":
        mcap = writer.storage
        if not (hasattr(mcap, "compressor") and hasattr(mcap, "compression")):
            writer.close()
            raise RuntimeError("this rosbags version's MCAP writer cannot be given lz4")
        mcap.compression = "lz4"
        mcap.compressor = lz4.frame.compress
    return writer


def _connections(reader: Reader, topics: list[str] | None) -> list[Any]:
    conns = []
    for c in reader.connections:
        if topics is not None and c.topic not in topics:
            continue
        if message_class(c.msgtype) is None:
            _notice(f"skipping {c.topic}: message type {c.msgtype} unknown here")
            continue
        conns.append(c)
    return conns


def iter_messages(
    path: str | Path, topics: list[str] | None = None
) -> Iterator[tuple[str, str, int, bytes]]:
    """(topic, msgtype, log time ns, CDR bytes) in log-time order; unknown types skipped."""
    with Reader(path) as reader:
        conns = _connections(reader, topics)
        if conns:
            for conn, t, raw in reader.messages(connections=conns):
                yield conn.topic, conn.msgtype, t, bytes(raw)


def _bag_custom_data(path: str | Path) -> dict[str, str]:
    meta = Path(path) / "metadata.yaml"
    if not meta.is_file():
        return {}
    info = yaml.safe_load(meta.read_text()).get("rosbag2_bagfile_information", {})
    return dict(info.get("custom_data") or {})
