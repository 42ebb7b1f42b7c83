"""Recording raw subscriptions to a bag from one writer thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rosbags.typesys.store import Typestore

from gmos_ros.bag.storage import _notice, _open_writer, make_typestore, message_class


class Recorder:
    """Raw subscriptions written to a bag as they arrive (log time = receive time).

    The callbacks only queue the bytes; one writer thread owns the bag (the sqlite3 storage
    may only be used from the thread that opened it, and a slow disk must not stall the
    executor). `close()` writes what is queued, then closes the bag.

    Args:
        node: the rclpy node that owns the subscriptions (spun by the caller).
        out: bag directory (must not exist).
        topics: topic -> "pkg/msg/Type".
        storage: "sqlite3" or "mcap".
        qos_depth: reliable keep-last depth.
        on_message: also called with (topic, bytes) for every message received.
        compression: "none", "lz4" or "zstd" MCAP chunk compression (mcap storage only).
    """

    def __init__(
        self,
        node: Any,
        out: str | Path,
        topics: dict[str, str],
        storage: str = "mcap",
        qos_depth: int = 100,
        on_message: Callable[[str, bytes], None] | None = None,
        compression: str = "none",
    ) -> None:
        self.node = node
        self.on_message = on_message
        self.compression = compression
        self.count: dict[str, int] = {}
        self._queue: queue.Queue[tuple[str, int, bytes] | None] = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        store = make_typestore()
        self.topics = {}
        for topic, msgtype in topics.items():
            if message_class(msgtype) is None or msgtype not in store.fielddefs:
                _notice(f"not recording {topic}: message type {msgtype} unknown here")
                continue
            self.topics[topic] = msgtype
            self.count[topic] = 0
        opened = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._write_loop, args=(Path(out), storage, store, opened), daemon=True
        )
        self._thread.start()
        opened.wait()
        if self._error is not None:
            raise self._error
        self.subscriptions = [
            node.create_subscription(
                message_class(t), topic, self._callback(topic), qos_depth, raw=True
            )
            for topic, t in self.topics.items()
        ]

    def _write_loop(
        self, out: Path, storage: str, store: Typestore, opened: threading.Event
    ) -> None:
        try:
            writer = _open_writer(out, storage, self.compression)
            conns = {
                topic: writer.add_connection(topic, t, typestore=store)
                for topic, t in self.topics.items()
            }
        except BaseException as err:  # reported to the constructor
            self._error = err
            opened.set()
            return
        opened.set()
        try:
            while (item := self._queue.get()) is not None:
                topic, stamp, raw = item
                writer.write(conns[topic], stamp, raw)
        finally:
            writer.close()

    def _callback(self, topic: str) -> Callable[[bytes], None]:
        def on_raw(raw: bytes) -> None:
            with self._lock:
                if self._closed:
                    return
                self._queue.put((topic, self.node.get_clock().now().nanoseconds, raw))
                self.count[topic] += 1
            if self.on_message is not None:
                self.on_message(topic, raw)

        return on_raw

    def close(self) -> None:
        """Stop recording, write what is queued and close the bag (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for sub in self.subscriptions:
            self.node.destroy_subscription(sub)
        self._queue.put(None)
        self._thread.join()
