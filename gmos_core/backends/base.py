"""The backend interface: five fixed-shape model parts, one `run(part, inputs)` protocol.

A Gmos frame model splits into five graphs, each exported and built with fixed shapes:

=================  ===========================================  ============================================
part               inputs (float32)                             outputs (float32)
=================  ===========================================  ============================================
``pi3_encoder``    ``images`` (1, 3, H, W) RGB in [0, 1]        ``tokens`` (1, h·w, D)
``pi3_decoder``    ``tokens`` (1, N, h·w, D)                    ``features`` (1, h, w, D) of the middle frame
``sam2_encoder``   ``image`` (1, 3, S, S) ImageNet-normalised   ``bottleneck`` (1, 256, g, g) (+no_mem_embed),
                                                                ``high_res_0`` (1, C/8, 4g, 4g),
                                                                ``high_res_1`` (1, C/4, 2g, 2g)
``gmos_s_head``    ``token`` (1, h, w, D), ``bottleneck``,       ``fg_mask`` (1, 1, 4g, 4g), ``iou_pred``
                   ``high_res_0``, ``high_res_1``                (1, 1), ``conf_pred`` (1, 1)
``gmos_head``      same as ``gmos_s_head``                      ``mask`` (1, Q, 4g, 4g), ``motion_logits``,
                                                                ``iou_pred``, ``conf_pred`` (1, Q, 1)
=================  ===========================================  ============================================

H × W is the π³ input (a multiple of the 14-px patch, h = H/14, w = W/14), N the window length
(5), S the SAM2 input side (1024 official), g = S/16 the head grid, C the head width, Q the object
queries. Every backend (torch, onnxruntime, TensorRT) implements the same `Backend` protocol on
numpy arrays, so the streaming runtime and the benchmark do not care which one runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from gmos_core.models.prediction import WindowGeometry, head_outputs_to_prediction
from gmos_core.models.preprocess import pi3_preprocess, pi3_target_size, sam2_preprocess
from gmos_core.operating_point import OperatingPoint

__all__ = [
    "HEAD_PARTS",
    "PARTS",
    "Backend",
    "BackendError",
    "BackendFrameModel",
    "BackendUnavailable",
    "GeometryArrays",
    "ModelShapes",
    "PartSpec",
    "SegmentationArrays",
    "TensorSpec",
    "head_part",
    "onnx_files",
    "onnx_sha256",
]

PARTS: tuple[str, ...] = ("pi3_encoder", "pi3_decoder", "sam2_encoder", "gmos_s_head", "gmos_head")
HEAD_PARTS: dict[str, str] = {"gmos_s": "gmos_s_head", "gmos": "gmos_head"}

# Default camera frame per configuration: what the engines are built for unless told otherwise.
# paper: 854x480 (DAVIS 480p, 16:9) -> 672x378 π³ input, the official resolution.
DEFAULT_FRAME_HW: dict[str, tuple[int, int]] = {"paper": (480, 854), "micro": (128, 128)}


class BackendError(RuntimeError):
    """A backend cannot run a request (unknown part, wrong input names or shapes)."""


class BackendUnavailable(BackendError):
    """A backend or execution provider is not installed / has no device here (message says why)."""


def head_part(variant: str) -> str:
    """Part name of the head of a variant ("gmos_s" -> "gmos_s_head", "gmos" -> "gmos_head")."""
    if variant not in HEAD_PARTS:
        raise ValueError(f"variant must be one of {sorted(HEAD_PARTS)}, got {variant!r}")
    return HEAD_PARTS[variant]


def onnx_files(path: str | Path) -> list[Path]:
    """The files an ONNX model consists of: the .onnx file, then its external-data files (sorted).

    Only the graph is parsed (weights are not loaded), so this is cheap for multi-GB models.
    """
    import onnx  # optional (extra "onnx"): only the ONNX-file helpers need it

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    locations = set()
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            for entry in init.external_data:
                if entry.key == "location":
                    locations.add(entry.value)
    return [path] + [path.parent / loc for loc in sorted(locations)]


def onnx_sha256(path: str | Path) -> str:
    """sha256 over the bytes of the .onnx file followed by its external-data files (sorted).

    The engine cache keys on it: changing either the graph or a weight changes the key.
    """
    digest = hashlib.sha256()
    for f in onnx_files(path):
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output of a part: fixed shape, numpy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def zeros(self) -> np.ndarray:
        """An all-zero array of this spec (buffers, smoke runs)."""
        return np.zeros(self.shape, dtype=self.dtype)


@dataclass(frozen=True)
class PartSpec:
    """Fixed-shape signature of one part (the ONNX graph / TensorRT engine I/O)."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def input_shapes(self) -> dict[str, list[int]]:
        """{input name: shape} (JSON-friendly lists), used in export metadata and engine keys."""
        return {t.name: list(t.shape) for t in self.inputs}

    def check_inputs(self, inputs: dict[str, np.ndarray]) -> None:
        """Raise `BackendError` naming the problem if `inputs` do not match this signature."""
        names = set(inputs)
        if names != set(self.input_names):
            raise BackendError(
                f"{self.name}: expected inputs {list(self.input_names)}, got {sorted(names)}"
            )
        for spec in self.inputs:
            arr = inputs[spec.name]
            if tuple(arr.shape) != spec.shape:
                raise BackendError(
                    f"{self.name}: input {spec.name!r} must be {spec.shape} (fixed-shape "
                    f"engine), got {tuple(arr.shape)}"
                )

    def random_inputs(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Plausible random inputs: images in [0, 1], features ~ N(0, 1) (parity checks)."""
        rng = np.random.default_rng(seed)
        out = {}
        for spec in self.inputs:
            if spec.name == "images":
                out[spec.name] = rng.random(spec.shape, dtype=np.float32)
            else:
                out[spec.name] = rng.standard_normal(spec.shape, dtype=np.float32)
        return out


@dataclass(frozen=True)
class ModelShapes:
    """Everything that fixes the tensor shapes of the five parts.

    Attributes:
        config_name: the model configuration ("micro", "paper", ...).
        pi3_hw: π³ input (H, W) in pixels, multiples of `patch`.
        num_frames: window length N.
        sam2_size: SAM2 input side S.
        pi3_dim: π³ feature width D.
        head_dim: head width C (high-res maps have C/8 and C/4 channels).
        sam_dim: SAM2 bottleneck channels.
        grid: head grid g (SAM2 stride-16 map side).
        num_obj_tokens: proposer queries Q.
        patch: π³ patch size.
    """

    config_name: str
    pi3_hw: tuple[int, int]
    num_frames: int
    sam2_size: int
    pi3_dim: int
    head_dim: int
    sam_dim: int
    grid: int
    num_obj_tokens: int
    patch: int = 14

    @classmethod
    def from_config(cls, cfg: Any, frame_hw: tuple[int, int] | None = None) -> ModelShapes:
        """Shapes for a `GmosModelConfig` and a camera frame size (H, W).

        The π³ input follows the official pixel-budget rule (`pi3_target_size`), so the engine
        resolution is a function of the camera's aspect ratio: one engine set per camera.
        """
        hw = frame_hw or DEFAULT_FRAME_HW.get(cfg.name, (480, 854))
        w, h = pi3_target_size(hw[1], hw[0], cfg.pi3.pixel_limit)
        return cls(
            config_name=cfg.name,
            pi3_hw=(h, w),
            num_frames=cfg.num_frames,
            sam2_size=cfg.sam2.image_size,
            pi3_dim=cfg.pi3.embed_dim,
            head_dim=cfg.head.embed_dim,
            sam_dim=cfg.head.sam_dim,
            grid=cfg.head.grid,
            num_obj_tokens=cfg.head.num_obj_tokens,
        )

    @property
    def grid_hw(self) -> tuple[int, int]:
        """π³ patch grid (h, w)."""
        return self.pi3_hw[0] // self.patch, self.pi3_hw[1] // self.patch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelShapes:
        d = dict(d)
        d["pi3_hw"] = tuple(d["pi3_hw"])
        return cls(**d)

    def specs(self) -> dict[str, PartSpec]:
        """The `PartSpec` of each of the five parts for these shapes."""
        h, w = self.grid_hw
        hw, d, n, g, c, q = (
            h * w,
            self.pi3_dim,
            self.num_frames,
            self.grid,
            self.head_dim,
            self.num_obj_tokens,
        )
        t = TensorSpec
        sam_out = (
            t("bottleneck", (1, self.sam_dim, g, g)),
            t("high_res_0", (1, c // 8, 4 * g, 4 * g)),
            t("high_res_1", (1, c // 4, 2 * g, 2 * g)),
        )
        head_in = (t("token", (1, h, w, d)), *sam_out)
        return {
            "pi3_encoder": PartSpec(
                "pi3_encoder", (t("images", (1, 3, *self.pi3_hw)),), (t("tokens", (1, hw, d)),)
            ),
            "pi3_decoder": PartSpec(
                "pi3_decoder", (t("tokens", (1, n, hw, d)),), (t("features", (1, h, w, d)),)
            ),
            "sam2_encoder": PartSpec(
                "sam2_encoder", (t("image", (1, 3, self.sam2_size, self.sam2_size)),), sam_out
            ),
            "gmos_s_head": PartSpec(
                "gmos_s_head",
                head_in,
                (
                    t("fg_mask", (1, 1, 4 * g, 4 * g)),
                    t("iou_pred", (1, 1)),
                    t("conf_pred", (1, 1)),
                ),
            ),
            "gmos_head": PartSpec(
                "gmos_head",
                head_in,
                (
                    t("mask", (1, q, 4 * g, 4 * g)),
                    t("motion_logits", (1, q, 1)),
                    t("iou_pred", (1, q, 1)),
                    t("conf_pred", (1, q, 1)),
                ),
            ),
        }


@runtime_checkable
class Backend(Protocol):
    """One way of running the five parts. Arrays in, arrays out (float32, fixed shapes).

    Attributes:
        name: "torch", "onnxruntime" or "tensorrt" (plus the device / provider in `describe`).
        shapes: the `ModelShapes` the parts were built for.
    """

    name: str
    shapes: ModelShapes

    @property
    def parts(self) -> tuple[str, ...]:
        """The parts this backend can run (a torch Gmos-S model has no proposer head)."""
        ...

    def run(self, part: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one part on named (fixed-shape) inputs; returns its named outputs."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description (backend, device / providers, versions) for reports."""
        ...


# --------------------------------------------------------------------------------------------
# FrameModel adapter
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeometryArrays:
    """Per-frame π³ tokens of one frame: (h·w, D) float32 and its grid (h, w)."""

    tokens: np.ndarray
    grid_hw: tuple[int, int]


@dataclass(frozen=True)
class SegmentationArrays:
    """SAM2 maps of one frame: bottleneck (1, 256, g, g) with no_mem_embed, high_res_0
    (1, C/8, 4g, 4g), high_res_1 (1, C/4, 2g, 2g); float32.

    `backbone_out` is the raw SAM2 ``forward_image`` dict, kept only by the torch backend and
    only when asked (`BackendFrameModel(keep_sam2_backbone=True)`): it is what a SAM2 tracker
    consumes, so the frame is encoded once. Engines do not export it (None).
    """

    bottleneck: np.ndarray
    high_res_0: np.ndarray
    high_res_1: np.ndarray
    backbone_out: Any = None


class BackendFrameModel:
    """The one frame model: the streaming `FrameModel` (geometry_features /
    segmentation_features / predict) on top of any `Backend` (torch, onnxruntime, TensorRT).
    The node, the CLIs, calibration and the benchmarks all run frames through this class.

    Args:
        backend: runs the parts; must have the π³ parts, SAM2 and the head of `variant`.
        variant: "gmos_s" (foreground) or "gmos" (proposals).
        pixel_limit: π³ pixel budget of the configuration (the frame is resized with the
            official rule; the result must equal the engine resolution `backend.shapes.pi3_hw`).
        top_k: proposals kept per frame.
        operating_point: decision thresholds (those of the bundle the engines were exported
            from, else the paper's); `predict` applies the proposal mask threshold.
        keep_sam2_backbone: torch backend only: keep SAM2's raw ``backbone_out`` with each
            frame's features (for a SAM2 tracker, which would otherwise re-encode the frame).

    A backend with a ``reshape(pi3_hw)`` method (torch) follows the camera's frame size; a
    fixed-shape one (ONNX, engines) refuses another size with the command that rebuilds it.
    """

    def __init__(
        self,
        backend: Backend,
        variant: str,
        pixel_limit: int,
        top_k: int = 20,
        operating_point: Any = None,
        keep_sam2_backbone: bool = False,
    ) -> None:
        self.backend = backend
        self.operating_point = operating_point or OperatingPoint()
        self.shapes = backend.shapes
        self.head = head_part(variant)
        self.variant = variant
        self.pixel_limit = pixel_limit
        self.top_k = top_k
        if keep_sam2_backbone and not hasattr(backend, "sam2_features"):
            raise BackendError(
                f"the {backend.name} backend does not keep SAM2's backbone_out (a SAM2 tracker "
                "needs the torch backend; use tracker mask_iou)"
            )
        self.keep_sam2_backbone = keep_sam2_backbone
        needed = ("pi3_encoder", "pi3_decoder", "sam2_encoder", self.head)
        missing = [p for p in needed if p not in backend.parts]
        if missing:
            raise BackendError(
                f"{backend.name} backend lacks parts {missing} for variant {variant!r}"
            )

    @property
    def mode(self) -> str:
        return self.variant

    @property
    def sam_model(self) -> Any:
        """The torch SAM2 model behind the features (torch backend), else None."""
        return getattr(self.backend, "sam_model", None)

    def describe(self) -> dict[str, Any]:
        """The backend's description plus the variant (for logs and reports)."""
        return {**self.backend.describe(), "variant": self.variant}

    def pi3_input(self, frame_rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (1, 3, H', W') float32 π³ input; H' × W' must be the engine's."""
        img = pi3_preprocess([frame_rgb], pixel_limit=self.pixel_limit).numpy()
        hw = (int(img.shape[-2]), int(img.shape[-1]))
        if hw != self.shapes.pi3_hw and hasattr(self.backend, "reshape"):
            self.shapes = self.backend.reshape(hw)
        if hw != self.shapes.pi3_hw:
            raise BackendError(
                f"frame {frame_rgb.shape[1]}x{frame_rgb.shape[0]} gives a π³ input of "
                f"{img.shape[-1]}x{img.shape[-2]} but the {self.backend.name} parts were built for "
                f"{self.shapes.pi3_hw[1]}x{self.shapes.pi3_hw[0]}: export / build them for this "
                "camera (gmos-export --frame-hw H W)"
            )
        return img

    def sam2_input(self, frame_rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (1, 3, S, S) float32 normalised SAM2 input."""
        return sam2_preprocess(frame_rgb, resolution=self.shapes.sam2_size)[None].numpy()

    def geometry_features(self, frame_rgb: np.ndarray) -> GeometryArrays:
        """(H, W, 3) uint8 -> the frame's π³ tokens (computed once per frame, cached by the runtime)."""
        out = self.backend.run("pi3_encoder", {"images": self.pi3_input(frame_rgb)})
        return GeometryArrays(out["tokens"][0], self.shapes.grid_hw)

    def segmentation_features(self, frame_rgb: np.ndarray) -> SegmentationArrays:
        """(H, W, 3) uint8 -> SAM2 bottleneck (+no_mem_embed) and the two high-res maps."""
        image = self.sam2_input(frame_rgb)
        if self.keep_sam2_backbone:
            f = self.backend.sam2_features(image)  # type: ignore[attr-defined]
            return SegmentationArrays(
                f.bottleneck.cpu().numpy(),
                f.high_res[0].cpu().numpy(),
                f.high_res[1].cpu().numpy(),
                backbone_out=f.backbone_out,
            )
        out = self.backend.run("sam2_encoder", {"image": image})
        return SegmentationArrays(out["bottleneck"], out["high_res_0"], out["high_res_1"])

    def head_outputs(
        self, geometry: Any, segmentation: SegmentationArrays
    ) -> dict[str, np.ndarray]:
        """Window decoder on the N frames' tokens, then the head, for the middle frame."""
        tokens = self._window_tokens(geometry)
        feats = self.backend.run("pi3_decoder", {"tokens": tokens})["features"]
        return self._run_head(feats, segmentation)

    def _window_tokens(self, geometry: Any) -> np.ndarray:
        """(1, N, h·w, D) float32 decoder input from the window's cached per-frame tokens."""
        if len(geometry) != self.shapes.num_frames:
            raise BackendError(
                f"window has {len(geometry)} frames but the π³ decoder was built for "
                f"{self.shapes.num_frames}"
            )
        return np.stack([np.asarray(g.tokens, dtype=np.float32) for g in geometry])[None]

    def _run_head(
        self, feats: np.ndarray, segmentation: SegmentationArrays
    ) -> dict[str, np.ndarray]:
        return self.backend.run(
            self.head,
            {
                "token": feats,
                "bottleneck": segmentation.bottleneck,
                "high_res_0": segmentation.high_res_0,
                "high_res_1": segmentation.high_res_1,
            },
        )

    def predict(self, geometry: Any, segmentation: Any, out_hw: tuple[int, int]) -> Any:
        """`ForegroundPrediction` (gmos_s) or `ProposalPrediction` (gmos) at `out_hw`."""
        return self.postprocess(self.head_outputs(geometry, segmentation), out_hw)

    @property
    def window_geometry(self) -> bool:
        """Whether `predict_with_geometry` is available: a backend that runs the π³ heads on
        the decoder pass (torch, with a π³ whose heads were loaded from a checkpoint or
        bundle). Exported graphs have no heads: False."""
        return bool(getattr(self.backend, "has_window_geometry", False))

    def predict_with_geometry(
        self, geometry: Any, segmentation: SegmentationArrays, out_hw: tuple[int, int]
    ) -> tuple[Any, WindowGeometry]:
        """`predict` plus the π³ heads' outputs for the window, from ONE decoder pass.

        The prediction equals `predict`'s (the decoder features are the same); the geometry
        has no stamps yet (`StreamingSegmenter` sets them).

        Raises:
            BackendError: the backend has no π³ heads (`window_geometry` is False).
        """
        if not self.window_geometry:
            raise BackendError(f"the {self.backend.name} backend does not run the π³ heads")
        tokens = self._window_tokens(geometry)
        out = self.backend.run_window_geometry(tokens)  # type: ignore[attr-defined]
        head = self._run_head(out["features"], segmentation)
        geom = WindowGeometry(
            local_points=out["local_points"][0],
            conf=out["conf"][0],
            camera_poses=out["camera_poses"][0],
            center=len(geometry) // 2,
        )
        return self.postprocess(head, out_hw), geom

    def postprocess(self, out: dict[str, np.ndarray], out_hw: tuple[int, int]) -> Any:
        """Head outputs -> prediction (`gmos_core.models.prediction`, shared by every backend)."""
        return head_outputs_to_prediction(
            out,
            out_hw,
            top_k=self.top_k,
            mask_logit_threshold=self.operating_point.mask_logit_threshold,
        )
