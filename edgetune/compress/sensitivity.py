"""Which quantized nodes cost the accuracy: the noise each one adds, on calibration inputs.

The static INT8 (QDQ) model and the fp32 graph it was quantized from (`prepare_for_static`) run
on the same calibration batches, with the values around each quantized node made outputs. A
node's score is the relative noise power of its output (its squared error against fp32 over
the fp32 output's power) less that of its activation before it was quantized: the noise the
node adds itself (rounding its input and its weights), not what it inherits from upstream,
whose accumulated error would make every late node look worst. Ranked highest first: the order
in which mixed precision keeps nodes in fp32. Both graphs run unoptimized, so QDQ pairs compute
in float what ORT's integer kernels compute (the same values up to float rounding). No torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

RENAMED = "_QuantizeLinear_Input"  # ORT's QDQ quantizer renames a node output it quantizes


@dataclass
class NodeNoise:
    node: str
    op_type: str
    added_noise: float  # relative noise power this node adds
    output_sqnr_db: float  # its output against fp32, all upstream error included

    def to_json(self) -> dict:
        return asdict(self)


def rank_nodes(
    fp32_prepared: Path,
    quantized: Path,
    batches: list[dict[str, np.ndarray]],
    op_types: tuple[str, ...] = ("MatMul", "Gemm", "Conv"),
) -> list[NodeNoise]:
    """The quantized nodes of `quantized`, most added noise first."""
    graph = onnx.load(str(quantized), load_external_data=False).graph
    producers = {out: node for node in graph.node for out in node.output}
    watched = []  # (node, the activation it quantizes, as named in both graphs)
    for node in graph.node:
        dequantize = producers.get(node.input[0]) if node.input else None
        if node.op_type not in op_types or not node.name or dequantize is None:
            continue
        quantize = (
            producers.get(dequantize.input[0]) if dequantize.op_type == "DequantizeLinear" else None
        )
        if quantize is not None and quantize.op_type == "QuantizeLinear":
            watched.append((node, quantize.input[0]))
    fp32_graph = onnx.load(str(fp32_prepared), load_external_data=False).graph
    known = {v for node in fp32_graph.node for v in node.output} | {
        i.name for i in fp32_graph.input
    }
    watched = [
        (node, source)
        for node, source in watched
        if _fp32_name(source) in known and _fp32_name(node.output[0]) in known
    ]
    names = sorted({n for node, source in watched for n in (source, node.output[0])})
    reference = _Runner(fp32_prepared, sorted({_fp32_name(n) for n in names}))
    ours = _Runner(quantized, names)
    signal = dict.fromkeys(names, 0.0)
    noise = dict.fromkeys(names, 0.0)
    for batch in batches:
        expected, got = reference(batch), ours(batch)
        for name in names:
            a = expected[_fp32_name(name)].astype(np.float64)
            b = got[name].astype(np.float64)
            signal[name] += float(np.sum(a * a))
            noise[name] += float(np.sum((b - a) ** 2))

    def relative(name: str) -> float:
        return noise[name] / signal[name] if signal[name] > 0 else 0.0

    ranked = [
        NodeNoise(
            node.name,
            node.op_type,
            relative(node.output[0]) - relative(source),
            _sqnr_db(signal[node.output[0]], noise[node.output[0]]),
        )
        for node, source in watched
    ]
    return sorted(ranked, key=lambda n: n.added_noise, reverse=True)


def _fp32_name(name: str) -> str:
    """The fp32 graph's name for a value the quantizer renamed (an output it quantizes next)."""
    return name.removesuffix(RENAMED)


def _sqnr_db(signal: float, noise: float) -> float:
    return math.inf if noise == 0 else 10.0 * math.log10(max(signal, 1e-30) / noise)


class _Runner:
    """One model, unoptimized, with `names` among its outputs."""

    def __init__(self, path: Path, names: list[str]):
        import onnxruntime as ort

        model = onnx.load(str(path))
        present = {o.name for o in model.graph.output}
        model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in present)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.names = names

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {k: v for k, v in batch.items() if k in self.inputs}
        return dict(zip(self.names, self.session.run(self.names, feed)))
