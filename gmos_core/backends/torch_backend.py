"""Torch backend, and the five part modules that the ONNX exporter traces.

The part modules (`Pi3EncoderPart`, `Pi3DecoderPart`, `Sam2EncoderPart`, `HeadPart`) are thin
`nn.Module` wrappers with tensor-only inputs and tuple outputs, in the order of
`ModelShapes.specs()`: exactly what `torch.onnx.export` needs, and exactly what the torch
backend runs, so the exported graphs and the torch reference cannot drift apart.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from gmos_core.backends.base import BackendError, BackendUnavailable, ModelShapes, PartSpec
from gmos_core.models.gmos import GmosProposer, GmosS
from gmos_core.models.pi3 import Pi3Encoder
from gmos_core.models.sam2_features import Sam2FeatureExtractor, Sam2Features
from gmos_core.precision import AUTOCAST_DTYPES, autocast, check_precision

if TYPE_CHECKING:
    from gmos_core.models.build import GmosTorchModel

__all__ = [
    "HeadPart",
    "Pi3DecoderPart",
    "Pi3EncoderPart",
    "Pi3GeometryPart",
    "Sam2EncoderPart",
    "TorchBackend",
    "export_constants",
    "fixed_hiera_pos_embed",
    "fixed_pi3_grid",
    "has_loaded_heads",
    "part_modules",
    "AUTOCAST_DTYPES",
]


def _as_tensor(v: np.ndarray) -> Tensor:
    """A tensor sharing the array's memory AND strides: a SAM2 map handed on from the previous
    part keeps the (non-contiguous) layout it had in torch, so the next part picks the same
    kernels and torch fp32 stays bitwise what the modules give when chained directly (a
    contiguous copy changes convolution kernels and the last bit)."""
    try:
        return torch.from_numpy(v)
    except ValueError:  # negative strides (a flipped view): copy
        return torch.from_numpy(np.ascontiguousarray(v))


class Pi3EncoderPart(nn.Module):
    """(1, 3, H, W) RGB in [0, 1] -> (1, h·w, D) DINOv2 patch tokens (per frame, cacheable)."""

    def __init__(self, pi3: Pi3Encoder) -> None:
        super().__init__()
        self.pi3 = pi3

    def forward(self, images: Tensor) -> Tensor:
        return self.pi3.encode_frames(images)


class Pi3DecoderPart(nn.Module):
    """(1, N, h·w, D) cached tokens -> (1, h, w, D) decoder output of the middle frame.

    Only the middle frame leaves the graph: it is all the head consumes, and it saves N-1
    feature maps of device-to-host traffic per window.
    """

    def __init__(self, pi3: Pi3Encoder, grid_hw: tuple[int, int]) -> None:
        super().__init__()
        self.pi3 = pi3
        self.grid_hw = (int(grid_hw[0]), int(grid_hw[1]))

    def forward(self, tokens: Tensor) -> Tensor:
        h, w = self.grid_hw
        feats = self.pi3.decode_window(tokens, h, w)  # (1, N, h, w, D)
        return feats[:, tokens.shape[1] // 2]


class Pi3GeometryPart(nn.Module):
    """`Pi3DecoderPart` plus the π³ heads on the same decoder pass (a π³ with loaded heads).

    (1, N, h·w, D) tokens -> (features (1, h, w, D) of the middle frame, exactly those of
    `Pi3DecoderPart`; local_points (1, N, H, W, 3); conf (1, N, H, W); camera_poses
    (1, N, 4, 4)), H × W the π³ input. Torch backend only (no exported graph).
    """

    def __init__(self, pi3: Pi3Encoder, grid_hw: tuple[int, int]) -> None:
        super().__init__()
        self.pi3 = pi3
        self.grid_hw = (int(grid_hw[0]), int(grid_hw[1]))

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        h, w = self.grid_hw
        feats, geom = self.pi3.decode_window_geometry(tokens, h, w)
        return feats[:, tokens.shape[1] // 2], geom.local_points, geom.conf, geom.camera_poses


def has_loaded_heads(pi3: Pi3Encoder | None) -> bool:
    """Whether a π³ carries trained geometry heads (built with them and loaded from a file)."""
    return bool(pi3 is not None and pi3.with_heads and pi3.heads_loaded)


class Sam2EncoderPart(nn.Module):
    """(1, 3, S, S) normalised image -> (bottleneck + no_mem_embed, high_res_0, high_res_1).

    `Sam2FeatureExtractor` returns a dataclass with the raw `backbone_out` dict as well; the
    exported graph keeps only the three maps the heads need.
    """

    def __init__(self, sam2: Sam2FeatureExtractor) -> None:
        super().__init__()
        self.sam2 = sam2

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        f = self.sam2(image)
        return f.bottleneck, f.high_res[0], f.high_res[1]


class HeadPart(nn.Module):
    """Gmos-S or proposer head on tensors; returns the head's outputs as a tuple.

    Output order: Gmos-S (fg_mask, iou_pred, conf_pred); proposer (mask, motion_logits,
    iou_pred, conf_pred), as `ModelShapes.specs()`.
    """

    def __init__(self, head: GmosS | GmosProposer) -> None:
        super().__init__()
        self.head = head
        if isinstance(head, GmosS):
            self.keys: tuple[str, ...] = ("fg_mask", "iou_pred", "conf_pred")
        else:
            self.keys = ("mask", "motion_logits", "iou_pred", "conf_pred")

    def forward(
        self, token: Tensor, bottleneck: Tensor, high_res_0: Tensor, high_res_1: Tensor
    ) -> tuple[Tensor, ...]:
        out = self.head(token, bottleneck, high_res_features=[high_res_0, high_res_1])
        return tuple(out[k] for k in self.keys)


@contextlib.contextmanager
def fixed_pi3_grid(pi3: Pi3Encoder, grid_hw: tuple[int, int]) -> Iterator[None]:
    """Temporarily precompute π³'s position embedding for one grid (no antialiased resize in the
    traced graph), restoring the previous fixed-grid state afterwards."""
    enc = pi3.encoder
    prev = enc.fixed_grid
    pi3.set_fixed_grid(*grid_hw)
    try:
        yield
    finally:
        if prev is None:
            pi3.clear_fixed_grid()
        else:
            pi3.set_fixed_grid(*prev)


@contextlib.contextmanager
def fixed_hiera_pos_embed(sam2: Sam2FeatureExtractor) -> Iterator[None]:
    """Temporarily replace SAM2 Hiera's position-embedding resize by its precomputed result.

    Hiera resizes its background position embedding with ``F.interpolate(mode="bicubic")`` on
    every forward; for a fixed input size the result is a constant, but the TorchScript exporter
    does not fold it and TensorRT's ONNX parser has no cubic ``Resize``. The precomputed tensor
    becomes a plain initializer in the graph.
    """
    trunk = sam2.sam_model.image_encoder.trunk
    side = sam2.image_size // 4  # Hiera patch embedding: kernel 7, stride 4, padding 3
    with torch.no_grad():
        table = trunk._get_pos_embed((side, side)).detach().clone()

    def _fixed(hw: tuple[int, int]) -> Tensor:
        if tuple(int(v) for v in hw) != (side, side):
            raise ValueError(
                f"Hiera position embedding was fixed for {side}x{side}, got {tuple(hw)}"
            )
        return table

    trunk._get_pos_embed = _fixed  # instance attribute shadows the method
    try:
        yield
    finally:
        del trunk._get_pos_embed


@contextlib.contextmanager
def export_constants(
    shapes: ModelShapes,
    pi3: Pi3Encoder | None = None,
    sam2: Sam2FeatureExtractor | None = None,
) -> Iterator[None]:
    """Both fixed-size precomputations (π³ and Hiera position embeddings) for tracing."""
    with contextlib.ExitStack() as stack:
        if pi3 is not None:
            stack.enter_context(fixed_pi3_grid(pi3, shapes.grid_hw))
        if sam2 is not None:
            stack.enter_context(fixed_hiera_pos_embed(sam2))
        yield


def part_modules(
    shapes: ModelShapes,
    pi3: Pi3Encoder | None = None,
    sam2: Sam2FeatureExtractor | None = None,
    gmos_s_head: GmosS | None = None,
    gmos_head: GmosProposer | None = None,
) -> dict[str, nn.Module]:
    """The part modules that can be built from the given components (eval mode)."""
    mods: dict[str, nn.Module] = {}
    if pi3 is not None:
        mods["pi3_encoder"] = Pi3EncoderPart(pi3)
        mods["pi3_decoder"] = Pi3DecoderPart(pi3, shapes.grid_hw)
    if sam2 is not None:
        mods["sam2_encoder"] = Sam2EncoderPart(sam2)
    if gmos_s_head is not None:
        mods["gmos_s_head"] = HeadPart(gmos_s_head)
    if gmos_head is not None:
        mods["gmos_head"] = HeadPart(gmos_head)
    return {k: m.eval() for k, m in mods.items()}


class TorchBackend:
    """The reference backend: the torch modules themselves, on CPU or CUDA.

    Args:
        shapes: the fixed shapes (checked on every call, like an engine would).
        pi3, sam2, gmos_s_head, gmos_head: the components; any may be omitted.
        device: "cpu" or "cuda[:i]" (modules are moved there).
        check_shapes: reject inputs that do not match `shapes` (on by default so that the
            torch backend fails exactly where an engine would).
        precision: "fp32" (the reference), or "bf16" / "fp16" to run every part under
            `torch.autocast` (weights stay fp32; matmuls and convolutions run in the low
            precision, reductions and norms where autocast keeps them in fp32). Outputs of `run`
            are always float32 arrays. fp16 on a CPU is refused: autocast has few CPU fp16
            kernels, so it would time and test something no deployment runs.
    """

    name = "torch"

    def __init__(
        self,
        shapes: ModelShapes,
        pi3: Pi3Encoder | None = None,
        sam2: Sam2FeatureExtractor | None = None,
        gmos_s_head: GmosS | None = None,
        gmos_head: GmosProposer | None = None,
        device: str | torch.device = "cpu",
        check_shapes: bool = True,
        precision: str = "fp32",
    ) -> None:
        self.shapes = shapes
        self.device = torch.device(device)
        try:
            check_precision(precision, self.device)
        except ValueError as exc:
            raise ValueError(f"torch backend: {exc}") from exc
        self.precision = precision
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable(
                f"torch backend: device {device!r} requested but torch.cuda.is_available() is "
                f"False (torch {torch.__version__}, CUDA build: {torch.version.cuda})"
            )
        self.modules = {
            k: m.to(self.device)
            for k, m in part_modules(shapes, pi3, sam2, gmos_s_head, gmos_head).items()
        }
        self._specs = shapes.specs()
        self.check_shapes = check_shapes
        # The π³ heads on the decoder pass: only for a π³ whose heads were loaded.
        self._geometry: Pi3GeometryPart | None = None
        if has_loaded_heads(pi3):
            assert pi3 is not None
            self._geometry = Pi3GeometryPart(pi3, shapes.grid_hw).to(self.device).eval()

    @property
    def has_window_geometry(self) -> bool:
        """Whether `run_window_geometry` is available (π³ with loaded heads)."""
        return self._geometry is not None

    @torch.inference_mode()
    def run_window_geometry(self, tokens: np.ndarray) -> dict[str, np.ndarray]:
        """The ``pi3_decoder`` part plus the π³ heads, in one decoder pass.

        Args:
            tokens: (1, N, h·w, D) float32, as the ``pi3_decoder`` input.

        Returns:
            ``features`` (1, h, w, D) (equal to ``run("pi3_decoder", ...)``'s), ``local_points``
            (1, N, H, W, 3), ``conf`` (1, N, H, W), ``camera_poses`` (1, N, 4, 4); float32.

        Raises:
            BackendError: no loaded heads, or tokens of the wrong shape.
        """
        if self._geometry is None:
            raise BackendError("torch backend: this π³ has no loaded geometry heads")
        if self.check_shapes:
            self.spec("pi3_decoder").check_inputs({"tokens": tokens})
        with autocast(self.device, self.precision):
            out = self._geometry(_as_tensor(tokens).to(self.device))
        names = ("features", "local_points", "conf", "camera_poses")
        return {k: v.detach().float().cpu().numpy() for k, v in zip(names, out)}

    @classmethod
    def from_model(
        cls,
        model: GmosTorchModel,
        shapes: ModelShapes,
        device: str | None = None,
        precision: str = "fp32",
    ) -> TorchBackend:
        """Wrap a `GmosTorchModel`'s modules (shared, no copy)."""
        head = model.head
        return cls(
            shapes,
            pi3=model.pi3,
            sam2=model.sam2,
            gmos_s_head=head if isinstance(head, GmosS) else None,
            gmos_head=head if isinstance(head, GmosProposer) else None,
            device=device or model.device,
            precision=precision,
        )

    def reshape(self, pi3_hw: tuple[int, int]) -> ModelShapes:
        """Serve another π³ input size (another camera aspect ratio); returns the new shapes.

        Unlike an engine, the torch modules take any patch-multiple size: only the decoder
        part's grid and the specs follow the size. The modules are shared, nothing is copied.
        """
        self.shapes = dataclasses.replace(self.shapes, pi3_hw=(int(pi3_hw[0]), int(pi3_hw[1])))
        if "pi3_decoder" in self.modules:
            dec = self.modules["pi3_decoder"]
            self.modules["pi3_decoder"] = Pi3DecoderPart(dec.pi3, self.shapes.grid_hw).eval()
        if self._geometry is not None:
            self._geometry = Pi3GeometryPart(self._geometry.pi3, self.shapes.grid_hw).eval()
        self._specs = self.shapes.specs()
        return self.shapes

    @property
    def sam_model(self) -> Any:
        """The SAM2 model whose image features `sam2_encoder` computes (None without it); a
        SAM2 tracker reuses its memory modules."""
        mod = self.modules.get("sam2_encoder")
        return None if mod is None else mod.sam2.sam_model

    @torch.inference_mode()
    def sam2_features(self, image: np.ndarray) -> Sam2Features:
        """`sam2_encoder` on a (1, 3, S, S) float32 array, returning the full `Sam2Features`
        (float32 maps and the untouched ``backbone_out`` a SAM2 tracker consumes)."""
        spec = self.spec("sam2_encoder")
        if self.check_shapes:
            spec.check_inputs({"image": image})
        img = _as_tensor(image).to(self.device)
        sam2 = self.modules["sam2_encoder"].sam2
        with autocast(self.device, self.precision):
            feats = sam2(img)
        if self.precision == "fp32":
            return feats
        return dataclasses.replace(
            feats,
            bottleneck=feats.bottleneck.float(),
            high_res=[f.float() for f in feats.high_res],
        )

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.modules)

    def spec(self, part: str) -> PartSpec:
        if part not in self.modules:
            raise BackendError(f"torch backend has no part {part!r} (has {list(self.modules)})")
        return self._specs[part]

    @torch.inference_mode()
    def run_tensors(self, part: str, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Like `run` on torch tensors already on `device` (no host copies; used by the bench)."""
        spec = self.spec(part)
        args = [inputs[n] for n in spec.input_names]
        with autocast(self.device, self.precision):
            out = self.modules[part](*args)
        outs = out if isinstance(out, tuple) else (out,)
        return dict(zip(spec.output_names, outs))

    def run(self, part: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self.spec(part)
        if self.check_shapes:
            spec.check_inputs(inputs)
        tensors = {k: _as_tensor(v).to(self.device) for k, v in inputs.items()}
        out = self.run_tensors(part, tensors)
        return {k: v.detach().float().cpu().numpy() for k, v in out.items()}

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "device": str(self.device),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "precision": self.precision,
            # TF32 changes fp32 numbers on Ampere and later: say which was in force.
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "parts": list(self.parts),
        }
