"""Mask-conditioned trackers behind one `Tracker` protocol.

* `MaskIoUTracker`: weight-free, for CPU tests and the micro model. It carries each object's
  last observed mask forward (shifted by a constant-velocity estimate) and, when given the
  frame's candidate masks, snaps each track to the candidate it overlaps best.
* `Sam2Tracker`: the SAM2 video predictor fed frame by frame (streaming), with a bounded
  memory bank and per-object IoU outputs, numerically equal to `SAM2VideoPredictor`'s
  `add_new_mask` + `propagate_in_video` on the same frames.

Slots are the trackers' internal object handles; persistent ids live in `ObjectRegistry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from scipy.optimize import linear_sum_assignment

from .types import FrameProposals, TrackOutput


@runtime_checkable
class Tracker(Protocol):
    """A causal, mask-prompted multi-object tracker addressed by integer slots.

    Call order per frame (as in the online propagator): `track(t, x)` for the objects that
    exist, then any number of `add_mask(t, slot, mask)` prompts on the same frame. A prompt on
    a frame the slot has not been tracked on starts the slot (SAM2: a conditioning frame); a
    prompt on a tracked frame corrects it.
    """

    def reset(self) -> None:
        """Drop every object and all memory (a new stream)."""

    def add_mask(
        self, frame_idx: int, slot: int, mask: np.ndarray, frame_input: Any = None
    ) -> TrackOutput:
        """Prompt `slot` with an (H, W) bool mask on `frame_idx`; returns that frame's output.

        `frame_input` is only needed when prompting a frame other than the one last passed to
        `track` (the offline stage prompts frames before propagating to them).
        """

    def track(
        self, frame_idx: int, frame_input: Any, reverse: bool = False
    ) -> dict[int, TrackOutput]:
        """Propagate every slot to `frame_idx`; returns {slot: (mask (H,W) bool, object IoU)}."""

    def remove(self, slot: int) -> None:
        """Forget one slot."""

    @property
    def num_objects(self) -> int:
        """Number of live slots."""

    @property
    def slots(self) -> list[int]:
        """Live slots, ascending."""


# --------------------------------------------------------------------------------------------
# Weight-free tracker
# --------------------------------------------------------------------------------------------


def _centroid(mask: np.ndarray) -> np.ndarray | None:
    """Mean (y, x) of the mask's pixels, None if empty: integer row / column moments, so the
    same value as the mean of `np.nonzero`, at half its cost."""
    per_row = np.count_nonzero(mask, axis=1)
    n = int(per_row.sum())
    if n == 0:
        return None
    per_col = np.count_nonzero(mask, axis=0)
    y = int(np.dot(np.arange(per_row.size, dtype=np.int64), per_row))
    x = int(np.dot(np.arange(per_col.size, dtype=np.int64), per_col))
    return np.array([y / n, x / n], dtype=np.float64)


def shift_mask(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate an (H, W) bool mask by (dy, dx) pixels, filling with False (no wrap-around)."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    src_y = slice(max(0, -dy), h - max(0, dy))
    dst_y = slice(max(0, dy), h - max(0, -dy))
    src_x = slice(max(0, -dx), w - max(0, dx))
    dst_x = slice(max(0, dx), w - max(0, -dx))
    out[dst_y, dst_x] = mask[src_y, src_x]
    return out


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 4) int64 boxes [y0, y1, x0, x1) (half-open); empty: all zeros."""
    rows = masks.any(axis=2)
    cols = masks.any(axis=1)
    out = np.zeros((masks.shape[0], 4), dtype=np.int64)
    for i in range(masks.shape[0]):
        r, c = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
        if r.size:
            out[i] = (r[0], r[-1] + 1, c[0], c[-1] + 1)
    return out


def intersection_counts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|A_i ∩ B_j| for (N, H, W) and (M, H, W) bool masks -> (N, M) int64, exactly.

    Only pairs whose bounding boxes meet are counted, inside the overlap of the two boxes.
    """
    out = np.zeros((a.shape[0], b.shape[0]), dtype=np.int64)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return out
    ba, bb = mask_boxes(a), mask_boxes(b)
    y0 = np.maximum(ba[:, None, 0], bb[None, :, 0])
    y1 = np.minimum(ba[:, None, 1], bb[None, :, 1])
    x0 = np.maximum(ba[:, None, 2], bb[None, :, 2])
    x1 = np.minimum(ba[:, None, 3], bb[None, :, 3])
    for i, j in zip(*np.nonzero((y1 > y0) & (x1 > x0))):
        ys, xs = slice(y0[i, j], y1[i, j]), slice(x0[i, j], x1[i, j])
        out[i, j] = np.count_nonzero(a[i, ys, xs] & b[j, ys, xs])
    return out


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between (N, H, W) and (M, H, W) bool masks -> (N, M) float64.

    Two empty masks have IoU 1 (the official `compute_iou` convention), so an empty track
    pairs with an absent proposal rather than stealing a real one.
    """
    # Exact integer counts, then the float32 arithmetic of the former dense formulation
    # (float32 (N, HW) @ (HW, M)), so the IoUs are bit-identical to it; the counts come from
    # bounding boxes: pairs whose boxes do not meet cost nothing (18 -> ~3 ms at 854x480).
    inter = intersection_counts(a, b).astype(np.float32)
    area_a = np.count_nonzero(a.reshape(a.shape[0], -1), axis=1).astype(np.float32)[:, None]
    area_b = np.count_nonzero(b.reshape(b.shape[0], -1), axis=1).astype(np.float32)[None, :]
    union = area_a + area_b - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1e-6), 1.0)
    return iou.astype(np.float64)


@dataclass
class _IoUSlot:
    mask: np.ndarray  # (H, W) bool, last observation (prompt or snap)
    frame: int  # frame of `mask`
    iou: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # (dy, dx) px/frame
    prompts: dict[int, np.ndarray] = field(default_factory=dict)  # future prompts (offline)
    # Centroid of `mask`, kept with the array it belongs to (recomputed when `mask` changes).
    _centroid_of: tuple[np.ndarray, np.ndarray | None] | None = None

    def centroid(self) -> np.ndarray | None:
        if self._centroid_of is None or self._centroid_of[0] is not self.mask:
            self._centroid_of = (self.mask, _centroid(self.mask))
        return self._centroid_of[1]


class MaskIoUTracker:
    """Weight-free tracker: constant-velocity mask carry plus snapping to candidate masks.

    Per frame, each slot's prediction is its last observed mask shifted by
    ``round(velocity * (t - t_obs))``. The velocity is the centroid displacement per frame
    between the slot's last two observations (a prompt or a snap), so an object that moves at
    constant speed behind an occluder is predicted where it re-appears; with
    ``use_velocity=False`` the mask is carried in place.

    If `frame_input` of `track` is a `FrameProposals` or a (K, H, W) bool array, predictions
    are Hungarian-matched (cost 1 - IoU) to those candidates and a slot whose match has
    IoU >= `snap_iou` adopts the candidate: this stands in for SAM2's appearance matching,
    which also follows objects that are static (low-motion proposals are still candidates).
    Object IoU: 1.0 on a prompt frame, the prediction/candidate IoU on a snap (how well the
    motion model explained the observation), and the previous value times `decay` when coasting.
    """

    def __init__(
        self, snap_iou: float = 0.5, decay: float = 0.9, use_velocity: bool = True
    ) -> None:
        self.snap_iou = float(snap_iou)
        self.decay = float(decay)
        self.use_velocity = bool(use_velocity)
        self._slots: dict[int, _IoUSlot] = {}
        self._current: int | None = None

    def reset(self) -> None:
        """Drop all slots."""
        self._slots.clear()
        self._current = None

    @property
    def num_objects(self) -> int:
        """Number of live slots."""
        return len(self._slots)

    @property
    def slots(self) -> list[int]:
        """Live slots, ascending."""
        return sorted(self._slots)

    def remove(self, slot: int) -> None:
        """Forget one slot."""
        self._slots.pop(slot, None)

    def _observe(self, s: _IoUSlot, frame_idx: int, mask: np.ndarray, iou: float) -> None:
        c_old, c_new = s.centroid(), _centroid(mask)
        if self.use_velocity and c_old is not None and c_new is not None and frame_idx != s.frame:
            s.velocity = (c_new - c_old) / float(frame_idx - s.frame)
        s.mask, s.frame, s.iou = mask, frame_idx, iou
        s._centroid_of = (mask, c_new)

    def add_mask(
        self, frame_idx: int, slot: int, mask: np.ndarray, frame_input: Any = None
    ) -> TrackOutput:
        """Prompt `slot` with an (H, W) bool mask; IoU 1.0 on the prompt frame."""
        mask = np.asarray(mask, dtype=bool).copy()
        s = self._slots.get(slot)
        if s is None:
            s = _IoUSlot(mask=mask, frame=frame_idx, iou=1.0)
            self._slots[slot] = s
        elif frame_idx == self._current:
            self._observe(s, frame_idx, mask, 1.0)
        elif self._current is None and len(s.prompts) == 1 and self.use_velocity:
            # Prompts given before the pass starts (offline stage, nearest to the start
            # first): the observation stays the first prompt and the velocity comes from the
            # two prompts nearest to the start, so the pass finds a moving object far from
            # its prompt frames.
            c_obs, c_new = _centroid(s.mask), _centroid(mask)
            if c_obs is not None and c_new is not None and frame_idx != s.frame:
                s.velocity = (c_obs - c_new) / float(s.frame - frame_idx)
        if frame_idx != self._current:
            # A prompt on a frame the pass has not reached (offline stage): applied when
            # `track` gets there, as SAM2 conditioning frames are.
            s.prompts[frame_idx] = mask
        return TrackOutput(mask.copy(), 1.0)

    def _predict(self, s: _IoUSlot, frame_idx: int) -> np.ndarray:
        if not self.use_velocity:
            return s.mask
        dy, dx = np.rint(s.velocity * (frame_idx - s.frame)).astype(int)
        return shift_mask(s.mask, int(dy), int(dx))

    def track(
        self, frame_idx: int, frame_input: Any, reverse: bool = False
    ) -> dict[int, TrackOutput]:
        """Propagate all slots to `frame_idx`; `frame_input`: candidates or None (carry only)."""
        self._current = frame_idx
        order = self.slots
        out: dict[int, TrackOutput] = {}
        pending: list[int] = []
        preds: list[np.ndarray] = []
        for slot in order:
            s = self._slots[slot]
            prompt = s.prompts.pop(frame_idx, None)
            if prompt is not None:
                self._observe(s, frame_idx, prompt, 1.0)
                out[slot] = TrackOutput(prompt.copy(), 1.0)
                continue
            pending.append(slot)
            preds.append(self._predict(s, frame_idx))
        cands = self._candidates(frame_input)
        snapped: dict[int, tuple[np.ndarray, float]] = {}
        if pending and cands is not None and cands.shape[0] > 0:
            iou = pairwise_iou(np.stack(preds), cands)
            rows, cols = linear_sum_assignment(1.0 - iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= self.snap_iou and cands[c].any():
                    snapped[pending[r]] = (cands[c].copy(), float(iou[r, c]))
        for slot, pred in zip(pending, preds):
            s = self._slots[slot]
            if slot in snapped:
                m, v = snapped[slot]
                self._observe(s, frame_idx, m, v)
                out[slot] = TrackOutput(m.copy(), v)
            else:
                # Coasting: keep the last observation (and its frame) so the next prediction
                # is still extrapolated from a real observation, not from rounded shifts.
                s.iou *= self.decay
                out[slot] = TrackOutput(pred.copy(), float(s.iou))
        return out

    @staticmethod
    def _candidates(frame_input: Any) -> np.ndarray | None:
        if frame_input is None:
            return None
        if isinstance(frame_input, FrameProposals):
            return frame_input.masks
        arr = np.asarray(frame_input)
        if arr.dtype == bool and arr.ndim == 3:
            return arr
        return None


# --------------------------------------------------------------------------------------------
# SAM2 streaming tracker
# --------------------------------------------------------------------------------------------


@dataclass
class _Sam2Slot:
    """SAM2 memory of one object.

    `cond` / `non_cond` map frame index -> SAM2's compact per-frame output (the dict layout
    `SAM2Base.track_step` reads: maskmem_features, maskmem_pos_enc, pred_masks, obj_ptr,
    object_score_logits); that inner layout is SAM2's API, everything around it is typed.
    """

    cond: dict[int, dict[str, Any]] = field(default_factory=dict)
    non_cond: dict[int, dict[str, Any]] = field(default_factory=dict)
    tracked_lo: int | None = None
    tracked_hi: int | None = None
    reverse: bool = False

    def output_dict(self) -> dict[str, dict[int, dict[str, Any]]]:
        """The `output_dict` argument of `SAM2Base.track_step` (shares storage)."""
        return {"cond_frame_outputs": self.cond, "non_cond_frame_outputs": self.non_cond}

    def was_tracked(self, frame_idx: int) -> bool:
        return self.tracked_lo is not None and self.tracked_lo <= frame_idx <= self.tracked_hi

    def mark_tracked(self, frame_idx: int, reverse: bool) -> None:
        self.tracked_lo = frame_idx if self.tracked_lo is None else min(self.tracked_lo, frame_idx)
        self.tracked_hi = frame_idx if self.tracked_hi is None else max(self.tracked_hi, frame_idx)
        self.reverse = reverse


class Sam2Tracker:
    """SAM2 video tracking fed one frame at a time, with a bounded memory bank.

    It re-uses SAM2's own per-frame step (`SAM2Base._track_step`, `_encode_new_memory`,
    `_use_mask_as_output`) with exactly the bookkeeping of `SAM2VideoPredictor`
    (`add_new_mask`, `propagate_in_video_preflight`, `_run_single_frame_inference`), so the
    masks equal the video predictor's on the same frames and prompts, but:

    * no video is loaded up front: `track(t, x)` takes the frame as a normalised image tensor
      (3|1x3, S, S), S = `model.image_size`, or as precomputed `backbone_out` of
      `SAM2Base.forward_image` (so the proposer's SAM2 features are reused, not recomputed;
      the dict is never mutated);
    * only the current frame's image features are held;
    * with `bounded_memory`, a slot keeps full memory (mask features) only for the last
      ``(num_maskmem - 1) * memory_temporal_stride_for_eval + 1`` frames and object pointers
      only for the last ``max_obj_ptrs_in_encoder`` frames, which is everything SAM2 attends
      to, so memory stays flat on endless streams without changing results. Conditioning
      (prompt) frames are kept; `max_cond_frames` (default: the model's
      `max_cond_frames_in_attn` when positive, else unbounded as in SAM2) caps them, keeping
      those closest to the current frame (SAM2's own selection rule). In the online
      propagator re-prompts of a tracked frame are corrections (non-conditioning, SAM2's
      default `add_all_frames_to_correct_as_cond=False`), so only each object's first prompt
      is a conditioning frame and the bank is flat without a cap;
    * hole filling (`fill_hole_area`) calls the same SAM2 post-processing, which needs the
      optional `sam2._C` CUDA extension and is skipped with SAM2's warning without it;
    * the per-object IoU is the max over the multimask IoU predictions (1.0 on a mask
      prompt), as the official Gmos fork records `object_ious`.

    `num_frames` only matters for short clips: SAM2 scales the object-pointer temporal
    encoding by ``min(num_frames, max_obj_ptrs_in_encoder) - 1``; pass the clip length to
    reproduce the video predictor on a clip shorter than that, leave None for streams.
    """

    _STREAM_NUM_FRAMES = 2**31 - 1

    def __init__(
        self,
        model: Any,
        video_size: tuple[int, int],
        num_frames: int | None = None,
        bounded_memory: bool = True,
        max_cond_frames: int | None = None,
    ) -> None:
        import torch  # local import: the weight-free path must not need torch

        self._torch = torch
        self.model = model
        self.video_size = (int(video_size[0]), int(video_size[1]))
        self.num_frames = num_frames
        self.bounded_memory = bounded_memory
        self.max_cond_frames = max_cond_frames
        self.device = model.device
        stride = int(getattr(model, "memory_temporal_stride_for_eval", 1))
        self.mem_window = (int(model.num_maskmem) - 1) * stride + 1
        self.ptr_window = int(model.max_obj_ptrs_in_encoder)
        self._slots: dict[int, _Sam2Slot] = {}
        self._feat_frame: int | None = None
        self._feat: tuple[Any, ...] | None = None
        self._src: Any = None
        self._maskmem_pos_enc: list[Any] | None = None
        self.last_logits: dict[int, np.ndarray] = {}

    # -- bookkeeping ---------------------------------------------------------------------
    def reset(self) -> None:
        """Drop every object, all memory and the cached features."""
        self._slots.clear()
        self._feat_frame, self._feat = None, None
        self.last_logits.clear()

    @property
    def num_objects(self) -> int:
        """Number of live slots."""
        return len(self._slots)

    @property
    def slots(self) -> list[int]:
        """Live slots, ascending."""
        return sorted(self._slots)

    def remove(self, slot: int) -> None:
        """Forget one slot (SAM2 tracks objects independently since 2024-12)."""
        self._slots.pop(slot, None)
        self.last_logits.pop(slot, None)

    def memory_frames(self, slot: int) -> tuple[list[int], list[int], list[int]]:
        """(cond frames, non-cond frames with mask memory, non-cond frames kept) of a slot."""
        s = self._slots[slot]
        with_mem = [f for f, o in s.non_cond.items() if o.get("maskmem_features") is not None]
        return sorted(s.cond), sorted(with_mem), sorted(s.non_cond)

    # -- features ------------------------------------------------------------------------
    def _features(self, frame_idx: int, frame_input: Any) -> tuple[Any, ...]:
        """(vision_feats, vision_pos_embeds, feat_sizes) for one frame, batch 1."""
        if frame_input is None:
            if self._feat_frame != frame_idx or self._feat is None:
                raise ValueError(f"no features for frame {frame_idx}: pass frame_input")
            return self._feat
        if self._feat_frame == frame_idx and self._feat is not None and frame_input is self._src:
            return self._feat
        torch = self._torch
        if isinstance(frame_input, dict):
            backbone_out = frame_input
        else:
            img = (
                frame_input
                if isinstance(frame_input, torch.Tensor)
                else torch.as_tensor(frame_input)
            )
            if img.dim() == 3:
                img = img.unsqueeze(0)
            backbone_out = self.model.forward_image(img.to(self.device).float())
        # Shallow copies so SAM2's list handling never touches the caller's backbone_out.
        prepared = self.model._prepare_backbone_features(
            {
                "backbone_fpn": list(backbone_out["backbone_fpn"]),
                "vision_pos_enc": list(backbone_out["vision_pos_enc"]),
            }
        )
        self._feat_frame, self._src = frame_idx, frame_input
        self._feat = tuple(prepared[1:])
        return self._feat

    # -- one SAM2 step -------------------------------------------------------------------
    def _num_frames(self) -> int:
        return self.num_frames if self.num_frames is not None else self._STREAM_NUM_FRAMES

    def _pos_enc(self, pos: list[Any] | None) -> list[Any] | None:
        # maskmem_pos_enc is identical for every frame and object: keep one copy, like
        # SAM2VideoPredictor's "constants".
        if pos is None:
            return None
        if self._maskmem_pos_enc is None:
            self._maskmem_pos_enc = [x[0:1].clone() for x in pos]
        return self._maskmem_pos_enc

    def _step(
        self,
        frame_idx: int,
        slot: _Sam2Slot,
        feats: tuple[Any, ...],
        is_init_cond_frame: bool,
        mask_inputs: Any,
        reverse: bool,
        run_mem_encoder: bool,
    ) -> tuple[dict[str, Any], float]:
        """`_run_single_frame_inference` for one object, also returning the object IoU."""
        torch = self._torch
        m = self.model
        vision_feats, pos_embeds, feat_sizes = feats
        current_out, sam_outputs, _, _ = m._track_step(
            frame_idx,
            is_init_cond_frame,
            vision_feats,
            pos_embeds,
            feat_sizes,
            None,
            mask_inputs,
            slot.output_dict(),
            self._num_frames(),
            reverse,
            None,
        )
        _, _, ious, low_res_masks, high_res_masks, obj_ptr, object_score_logits = sam_outputs
        # The same tail as SAM2Base.track_step, kept here because track_step drops `ious`.
        current_out["pred_masks"] = low_res_masks
        current_out["pred_masks_high_res"] = high_res_masks
        current_out["obj_ptr"] = obj_ptr
        current_out["object_score_logits"] = object_score_logits
        m._encode_memory_in_output(
            vision_feats,
            feat_sizes,
            None,
            run_mem_encoder,
            high_res_masks,
            object_score_logits,
            current_out,
        )
        maskmem = current_out["maskmem_features"]
        if maskmem is not None:
            # The video predictor stores memories in bf16; do the same for equal results.
            maskmem = maskmem.to(torch.bfloat16)
        pred_masks = low_res_masks
        fill = int(getattr(m, "fill_hole_area", 0))
        if fill > 0:
            # sam2 (and torch) only on the SAM2 tracker's path, as in __init__.
            from sam2.utils.misc import fill_holes_in_mask_scores

            pred_masks = fill_holes_in_mask_scores(pred_masks, fill)
        compact = {
            "maskmem_features": maskmem,
            "maskmem_pos_enc": self._pos_enc(current_out["maskmem_pos_enc"]),
            "pred_masks": pred_masks,
            "obj_ptr": obj_ptr,
            "object_score_logits": object_score_logits,
        }
        return compact, float(ious.float().amax(-1).reshape(-1)[0])

    def _to_video_res(self, slot_id: int, pred_masks: Any) -> TrackOutput:
        torch = self._torch
        logits = torch.nn.functional.interpolate(
            pred_masks.float(), size=self.video_size, mode="bilinear", align_corners=False
        )[0, 0]
        arr = logits.cpu().numpy().astype(np.float32)
        self.last_logits[slot_id] = arr
        return TrackOutput(arr > 0.0, 0.0)

    # -- public API ----------------------------------------------------------------------
    def add_mask(
        self, frame_idx: int, slot: int, mask: np.ndarray, frame_input: Any = None
    ) -> TrackOutput:
        """`SAM2VideoPredictor.add_new_mask` + its preflight memory encoding, for one slot."""
        torch = self._torch
        with torch.inference_mode():
            feats = self._features(frame_idx, frame_input)
            s = self._slots.setdefault(slot, _Sam2Slot())
            m = self.model
            size = m.image_size
            mask_t = (
                torch.as_tensor(np.asarray(mask, dtype=bool))[None, None].float().to(self.device)
            )
            if mask_t.shape[-2:] != (size, size):
                mask_t = torch.nn.functional.interpolate(
                    mask_t, size=(size, size), align_corners=False, mode="bilinear", antialias=True
                )
                mask_t = (mask_t >= 0.5).float()
            is_init = not s.was_tracked(frame_idx)
            reverse = False if is_init else s.reverse
            out, iou = self._step(frame_idx, s, feats, is_init, mask_t, reverse, False)
            # propagate_in_video_preflight: encode the prompt memory from the (binarised)
            # upsampled low-res mask, "as what users see".
            high_res = torch.nn.functional.interpolate(
                out["pred_masks"], size=(size, size), mode="bilinear", align_corners=False
            )
            maskmem, pos = m._encode_new_memory(
                current_vision_feats=feats[0],
                feat_sizes=feats[2],
                pred_masks_high_res=high_res,
                object_score_logits=out["object_score_logits"],
                is_mask_from_pts=True,
            )
            out["maskmem_features"] = maskmem.to(torch.bfloat16)
            out["maskmem_pos_enc"] = self._pos_enc(pos)
            is_cond = is_init or bool(getattr(m, "add_all_frames_to_correct_as_cond", False))
            if is_cond:
                s.cond[frame_idx] = out
                s.non_cond.pop(frame_idx, None)
            else:
                s.non_cond[frame_idx] = out
            res = self._to_video_res(slot, out["pred_masks"])
            self._prune(frame_idx)
            return TrackOutput(res.mask, iou)

    def track(
        self, frame_idx: int, frame_input: Any, reverse: bool = False
    ) -> dict[int, TrackOutput]:
        """One step of `propagate_in_video` for every slot (ascending slot order)."""
        torch = self._torch
        out: dict[int, TrackOutput] = {}
        with torch.inference_mode():
            feats = self._features(frame_idx, frame_input) if self._slots else None
            for slot in self.slots:
                s = self._slots[slot]
                if frame_idx in s.cond:
                    # A prompt frame: SAM2 re-uses the consolidated prompt output.
                    res = self._to_video_res(slot, s.cond[frame_idx]["pred_masks"])
                    out[slot] = TrackOutput(res.mask, 1.0)
                else:
                    compact, iou = self._step(frame_idx, s, feats, False, None, reverse, True)
                    s.non_cond[frame_idx] = compact
                    res = self._to_video_res(slot, compact["pred_masks"])
                    out[slot] = TrackOutput(res.mask, iou)
                s.mark_tracked(frame_idx, reverse)
            self._prune(frame_idx)
        return out

    def _prune(self, frame_idx: int) -> None:
        """Drop what SAM2 can no longer attend to from `frame_idx` onwards."""
        if not self.bounded_memory:
            return
        for s in self._slots.values():
            for f in list(s.non_cond):
                d = abs(frame_idx - f)
                if d >= self.ptr_window:
                    del s.non_cond[f]
                elif d >= self.mem_window and s.non_cond[f]["maskmem_features"] is not None:
                    # Only the object pointer of such frames is read (as an obj-ptr token).
                    s.non_cond[f] = {"obj_ptr": s.non_cond[f]["obj_ptr"], "maskmem_features": None}
            cap = self.max_cond_frames
            if cap is None and int(self.model.max_cond_frames_in_attn) > 0:
                # SAM2 itself only attends to this many (closest) conditioning frames.
                cap = int(self.model.max_cond_frames_in_attn)
            if cap is not None and len(s.cond) > cap:
                closest = sorted(s.cond, key=lambda t: (abs(t - frame_idx), t))[:cap]
                for f in list(s.cond):
                    # Unselected conditioning frames inside the memory window are still
                    # read as ordinary memories by SAM2, so those stay too.
                    if f not in closest and abs(f - frame_idx) >= self.mem_window:
                        del s.cond[f]
