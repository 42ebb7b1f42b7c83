"""`gmos-bag`: play, record, evaluate and synthesise ROS 2 bags without rosbag2 (rosbags).

One concern per module:
  storage       typestore (ROS 2 kilted + gmos_msgs), message classes, reading, writers
  signals       SIGINT/SIGTERM handling while a bag is open
  params_file   node settings from a params YAML + `name:=value` overrides
  ground_truth  /gt/labels and /gt/intervals of a bag
  scoring       MOS-I of predictions against a bag's ground truth
  evaluation    `gmos-bag eval`: the node's processing run offline over a bag
  synth         a synthetic scene written as a bag with ground truth
  player        publishing a bag, lock-step playback against a node's output
  recorder      raw subscriptions written to a bag
  cli           the `gmos-bag` command line (`python -m gmos_ros.bag`)
"""

from __future__ import annotations

from gmos_ros.bag.cli import build_parser, main
from gmos_ros.bag.evaluation import EvalReport, run_eval
from gmos_ros.bag.ground_truth import (
    GT_INTERVALS_TOPIC,
    GT_LABELS_TOPIC,
    INTERVALS_METADATA_KEY,
    GroundTruth,
    labels_from_image,
    read_ground_truth,
)
from gmos_ros.bag.params_file import default_params_file, load_params_file
from gmos_ros.bag.player import BagPlayer, OutputMonitor, paced_play
from gmos_ros.bag.recorder import Recorder
from gmos_ros.bag.scoring import score_mos_i
from gmos_ros.bag.storage import (
    COMPRESSIONS,
    STORAGES,
    _open_writer,
    iter_messages,
    make_typestore,
    message_class,
)
from gmos_ros.bag.synth import write_synthetic_bag

__all__ = [
    "COMPRESSIONS",
    "GT_INTERVALS_TOPIC",
    "GT_LABELS_TOPIC",
    "INTERVALS_METADATA_KEY",
    "STORAGES",
    "BagPlayer",
    "EvalReport",
    "GroundTruth",
    "OutputMonitor",
    "Recorder",
    "_open_writer",
    "build_parser",
    "default_params_file",
    "iter_messages",
    "labels_from_image",
    "load_params_file",
    "main",
    "make_typestore",
    "message_class",
    "paced_play",
    "read_ground_truth",
    "run_eval",
    "score_mos_i",
    "write_synthetic_bag",
]
