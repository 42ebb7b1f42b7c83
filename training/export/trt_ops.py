"""Static TensorRT support check of an ONNX graph: is every node's op type one TensorRT parses?

Source of the list: the operator support matrix ``docs/operators.md`` of ``onnx/onnx-tensorrt``
(the ONNX parser that ships inside TensorRT), revision for **TensorRT 10.15** ("supports operators
in the inclusive range of opset 9 to opset 24"; ONNX-TensorRT changelog: 10.15 GA, 2026-02-02).
`TRT_SUPPORTED_OPS` holds every operator marked ``Y`` there, `TRT_UNSUPPORTED_OPS` every one marked
``N``. The check is static: a listed op can still fail on one of its restrictions (e.g. ``TopK``
needs K < 3840, ``Resize`` has no antialiasing); the restrictions that matter for these models
are checked too (`RESTRICTION_CHECKS`). Older TensorRT 10.x releases lack a few recent entries
(``Attention``, ``RotaryEmbedding``, ``RMSNormalization``, ``TensorScatter``); none of them is
emitted by the torch exporter at opset 17, so the check holds for all of TensorRT 10.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# onnx is optional (extra "onnx"): the functions that read graphs import it, so this module
# imports without it.

__all__ = [
    "TRT_OPS_SOURCE",
    "TRT_OPS_VERSION",
    "TRT_SUPPORTED_OPS",
    "TRT_UNSUPPORTED_OPS",
    "OpSupportReport",
    "check_onnx_ops",
]

TRT_OPS_VERSION = "10.15"
TRT_OPS_SOURCE = (
    "onnx/onnx-tensorrt docs/operators.md (TensorRT 10.15 revision: opset 9 to 24), "
    "operators marked 'Y'"
)

TRT_SUPPORTED_OPS: frozenset[str] = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool
    BatchNormalization BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape
    Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum
    Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm
    GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
    GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish Hardmax Identity If
    ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log
    LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
    MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
    ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
    RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
    ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence
    RMSNormalization RNN RoiAlign RotaryEmbedding Round STFT ScaledTanh Scan Scatter
    ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus
    Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh TensorScatter ThresholdedRelu Tile
    TopK Transpose Trilu Unsqueeze Upsample Where Xor
    """.split()
)

TRT_UNSUPPORTED_OPS: frozenset[str] = frozenset(
    """
    AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor Col2Im CenterCropPad
    Compress ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear ImageDecoder
    MatMulInteger MaxRoiPool MaxUnpool MelWeightMatrix Multinomial NegativeLogLikelihoodLoss
    Optional OptionalGetElement OptionalHasElement QLinearConv QLinearMatMul RegexFullMatch
    SequenceAt SequenceConstruct SequenceEmpty SequenceErase SequenceInsert SequenceLength
    SequenceMap SoftmaxCrossEntropyLoss SplitToSequence StringConcat StringNormalizer StringSplit
    TfIdfVectorizer Unique
    """.split()
)

# The default ONNX domain is spelled "" or "ai.onnx"; anything else (com.microsoft, custom
# domains) is a plugin / contrib op that TensorRT's parser does not know.
_DEFAULT_DOMAINS = ("", "ai.onnx")


def _attr(node: Any, name: str) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return None


def _resize_restriction(node: Any) -> str | None:
    if _attr(node, "antialias"):
        return "Resize with antialias=1 (TensorRT: antialiasing is not supported)"
    mode = _attr(node, "mode")
    if mode is not None and (mode.decode() if isinstance(mode, bytes) else mode) == "cubic":
        return "Resize mode 'cubic' (TensorRT: nearest / linear only)"
    return None


def _layernorm_restriction(node: Any) -> str | None:
    used = [o for o in node.output if o]
    if len(used) > 1:
        return "LayerNormalization with Mean/InvStdDev outputs (TensorRT: only Y is supported)"
    return None


# op type -> function(node) returning a violated restriction, or None.
RESTRICTION_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "Resize": _resize_restriction,
    "LayerNormalization": _layernorm_restriction,
}


@dataclass
class OpSupportReport:
    """Result of `check_onnx_ops`.

    Attributes:
        op_counts: op type -> number of nodes (subgraphs of If/Loop/Scan included).
        unsupported: op type -> node count, for ops TensorRT does not parse (or other domains).
        restrictions: description -> node count, for supported ops used outside their limits.
        source: where the supported list comes from.
    """

    op_counts: dict[str, int]
    unsupported: dict[str, int] = field(default_factory=dict)
    restrictions: dict[str, int] = field(default_factory=dict)
    source: str = TRT_OPS_SOURCE

    @property
    def ok(self) -> bool:
        return not self.unsupported and not self.restrictions

    def summary(self) -> str:
        """One line: OK, or the unsupported ops by name and count."""
        if self.ok:
            return f"all {sum(self.op_counts.values())} nodes ({len(self.op_counts)} op types) supported"
        parts = [f"{op} x{n}" for op, n in sorted(self.unsupported.items())]
        parts += [f"{why} x{n}" for why, n in sorted(self.restrictions.items())]
        return "unsupported by TensorRT: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "op_counts": dict(sorted(self.op_counts.items())),
            "unsupported": self.unsupported,
            "restrictions": self.restrictions,
            "source": self.source,
        }


def _nodes(graph: Any) -> Iterator[Any]:
    """Every node of a graph, recursing into If/Loop/Scan bodies (TensorRT parses those too)."""
    import onnx

    for node in graph.node:
        yield node
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _nodes(g)


def check_onnx_ops(model: Any) -> OpSupportReport:
    """Check every node of an ONNX model (a `ModelProto` or a path) against TensorRT's list.

    External weights are not loaded: only the graph structure is read.
    """
    import onnx

    if isinstance(model, (str, Path)):
        model = onnx.load(str(model), load_external_data=False)
    counts: Counter[str] = Counter()
    unsupported: Counter[str] = Counter()
    restrictions: Counter[str] = Counter()
    for node in _nodes(model.graph):
        domain = node.domain or ""
        key = node.op_type if domain in _DEFAULT_DOMAINS else f"{domain}::{node.op_type}"
        counts[key] += 1
        if domain not in _DEFAULT_DOMAINS or node.op_type not in TRT_SUPPORTED_OPS:
            unsupported[key] += 1
            continue
        check = RESTRICTION_CHECKS.get(node.op_type)
        why = check(node) if check is not None else None
        if why:
            restrictions[why] += 1
    return OpSupportReport(dict(counts), dict(unsupported), dict(restrictions))
