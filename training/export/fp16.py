"""fp16 ONNX export whose numerically sensitive ops stay in fp32 by explicit casts in the graph.

TensorRT 11 builds every network strongly typed (and 10.x does with the STRONGLY_TYPED flag):
an engine has exactly the precision of its ONNX graph, so the fp32 islands must be IN the
graph, not builder hints. The part module is copied, its weights cast to fp16 (the
normalisations' affine weights stay fp32), and while it is traced these functions compute
in fp32 on fp16 inputs, casting back after:

- LayerNorm (``F.layer_norm``; ``LayerNormalization`` nodes) and the channel LayerNorm2d of
  the Gmos head and SAM2 (its mean / pow / sqrt reductions): the variance overflows fp16 on
  ViT activations (NVIDIA/TensorRT#2564);
- softmax inside scaled-dot-product attention (the two matmuls stay fp16);
- RoPE: the cos/sin tables and the rotation (π³ decoder, Gmos head);
- reductions (``Tensor.mean`` / ``sum`` / ``amax`` on fp16 tensors).

Inputs and outputs stay float32 (the `Backend` protocol), cast at the graph's edges.
`FP32_OPS` lists the op types that must have float32 inputs in the exported graph;
`graph_precision_report` checks a graph against it.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmos_core.models import gmos_layers, layers, pi3

__all__ = [
    "FP32_OPS",
    "Fp16Part",
    "fp16_islands",
    "graph_precision_report",
]

# Op types that must run in fp32 inside an fp16 graph (their first input is float32).
FP32_OPS: tuple[str, ...] = (
    "LayerNormalization",
    "Softmax",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "Pow",
    "Sqrt",
    "Sin",
    "Cos",
)


def _sdpa_fp32_softmax(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    **kwargs: Any,
) -> Tensor:
    """Scaled dot-product attention with fp16 matmuls and an fp32 softmax (inference only)."""
    if attn_mask is not None or is_causal or dropout_p:
        raise NotImplementedError("fp16 export: attention masks / dropout are not exported")
    s = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    logits = (q * s) @ k.transpose(-2, -1)
    return torch.softmax(logits.float(), dim=-1).to(q.dtype) @ v


@contextlib.contextmanager
def fp16_islands() -> Iterator[None]:
    """While tracing: the sensitive functions compute in fp32 (see the module docstring)."""
    # Importing sam2 initialises its global Hydra config (gmos_core.models.sam2_features):
    # only when a graph is traced, not when this module is imported.
    import sam2.modeling.sam2_utils as sam2_utils

    orig_ln = F.layer_norm
    orig_sdpa = F.scaled_dot_product_attention
    orig_apply = layers.apply_rope2d
    orig_tables = layers.rope2d_cos_sin
    orig_head_rope = gmos_layers.RotaryPositionEmbedding2D.forward
    orig_ln2d = {cls: cls.forward for cls in (gmos_layers.LayerNorm2d, sam2_utils.LayerNorm2d)}

    def layer_norm(x: Tensor, shape: Any, weight: Any = None, bias: Any = None, eps: float = 1e-5):
        w = weight.float() if weight is not None else None
        b = bias.float() if bias is not None else None
        return orig_ln(x.float(), shape, w, b, eps).to(x.dtype)

    def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        return orig_apply(x.float(), cos.float(), sin.float()).to(x.dtype)

    def tables(pos: Tensor, head_dim: int, base: float, dtype: torch.dtype):
        return orig_tables(pos, head_dim, base, torch.float32)

    def head_rope(self: Any, x: Tensor, pos: Tensor) -> Tensor:
        return orig_head_rope(self, x.float(), pos).to(x.dtype)

    def ln2d_for(cls: type) -> Any:
        def forward(self: Any, x: Tensor) -> Tensor:
            return orig_ln2d[cls](self, x.float()).to(x.dtype)

        return forward

    orig_reduce = {name: getattr(torch.Tensor, name) for name in ("mean", "sum", "amax")}

    def reduce_for(name: str) -> Any:
        def reduce(self: Tensor, *args: Any, **kwargs: Any) -> Tensor:
            if self.dtype != torch.float16:
                return orig_reduce[name](self, *args, **kwargs)
            return orig_reduce[name](self.float(), *args, **kwargs).to(self.dtype)

        return reduce

    for name in orig_reduce:
        setattr(torch.Tensor, name, reduce_for(name))
    F.layer_norm = layer_norm
    F.scaled_dot_product_attention = _sdpa_fp32_softmax
    layers.apply_rope2d = apply_rope
    layers.rope2d_cos_sin = tables
    pi3.rope2d_cos_sin = tables
    gmos_layers.RotaryPositionEmbedding2D.forward = head_rope
    for cls in orig_ln2d:
        cls.forward = ln2d_for(cls)
    try:
        yield
    finally:
        F.layer_norm = orig_ln
        F.scaled_dot_product_attention = orig_sdpa
        layers.apply_rope2d = orig_apply
        layers.rope2d_cos_sin = orig_tables
        pi3.rope2d_cos_sin = orig_tables
        gmos_layers.RotaryPositionEmbedding2D.forward = orig_head_rope
        for cls, fwd in orig_ln2d.items():
            cls.forward = fwd
        for name, fn in orig_reduce.items():
            setattr(torch.Tensor, name, fn)


def _is_norm(m: nn.Module) -> bool:
    import sam2.modeling.sam2_utils as sam2_utils  # see fp16_islands

    return isinstance(m, (nn.LayerNorm, gmos_layers.LayerNorm2d, sam2_utils.LayerNorm2d))


class Fp16Part(nn.Module):
    """An fp16 copy of a part module (float32 in, float32 out), for export under
    `fp16_islands()`. The original module is not touched (it is deep-copied).

    Position tables that the export precomputes (π³'s fixed grid, Hiera's position embedding)
    are cast with the weights, so nothing promotes the graph back to fp32 by accident.
    """

    def __init__(self, part: nn.Module) -> None:
        super().__init__()
        self.part = copy.deepcopy(part).half().eval()
        for m in self.part.modules():
            if _is_norm(m):
                m.float()  # affine weights of the fp32 normalisations stay fp32
            fixed = getattr(m, "fixed_pos_embed", None)
            if torch.is_tensor(fixed):
                m.fixed_pos_embed = fixed.half()
            get_pos = m.__dict__.get("_get_pos_embed")  # Hiera's precomputed table
            if get_pos is not None:
                m._get_pos_embed = lambda hw, f=get_pos: f(hw).half()

    def forward(self, *inputs: Tensor) -> Any:
        out = self.part(*(x.half() for x in inputs))
        if isinstance(out, tuple):
            return tuple(o.float() for o in out)
        return out.float()


def graph_precision_report(onnx_path: str | Path) -> dict[str, Any]:
    """What precision an exported graph really computes in.

    Returns:
        {"fp32_ops": {op: n} of `FP32_OPS` nodes with float32 inputs, "fp16_ops": the same
        with float16 inputs (should be empty), "compute_fp16": n MatMul/Conv/Gemm nodes on
        float16, "compute_fp32": n of them on float32, "casts": n Cast nodes}.
    """
    import onnx  # optional (extra "onnx"): only this report reads graphs

    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path), load_external_data=False))
    g = model.graph
    types: dict[str, int] = {}
    for vi in [*g.input, *g.output, *g.value_info]:
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    fp32_ops: Counter[str] = Counter()
    fp16_ops: Counter[str] = Counter()
    compute: Counter[str] = Counter()
    for node in g.node:
        t = types.get(node.input[0]) if node.input else None
        if node.op_type in FP32_OPS:
            (fp32_ops if t == f32 else fp16_ops)[node.op_type] += 1
        elif node.op_type in ("MatMul", "Conv", "Gemm", "ConvTranspose"):
            compute["fp16" if t == f16 else "fp32" if t == f32 else "other"] += 1
    return {
        "fp32_ops": dict(fp32_ops),
        "fp16_ops": dict(fp16_ops),
        "compute_fp16": compute["fp16"],
        "compute_fp32": compute["fp32"],
        "casts": sum(n.op_type == "Cast" for n in g.node),
    }
