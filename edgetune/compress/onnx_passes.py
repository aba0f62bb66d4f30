"""The ONNX passes: ONNX Runtime's transformer fusions and its quantizers.

Each is an `OnnxPass` with a typed config; the named modes (`dynamic-int8-per-tensor`,
`static-int8-percentile`, ...) are presets of these configs in `compress/modes.py`. Settings
chosen from the CPU (reduce-range) are returned and recorded in the bundle.

Known sharp edges handled here: ORT drops temp files in the working directory (we run in a
temp dir); `quant_pre_process` needs `auto_merge=True` on transformers; quantizing a fused
model needs `DefaultTensorType`; static INT8 uses the QDQ format (QOperator can give graphs
ORT rejects).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from collections import Counter
from collections.abc import Iterator
from inspect import signature
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from pydantic import Field

from edgetune.compress.cpu import choose_dynamic_int8
from edgetune.compress.passes import OnnxPass, PassConfig, PassContext
from edgetune.errors import InputError


def ort_model_type(model_type: str | None) -> str:
    """The fusion recipe of ORT's transformer optimizer for a transformers `model_type`, from
    Optimum's table (the one its ORTOptimizer uses). A family missing there is refused rather
    than given BERT's fusions; a graph with no model type (any ONNX file) gets the BERT
    recipe, which fuses nothing that is not a BERT-shaped subgraph."""
    if model_type is None:
        return "bert"
    from optimum.onnxruntime.utils import ORTConfigManager

    try:
        return ORTConfigManager.get_model_ort_type(model_type)
    except KeyError:
        raise InputError(
            f"ort-fusion: the {model_type} family has no ONNX Runtime fusion recipe; "
            "use --modes without fusion (fp32, static-int8-minmax)"
        ) from None


def has_fusion_recipe(model_type: str | None) -> bool:
    try:
        ort_model_type(model_type)
    except InputError:
        return False
    return True


class NothingToQuantize(InputError):
    """A quantization pass found nothing it quantizes in this graph (e.g. int4 on a CNN)."""


def refuse_if_unchanged(source: Path, target: Path, pass_name: str, quantizes: str) -> None:
    """A quantizer that found nothing to quantize writes a copy; labelling that copy int8/int4
    would be a lie, so say so instead (and leave nothing behind)."""

    def op_types(path: Path) -> Counter:
        return Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)

    if op_types(source) == op_types(target):
        target.unlink(missing_ok=True)
        raise NothingToQuantize(
            f"{pass_name}: {source.name} has nothing this pass quantizes (it takes "
            f"{quantizes} with constant weights); no model written"
        )


@contextlib.contextmanager
def _in_temp_dir() -> Iterator[Path]:
    """ORT's quantizers drop temp files in the working directory: keep them out of ours.
    They also log advice on the root logger at WARNING ("consider pre-processing", which we
    do where it matters); keep that off the user's screen."""
    with tempfile.TemporaryDirectory(prefix="edgetune-quant-") as tmp, contextlib.chdir(tmp):
        logging.disable(logging.WARNING)
        try:
            yield Path(tmp)
        finally:
            logging.disable(logging.NOTSET)


class _Batches:
    """A CalibrationDataReader over prepared batches: memory bounded by the batch size."""

    def __init__(self, batches: list[dict[str, np.ndarray]], input_names: list[str]):
        self._iter = iter([{n: b[n] for n in input_names} for b in batches])

    def get_next(self):
        return next(self._iter, None)


def _range_cache(ctx: PassContext, source: Path, config: StaticInt8Config) -> dict:
    """`calibration_cache_path` for ORT's `quantize_static`, keyed by what the ranges depend on
    (the source file, the method, the batches), where the context has a folder and this ORT
    takes one (1.32; not the GPU wheel's 1.31.1). Nodes kept in fp32 do not change the ranges
    of the others, so a mixed-precision variant reuses its mode's calibration."""
    from onnxruntime.quantization import quantize_static

    if (
        ctx.range_cache is None
        or "calibration_cache_path" not in signature(quantize_static).parameters
    ):
        return {}
    digest = hashlib.sha256()
    stat = Path(source).stat()
    key = [str(Path(source).resolve()), stat.st_size, stat.st_mtime_ns, config.method, "all"]
    key += [config.percentile, sorted(config.op_types), config.symmetric_activations]
    digest.update(json.dumps(key).encode())
    for batch in ctx.calibration:
        for name in sorted(batch):
            digest.update(name.encode() + np.ascontiguousarray(batch[name]).tobytes())
    ctx.range_cache.mkdir(parents=True, exist_ok=True)
    return {"calibration_cache_path": str(ctx.range_cache / f"{digest.hexdigest()[:24]}.json")}


def prepare_for_static(source: Path, target: Path) -> Path:
    """The graph static INT8 quantizes (shapes inferred, ORT's basic optimizations): its node
    and value names are the ones `keep_fp32` and the sensitivity analysis use."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(source), str(target), auto_merge=True, skip_optimization=False)
    return target


class NoOptions(PassConfig):
    """A pass without knobs."""


class OrtFusion(OnnxPass):
    name = "ort-fusion"
    Config = NoOptions
    description = "ORT transformer fusions (attention, LayerNorm, GELU)"

    def run(self, source: Path, target: Path, config: PassConfig, ctx: PassContext) -> dict:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model

        ort_type = ort_model_type(ctx.model_type)
        with _in_temp_dir():
            optimized = optimize_model(
                str(source),
                model_type=ort_type,
                num_heads=0,
                hidden_size=0,
                optimization_options=FusionOptions(ort_type),
                opt_level=0,
            )
            optimized.save_model_to_file(str(target), use_external_data_format=False)
        return {
            "optimizer": "onnxruntime.transformers",
            "model_type": ort_type,
            "fused_ops": {k: v for k, v in optimized.get_fused_operator_statistics().items() if v},
        }


class DynamicInt8Config(PassConfig):
    per_channel: bool = Field(True, description="one scale per output channel of each weight")


class DynamicInt8(OnnxPass):
    name = "dynamic-int8"
    Config = DynamicInt8Config
    precision = "int8"
    batch_dependent = True
    description = "INT8 weights, activations quantized at run time (no calibration)"

    def run(self, source: Path, target: Path, config: DynamicInt8Config, ctx: PassContext) -> dict:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        choice = choose_dynamic_int8(ctx.flags, per_channel=config.per_channel)
        with _in_temp_dir():
            quantize_dynamic(
                str(source),
                str(target),
                per_channel=choice.per_channel,
                reduce_range=choice.reduce_range,
                weight_type=QuantType.QInt8,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        refuse_if_unchanged(source, target, self.name, "MatMul, Gemm, Conv, Gather")
        return {"quantization": choice.to_json()}


class StaticInt8Config(PassConfig):
    method: Literal["minmax", "entropy", "percentile"] = Field(
        "minmax", description="how activation ranges are calibrated"
    )
    percentile: float = Field(99.99, gt=90, le=100, description="for method=percentile")
    per_channel: bool = Field(True, description="one scale per output channel of each weight")
    op_types: tuple[str, ...] = Field(
        ("MatMul", "Gemm", "Conv"),
        description="ops to quantize (Conv: image models; text encoders have none)",
    )
    keep_fp32: tuple[str, ...] = Field(
        (),
        description="nodes left in fp32 (mixed precision: the most sensitive ones, "
        "compress/sensitivity.py), by name in the shape-inferred graph",
    )
    symmetric_activations: bool = Field(
        False,
        description="activation ranges made symmetric around 0 (zero point 128), as some "
        "accelerators require (ORT's ActivationSymmetric)",
    )
    activation_products: bool = Field(
        True,
        description="also quantize MatMuls of two activations (attention scores and context); "
        "False leaves them fp32, as quantization-aware recovery trains (compress/qat.py)",
    )


class StaticInt8(OnnxPass):
    name = "static-int8"
    Config = StaticInt8Config
    precision = "int8"
    devices = frozenset({"cpu"})
    needs_calibration = True
    description = "INT8 weights and activations (QDQ), ranges calibrated on real inputs"

    def run(self, source: Path, target: Path, config: StaticInt8Config, ctx: PassContext) -> dict:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        if not ctx.calibration:
            raise InputError(
                f"static-int8-{config.method} needs calibration data (--calibration-data)"
            )
        choice = choose_dynamic_int8(ctx.flags)
        graph = onnx.load(str(source), load_external_data=False).graph
        weights = {init.name for init in graph.initializer}  # older files list weights as inputs
        names = [i.name for i in graph.input if i.name not in weights]
        methods = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }
        with _in_temp_dir() as tmp:
            prepared = prepare_for_static(source, tmp / "prepared.onnx")
            kept = [*config.keep_fp32]
            if not config.activation_products:
                kept += activation_products(prepared)
            quantize_static(
                str(prepared),
                str(target),
                _Batches(ctx.calibration, names),
                **_range_cache(ctx, source, config),
                quant_format=QuantFormat.QDQ,
                per_channel=config.per_channel,
                reduce_range=choice.reduce_range,
                op_types_to_quantize=list(config.op_types),
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[config.method],
                nodes_to_exclude=kept,
                # no CalibMaxIntermediateOutputs: ORT's MinMax calibrator drops the batches it
                # flushes without taking their ranges (onnxruntime#18893, still in 1.32): with
                # it, MinMax ranges came from the last few batches only
                extra_options={
                    "CalibPercentile": config.percentile,
                    "ActivationSymmetric": config.symmetric_activations,
                },
            )
        refuse_if_unchanged(source, target, self.name, " or ".join(config.op_types))
        samples = sum(len(next(iter(b.values()))) for b in ctx.calibration)
        return {
            "quantization": {
                "mode": f"static-int8-{config.method}",
                "format": "QDQ",
                "calibration_method": config.method,
                "calibration_samples": samples,
                "op_types": list(config.op_types),
                "per_channel": config.per_channel,
                "reduce_range": choice.reduce_range,
                **({"kept_fp32": list(config.keep_fp32)} if config.keep_fp32 else {}),
                "activation_products": config.activation_products,
                "symmetric_activations": config.symmetric_activations,
            }
        }


def activation_products(path: Path) -> list[str]:
    """The MatMul nodes of `path` with no weight among their inputs: products of activations."""
    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul" and not any(name in weights for name in node.input)
    ]


class Fp16(OnnxPass):
    name = "fp16"
    Config = NoOptions
    precision = "fp16"
    devices = frozenset({"cuda"})
    description = "FP16 weights and compute, fp32 inputs/outputs (for GPUs)"

    def run(self, source: Path, target: Path, config: PassConfig, ctx: PassContext) -> dict:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        converted = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
        onnx.save(converted, str(target))
        return {"quantization": {"mode": "fp16", "io_types": "int64 ids in, float32 logits out"}}


class Int4Config(PassConfig):
    block_size: int = Field(32, ge=16, description="weights per scale (a power of two)")
    symmetric: bool = Field(True, description="no zero point")
    accuracy_level: int = Field(4, ge=0, le=4, description="MatMulNBits compute type (4: int8)")


class Int4WeightOnly(OnnxPass):
    name = "int4"
    Config = Int4Config
    precision = "int4"
    devices = frozenset({"cpu"})
    description = "INT4 weight-only MatMulNBits"

    def run(self, source: Path, target: Path, config: Int4Config, ctx: PassContext) -> dict:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        if config.block_size & (config.block_size - 1):
            raise InputError(f"int4 block_size must be a power of two, got {config.block_size}")
        with _in_temp_dir():
            quantizer = MatMulNBitsQuantizer(
                str(source),
                bits=4,
                block_size=config.block_size,
                is_symmetric=config.symmetric,
                accuracy_level=config.accuracy_level,
            )
            quantizer.process()
            quantizer.model.save_model_to_file(str(target), use_external_data_format=False)
        refuse_if_unchanged(source, target, self.name, "MatMul")
        return {
            "quantization": {
                "mode": "int4",
                "op": "MatMulNBits",
                "block_size": config.block_size,
                "symmetric": config.symmetric,
                "accuracy_level": config.accuracy_level,
            }
        }
