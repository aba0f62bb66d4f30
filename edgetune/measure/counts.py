"""What a candidate costs by count rather than by clock: parameters, weight bytes,
multiply-accumulates and peak activation memory, read from its ONNX graph at the profile's shape.

Counts are the same on every machine and need no timing, so a profile can bound them
(`max_params_m`, `max_gmacs`, `max_peak_memory_mb`) and a model over such a bound is dropped
before anything is timed. The shape of every value comes from one run of the model on the
profile's fixed feed with every intermediate value made an output, unoptimized: ONNX Runtime knows
every op in our graphs (the contrib ops of fused and quantized ones too), where ONNX's own shape
inference stops at the first one it does not. No torch here, on purpose.

- **params**: elements of the weight tensors (float, and the 8- and 4-bit integers of quantized
  ones, packed 4-bit blocks at their unpacked count), not quantization scales or zero points,
  one-element constants (an exporter's scalars), or integer shapes and indices.
- **weight bytes**: every initializer, scales included: what the file holds.
- **MACs**: MatMul, Gemm, Conv and their quantized and fused forms, and the attention products
  of ORT's fused Attention; by the width they compute at (`int8` for integer ops and QDQ pairs,
  `int4` for MatMulNBits, else the output's float type). Element-wise ops are left out.
- **peak activations**: a liveness walk in graph order (each value held from the node that makes
  it to its last reader); values computed from weights alone (a QDQ weight's dequantized view,
  which ORT folds) are not activations. An estimate: ORT reuses and fuses buffers its own way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

# inputs that are quantization scales or zero points, by op: not parameters
QUANT_PARAMS = {
    "QuantizeLinear": {1, 2},
    "DequantizeLinear": {1, 2},
    "MatMulInteger": {2, 3},
    "ConvInteger": {2, 3},
    "QLinearMatMul": {1, 2, 4, 5, 6, 7},
    "QLinearConv": {1, 2, 4, 5, 6, 7},
    "DynamicQuantizeMatMul": {2, 3},
    "MatMulIntegerToFloat": {2, 3, 4, 5},
    "MatMulNBits": {2, 3, 4},
    "GatherBlockQuantized": {2, 3},
    "QAttention": {3, 4, 6, 7},
    "QEmbedLayerNormalization": set(range(8, 18)),
}
# ORT's quantizer names the scales and zero points it adds so (dynamic INT8 multiplies by them)
QUANT_SUFFIXES = ("_scale", "_zero_point")
WEIGHT_INPUT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "NhwcConv": 1}
MATMULS = {
    "MatMul",
    "FusedMatMul",
    "MatMulInteger",
    "QLinearMatMul",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "MatMulNBits",
}
INT8_OPS = {
    "QAttention",
    "MatMulInteger",
    "QLinearMatMul",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "ConvInteger",
    "QLinearConv",
}
BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8, "int4": 4}
DERIVED = ("params_m", "gmacs", "width_weighted_gmacs")


@dataclass
class GraphCounts:
    params: int
    weight_bytes: int
    macs: dict[str, int] = field(default_factory=dict)  # by width: fp32, fp16, int8, int4
    peak_activation_mb: float = 0.0
    input_shape: list[int] = field(default_factory=list)  # the first input's, as counted

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def gmacs(self) -> float:
        return sum(self.macs.values()) / 1e9

    @property
    def width_weighted_gmacs(self) -> float:
        """GMACs at fp32's cost: an int8 MAC counts a quarter, int4 an eighth, fp16 a half (what
        the hardware would give if it scaled with width; the report shows whether it does)."""
        return sum(m * BITS.get(w, 32) / 32 for w, m in self.macs.items()) / 1e9

    def to_json(self) -> dict:
        derived = {name: getattr(self, name) for name in DERIVED}
        return {**asdict(self), **derived}

    @classmethod
    def from_json(cls, data: dict) -> GraphCounts:
        return cls(**{k: v for k, v in data.items() if k not in DERIVED})


def count_graph(model_path: str | Path, feed: dict[str, np.ndarray]) -> GraphCounts:
    """Count `model_path` at the shapes of `feed` (the profile's fixed batch)."""
    model = onnx.load(str(model_path))
    graph = model.graph
    weights = _weights(graph)
    values = _run_every_value(model, feed)
    derived = _from_weights_only(graph, set(weights))
    producers = {o: n.op_type for n in graph.node for o in n.output}
    macs: dict[str, int] = {}
    for node in graph.node:
        width = _width(node, producers, values)
        for at, count in _macs(node, values, weights, width).items():
            macs[at] = macs.get(at, 0) + count
    first = next(iter(feed.values()))
    return GraphCounts(
        params=_params(graph, weights),
        weight_bytes=sum(_nbytes(t) for t in weights.values()),
        macs=macs,
        peak_activation_mb=_peak_bytes(graph, values, set(weights) | derived, feed) / 1e6,
        input_shape=[int(d) for d in first.shape],
    )


def over_counted_budget(counts: GraphCounts, profile) -> list[str]:
    """The profile's counted bounds this model breaks, each as one phrase (empty: none)."""
    checks = (
        ("max_params_m", counts.params_m, "M params"),
        ("max_gmacs", counts.gmacs, " GMACs"),
        ("max_peak_memory_mb", counts.peak_activation_mb, " MB peak activations"),
    )
    return [
        f"{value:.3g}{unit} > {getattr(profile, name):g}"
        for name, value, unit in checks
        if getattr(profile, name) is not None and value > getattr(profile, name)
    ]


def _run_every_value(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> dict[str, tuple]:
    """(shape, itemsize) of every value the graph computes, from one unoptimized run."""
    import onnxruntime as ort

    graph = model.graph
    known = {o.name for o in graph.output}
    extra = [name for node in graph.node for name in node.output if name and name not in known]
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    augmented.graph.output.extend(onnx.ValueInfoProto(name=name) for name in extra)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(
        augmented.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    inputs = {i.name for i in session.get_inputs()}
    arrays = session.run(names, {k: v for k, v in feed.items() if k in inputs})
    values = {n: (tuple(a.shape), a.dtype.itemsize, a.dtype) for n, a in zip(names, arrays)}
    values.update({k: (tuple(v.shape), v.dtype.itemsize, v.dtype) for k, v in feed.items()})
    return values


def _weights(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Initializers, and the tensors of Constant nodes (exporters store small weights there:
    a tiny BERT's biases and LayerNorm scales)."""
    weights = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                weights[node.output[0]] = value
    return weights


def _from_weights_only(graph: onnx.GraphProto, weights: set[str]) -> set[str]:
    """Values computed from weights and constants alone (ORT folds them at load)."""
    constant = set(weights)
    for node in graph.node:
        if all(not name or name in constant for name in node.input):
            constant.update(n for n in node.output if n)
    return constant - weights


def _nbytes(tensor: onnx.TensorProto) -> int:
    array = numpy_helper.to_array(tensor)
    return int(array.nbytes)


def _params(graph: onnx.GraphProto, weights: dict[str, onnx.TensorProto]) -> int:
    metadata, packed, quantized = set(), {}, set()
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            quantized.add(node.input[0])  # int32 for a static INT8 bias: a parameter too
        for position in QUANT_PARAMS.get(node.op_type, ()):
            if position < len(node.input):
                metadata.add(node.input[position])
        if node.op_type == "MatMulNBits" and len(node.input) > 1:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            packed[node.input[1]] = int(attrs["K"]) * int(attrs["N"])
    # an exporter stores equal tensors once and aliases them (Identity): random-init biases and
    # LayerNorm scales; each alias is a parameter of its own, as PyTorch counts them
    aliases = [n.input[0] for n in graph.node if n.op_type == "Identity" and n.input[0] in weights]
    total = 0
    for name, tensor in [*weights.items(), *((a, weights[a]) for a in aliases)]:
        if name in metadata or name.endswith(QUANT_SUFFIXES):
            continue
        if name in packed:
            total += packed[name]
            continue
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        numel = int(np.prod(tensor.dims, dtype=np.int64))
        weight_type = np.issubdtype(dtype, np.floating) or dtype in (np.int8, np.uint8)
        if numel > 1 and (weight_type or name in quantized):
            total += numel
    return total


def _shape(name: str, values: dict, weights: dict) -> tuple[int, ...] | None:
    if name in values:
        return values[name][0]
    if name in weights:
        return tuple(int(d) for d in weights[name].dims)
    return None


def _macs(node: onnx.NodeProto, values: dict, weights: dict, width: str) -> dict[str, int]:
    """Multiply-accumulates of one node at the counted shapes, by width (empty: not counted).
    Attention's products of activations run in float whatever its projection's width."""
    out = _shape(node.output[0], values, weights) if node.output else None
    a = _shape(node.input[0], values, weights) if node.input else None
    if out is None or a is None:
        return {}
    outputs = int(np.prod(out, dtype=np.int64))
    attrs = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
    if node.op_type == "MatMulNBits":
        return {width: outputs * int(attrs["K"])}
    if node.op_type in MATMULS:
        return {width: outputs * int(a[-2] if attrs.get("transA") and len(a) > 1 else a[-1])}
    if node.op_type == "Gemm":
        return {width: outputs * int(a[0] if attrs.get("transA") else a[-1])}
    if node.op_type in WEIGHT_INPUT:
        w = _shape(node.input[WEIGHT_INPUT[node.op_type]], values, weights)
        return {width: outputs * int(np.prod(w[1:], dtype=np.int64))} if w else {}
    if node.op_type in ("Attention", "QAttention") and len(a) == 3:  # ORT's fused ones
        w = _shape(node.input[1], values, weights)
        batch, seq, hidden = a
        counted = {width: batch * seq * hidden * int(w[-1]) if w else 0}
        counted["fp32"] = counted.get("fp32", 0) + 2 * batch * seq * seq * int(out[-1])
        return counted
    if node.op_type == "MultiHeadAttention" and len(a) == 3:
        k = _shape(node.input[1], values, weights)
        return {"fp32": 2 * a[0] * a[1] * (k[1] if k and len(k) == 3 else a[1]) * a[2]}
    return {}


def _width(node: onnx.NodeProto, producers: dict[str, str], values: dict) -> str:
    """The precision a counted op computes at."""
    if node.op_type == "MatMulNBits":
        attrs = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
        return f"int{attrs.get('bits', 4)}"
    if node.op_type in INT8_OPS:
        return "int8"
    operands = [name for name in node.input[:2] if name]
    if operands and all(producers.get(name) == "DequantizeLinear" for name in operands):
        return "int8"  # a QDQ pair: ORT runs it as an integer op
    dtype = values.get(node.output[0], (None, None, np.dtype(np.float32)))[2]
    return {np.dtype(np.float16): "fp16"}.get(np.dtype(dtype), "fp32")


def _peak_bytes(graph: onnx.GraphProto, values: dict, not_activations: set, feed: dict) -> int:
    """The most bytes of activations alive at once, walking the nodes in graph order."""
    last_use: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            last_use[name] = index
    end = len(graph.node)
    for output in graph.output:
        last_use[output.name] = end

    def size(name: str) -> int:
        shape, itemsize, _ = values[name]
        return int(np.prod(shape, dtype=np.int64)) * itemsize

    alive = {name: size(name) for name in feed if name in values}
    current = peak = sum(alive.values())
    for index, node in enumerate(graph.node):
        for name in node.output:
            if name and name in values and name not in not_activations:
                alive[name] = size(name)
                current += alive[name]
        peak = max(peak, current)
        for name in [n for n in alive if last_use.get(n, -1) <= index]:
            current -= alive.pop(name)
    return peak
