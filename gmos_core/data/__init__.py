"""gmos_core.data: dataset layouts, label PNG I/O, motion intervals and frame sources.

- `palette`: DAVIS palette, P-mode label PNG read/write, the shared `DataFormatError`.
- `davis`: DAVIS 2016/2017 folders and results reader.
- `ytvos`: YouTube-VOS sparse annotations (results for annotated frames only).
- `time_anno`: Gmos-2K motion-interval CSV and MOS-I ground truth.
- `video`: frames from a video file or an image folder as (H, W, 3) uint8 RGB; MP4 writer.
- `moca`: MoCA box annotations (motiongrouping `MoCA_eval.py` format).
"""

from .davis import VOID_LABEL, DavisDataset, check_result_sequences, read_result_labels
from .moca import MOTION_NAMES, MocaAnnotationError, MocaBox, read_moca_annotations
from .palette import (
    DAVIS_PALETTE,
    DataFormatError,
    LabelReadError,
    davis_palette,
    read_label_png,
    write_indexed_png,
)
from .time_anno import (
    DATASET_SLICES,
    MOS_I_NUM_CHANNELS,
    TimeAnnoError,
    TimeAnnoRow,
    TimeAnnoRows,
    format_time_anno,
    mos_i_ground_truth,
    motion_matrix,
    parse_time_anno,
    read_time_anno,
    write_time_anno,
)
from .video import (
    IMAGE_EXTENSIONS,
    VideoReadError,
    list_image_files,
    read_frames,
    to_rgb_uint8,
    video_fps,
    write_mp4,
)
from .ytvos import YouTubeVOSDataset, select_annotated

__all__ = [
    "DATASET_SLICES",
    "DAVIS_PALETTE",
    "IMAGE_EXTENSIONS",
    "MOS_I_NUM_CHANNELS",
    "MOTION_NAMES",
    "VOID_LABEL",
    "DataFormatError",
    "DavisDataset",
    "LabelReadError",
    "MocaAnnotationError",
    "MocaBox",
    "TimeAnnoError",
    "TimeAnnoRow",
    "TimeAnnoRows",
    "VideoReadError",
    "YouTubeVOSDataset",
    "check_result_sequences",
    "davis_palette",
    "format_time_anno",
    "list_image_files",
    "mos_i_ground_truth",
    "motion_matrix",
    "parse_time_anno",
    "read_frames",
    "read_label_png",
    "read_moca_annotations",
    "read_result_labels",
    "read_time_anno",
    "select_annotated",
    "to_rgb_uint8",
    "video_fps",
    "write_indexed_png",
    "write_mp4",
    "write_time_anno",
]
