"""Publishing a bag with rclpy, and watching a node's output to play in lock step."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from gmos_msgs.msg import MovingObjectArray
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image

from gmos_ros.bag.storage import _connections, iter_messages, message_class
from gmos_ros.messages import stamp_to_ns


class BagPlayer:
    """Publishes a bag's stored CDR bytes with rclpy publishers (one per known topic).

    Args:
        node: the rclpy node that owns the publishers.
        path: the bag.
        topics: topics to play (default all); unknown types are skipped with a notice.
        qos_depth: reliable keep-last depth of the publishers (reliable publishers match
            both reliable and best-effort subscribers).
    """

    def __init__(
        self, node: Any, path: str | Path, topics: list[str] | None = None, qos_depth: int = 10
    ) -> None:
        self.node = node
        self.path = Path(path)
        self.publishers: dict[str, Any] = {}
        with Reader(self.path) as reader:
            for c in _connections(reader, topics):
                if c.topic not in self.publishers:
                    cls = message_class(c.msgtype)
                    self.publishers[c.topic] = node.create_publisher(cls, c.topic, qos_depth)
            self.start_ns = reader.start_time
            self.duration_ns = reader.duration

    def messages(self) -> Iterator[tuple[str, str, int, bytes]]:
        """(topic, msgtype, log time, bytes) of the played topics, in order."""
        return iter_messages(self.path, list(self.publishers))

    def publish(self, topic: str, raw: bytes) -> None:
        """Publish stored bytes (no deserialisation: what was recorded goes out)."""
        self.publishers[topic].publish(raw)

    def wait_for_subscribers(self, topics: list[str], timeout_s: float = 15.0) -> bool:
        """Bounded poll until each topic has a subscriber (discovery can take seconds)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.publishers[t].get_subscription_count() > 0 for t in topics):
                return True
            time.sleep(0.05)
        return False

    def play(
        self,
        rate: float = 1.0,
        loop: bool = False,
        start_offset_s: float = 0.0,
        clock_pub: Any = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> int:
        """Publish in log-time order, paced by `rate` (<= 0: as fast as possible).

        Returns the number of messages published.
        """
        n = 0
        first = self.start_ns + int(start_offset_s * 1e9)
        while True:
            t_wall0 = time.monotonic()
            for topic, _, t, raw in self.messages():
                if t < first:
                    continue
                if rate > 0:
                    delay = (t - first) / 1e9 / rate - (time.monotonic() - t_wall0)
                    if delay > 0:
                        time.sleep(delay)
                if should_stop():
                    return n
                if clock_pub is not None:
                    c = Clock()
                    c.clock.sec, c.clock.nanosec = divmod(t, 1_000_000_000)
                    clock_pub.publish(c)
                self.publish(topic, raw)
                n += 1
            if not loop or should_stop():
                return n


class OutputMonitor:
    """Watches a gmos node from another process: result stamps on `<ns>/objects` and the
    counters of its first /diagnostics status (for lock-step playback in tests and the demo).
    """

    def __init__(self, node: Any, ns: str = "/gmos") -> None:
        self.cond = threading.Condition()
        self.result_stamps: list[int] = []
        self.diag: dict[str, str] = {}
        self._ns = ns
        # diagnostic_updater names a status "<node name>: <task>" (the name, not the path).
        self._status_prefix = ns.rstrip("/").rsplit("/", 1)[-1] + ":"
        self._subs = [
            node.create_subscription(MovingObjectArray, f"{ns}/objects", self._on_objects, 100),
            node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10),
        ]

    def _on_objects(self, msg: Any) -> None:
        with self.cond:
            self.result_stamps.append(stamp_to_ns(msg.header))
            self.cond.notify_all()

    def _on_diag(self, msg: Any) -> None:
        for st in msg.status:
            if st.name.startswith(self._status_prefix):
                with self.cond:
                    self.diag = {kv.key: kv.value for kv in st.values}
                    self.cond.notify_all()
                return

    def counter(self, key: str) -> float:
        """Latest diagnostics value (NaN before the first report)."""
        with self.cond:
            return float(self.diag.get(key, "nan"))

    def wait(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Bounded wait (with the lock held while testing) until `predicate()` is true."""
        with self.cond:
            return self.cond.wait_for(predicate, timeout=timeout_s)


def paced_play(
    player: BagPlayer,
    monitor: OutputMonitor,
    image_topic: str,
    span_s: float = 0.5,
    timeout_s: float = 120.0,
) -> list[int]:
    """Play a bag in lock step with the node so that it never has to drop a frame.

    Each image is published only after the node took the previous one from its slot and
    published every result that frame made ready (the segmenter finishes frame i once a
    frame at least span_s / 2 later arrived). Other topics go out as they come.

    Returns the stamps of the images published. Raises TimeoutError if the node stalls.
    """
    half_ns = int(round(span_s * 1e9 / 2))
    stamps: list[int] = []
    for topic, msgtype, _, raw in player.messages():
        if topic != image_topic:
            player.publish(topic, raw)
            continue
        cls = CompressedImage if msgtype.endswith("CompressedImage") else Image
        stamps.append(stamp_to_ns(deserialize_message(raw, cls).header))
        player.publish(topic, raw)
        n = len(stamps)
        ready = {s for s in stamps if stamps[-1] >= s + half_ns}
        ok = monitor.wait(
            lambda n=n, ready=ready: (
                monitor.diag.get("frames_taken") is not None
                and float(monitor.diag["frames_taken"]) >= n
                and ready <= set(monitor.result_stamps)
            ),
            timeout_s,
        )
        if not ok:
            raise TimeoutError(
                f"node did not take frame {n} / publish its results in {timeout_s} s "
                f"(diagnostics {monitor.diag}, results {sorted(monitor.result_stamps)})"
            )
    return stamps
