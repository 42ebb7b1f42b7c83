"""3-D geometry of moving objects: depth decoding, back-projection, per-object state, ego-motion.

Pure numpy/OpenCV (no ROS, no torch). Camera axes are OpenCV's: x right, y down, z forward.
Lengths are metres when the values are metric (depth images) and π³ units otherwise (one unknown
scale per window, chained from window to window by :class:`Pi3ObjectStates`); every result says
which (``metric`` flags).
"""

from gmos_core.geometry.camera import (
    PinholeIntrinsics,
    apply_transform,
    backproject_depth,
    invert_transform,
    relative_pose,
)
from gmos_core.geometry.depth import DEPTH_ENCODINGS, DepthError, decode_depth
from gmos_core.geometry.depth_states import DepthObjectStates, DepthStatesUpdate
from gmos_core.geometry.ego_motion import EgoMotion, ego_motion_from_poses, median_scale_ratio
from gmos_core.geometry.objects import (
    ObjectMeasurement,
    ObjectState,
    ObjectStateEstimator,
    measure_object,
)
from gmos_core.geometry.pi3_adapter import align_to_depth, confident_points, pi3_ego_motion
from gmos_core.geometry.slam_masks import (
    INSTANCE_ENCODINGS,
    dilate_mask,
    encode_instance_mask,
)
from gmos_core.geometry.window_states import Pi3ObjectStates, Pi3StatesUpdate

__all__ = [
    "DEPTH_ENCODINGS",
    "INSTANCE_ENCODINGS",
    "DepthError",
    "DepthObjectStates",
    "DepthStatesUpdate",
    "EgoMotion",
    "ObjectMeasurement",
    "ObjectState",
    "ObjectStateEstimator",
    "Pi3ObjectStates",
    "Pi3StatesUpdate",
    "PinholeIntrinsics",
    "align_to_depth",
    "apply_transform",
    "backproject_depth",
    "confident_points",
    "decode_depth",
    "dilate_mask",
    "ego_motion_from_poses",
    "encode_instance_mask",
    "invert_transform",
    "measure_object",
    "median_scale_ratio",
    "pi3_ego_motion",
    "relative_pose",
]
