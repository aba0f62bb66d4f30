"""The compression menu for ONNX models, by name: graph optimization and quantization.

Each mode is a function `(source.onnx, target.onnx, context) -> settings` registered in
`MODES`; `tune`, `edgetune quantize` and the search all read the same table. Settings chosen
from the CPU (per-channel, reduce-range) are returned and recorded in the bundle.

Known sharp edges handled here: ORT drops temp files in the working directory (we run in a
temp dir); `quant_pre_process` needs `auto_merge=True` on transformers; quantizing a fused
model needs `DefaultTensorType`; static INT8 uses the QDQ format (QOperator can give graphs
ORT rejects).
"""

from __future__ import annotations

import contextlib
import logging
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from edgetune.errors import InputError

LOG = logging.getLogger(__name__)
# ORT's transformer optimizer knows these encoder types; other encoders use the BERT fusions.
ORT_MODEL_TYPES = {"bert": "bert", "roberta": "bert", "distilbert": "bert", "xlm-roberta": "bert",
                   "electra": "bert", "deberta": "bert", "vit": "vit", "swin": "swin"}


@dataclass
class QuantizationChoice:
    mode: str
    per_channel: bool
    reduce_range: bool
    weight_type: str
    reason: str

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class QuantContext:
    """What a mode may need besides the model: its type, calibration batches, CPU flags."""

    model_type: str = "bert"
    calibration: list[dict[str, np.ndarray]] = field(default_factory=list)
    flags: set[str] | None = None


@dataclass(frozen=True)
class Mode:
    name: str
    precision: str  # fp32 | int8 | fp16 | int4
    description: str
    build: Callable[[Path, Path, QuantContext], dict]
    needs_calibration: bool = False


def cpu_flags() -> set[str]:
    """CPU feature flags (Linux /proc/cpuinfo); empty where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def choose_dynamic_int8(flags: set[str] | None = None, machine: str | None = None,
                        per_channel: bool = True) -> QuantizationChoice:
    """Reduce-range only on x86 without VNNI (AVX-512 VNNI, AVX-VNNI, AMX)."""
    flags = cpu_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    vnni = {"avx512_vnni", "avx_vnni", "amx_int8"} & flags
    if machine in ("arm64", "aarch64"):
        reduce, why = False, "ARM64: int8 dot-product kernels do not saturate; full 8-bit range"
    elif vnni:
        reduce, why = False, f"x86 with {min(vnni)}: VNNI int8 kernels, full 8-bit range"
    else:
        have = "avx512" if "avx512f" in flags else ("avx2" if "avx2" in flags else "no AVX2")
        reduce, why = True, f"x86 {have} without VNNI: reduce_range avoids u8s8 saturation"
    scope = "per-channel" if per_channel else "per-tensor"
    return QuantizationChoice("dynamic-int8", per_channel, reduce, "int8", f"{why}; {scope} weights")


def check_onnx(path: str | Path) -> None:
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # noqa: BLE001 - checker and parser errors alike
        raise InputError(f"{path}: not a valid ONNX model ({str(exc).splitlines()[0]})") from None


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


def _copy(source: Path, target: Path, ctx: QuantContext) -> dict:
    shutil.copy2(source, target)
    return {}


def _optimize(source: Path, target: Path, ctx: QuantContext) -> dict:
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    ort_type = ORT_MODEL_TYPES.get(ctx.model_type, "bert")
    with _in_temp_dir():
        optimized = optimize_model(str(source), model_type=ort_type, num_heads=0, hidden_size=0,
                                   optimization_options=FusionOptions(ort_type), opt_level=0)
        optimized.save_model_to_file(str(target), use_external_data_format=False)
    return {"optimizer": "onnxruntime.transformers", "model_type": ort_type,
            "fused_ops": {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}}


def _dynamic(per_channel: bool) -> Callable[[Path, Path, QuantContext], dict]:
    def build(source: Path, target: Path, ctx: QuantContext) -> dict:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        choice = choose_dynamic_int8(ctx.flags, per_channel=per_channel)
        with _in_temp_dir():
            quantize_dynamic(str(source), str(target), per_channel=choice.per_channel,
                             reduce_range=choice.reduce_range, weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        return {"quantization": choice.to_json()}
    return build


class _Batches:
    """A CalibrationDataReader over prepared batches: memory bounded by the batch size."""

    def __init__(self, batches: list[dict[str, np.ndarray]], input_names: list[str]):
        self._iter = iter([{n: b[n] for n in input_names} for b in batches])

    def get_next(self):
        return next(self._iter, None)


def _static(method: str) -> Callable[[Path, Path, QuantContext], dict]:
    def build(source: Path, target: Path, ctx: QuantContext) -> dict:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process

        if not ctx.calibration:
            raise InputError(f"static-int8-{method} needs calibration data (--calibration-data)")
        choice = choose_dynamic_int8(ctx.flags)
        names = [i.name for i in onnx.load(str(source), load_external_data=False).graph.input]
        with _in_temp_dir() as tmp:
            prepared = tmp / "prepared.onnx"
            quant_pre_process(str(source), str(prepared), auto_merge=True, skip_optimization=False)
            quantize_static(
                str(prepared), str(target), _Batches(ctx.calibration, names),
                quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=choice.reduce_range,
                op_types_to_quantize=["MatMul", "Gemm"],
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=getattr(CalibrationMethod, method.capitalize() if method != "minmax" else "MinMax"),
                extra_options={"CalibMaxIntermediateOutputs": _flush_every(len(ctx.calibration)),
                               "CalibPercentile": 99.99},
            )
        samples = sum(len(next(iter(b.values()))) for b in ctx.calibration)
        return {"quantization": {"mode": f"static-int8-{method}", "format": "QDQ",
                                 "calibration_method": method, "calibration_samples": samples,
                                 "op_types": ["MatMul", "Gemm"],
                                 "per_channel": True, "reduce_range": choice.reduce_range}}
    return build


def _flush_every(batches: int) -> int:
    """How many batches of activations the calibrator holds before reducing them (memory bound).

    ORT fails with "No data is collected" when the batch count is an exact multiple of it
    (it flushes after the last batch, then finds nothing left), so pick one that does not divide.
    """
    return next((k for k in (4, 3, 5, 7, 11, 13) if batches % k), batches + 1)


def _fp16(source: Path, target: Path, ctx: QuantContext) -> dict:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(source))
    converted = convert_float_to_float16(model, keep_io_types=True)
    onnx.save(converted, str(target))
    return {"quantization": {"mode": "fp16", "io_types": "int64 ids in, float32 logits out"}}


def _int4(source: Path, target: Path, ctx: QuantContext) -> dict:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    with _in_temp_dir():
        quantizer = MatMulNBitsQuantizer(str(source), bits=4, block_size=32, is_symmetric=True,
                                         accuracy_level=4)
        quantizer.process()
        quantizer.model.save_model_to_file(str(target), use_external_data_format=False)
    return {"quantization": {"mode": "int4", "op": "MatMulNBits", "block_size": 32,
                             "symmetric": True, "accuracy_level": 4}}


MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("fp32", "fp32", "the exported model as is", _copy),
    Mode("optimized-fp32", "fp32", "ORT transformer fusions (attention, LayerNorm, GELU)", _optimize),
    Mode("dynamic-int8", "int8", "fused + dynamic INT8, per-channel weights", _dynamic(True)),
    Mode("dynamic-int8-per-tensor", "int8", "fused + dynamic INT8, per-tensor weights", _dynamic(False)),
    Mode("static-int8-minmax", "int8", "static INT8 (QDQ), MinMax calibration", _static("minmax"), True),
    Mode("static-int8-entropy", "int8", "static INT8 (QDQ), Entropy calibration", _static("entropy"), True),
    Mode("static-int8-percentile", "int8", "static INT8 (QDQ), 99.99th percentile calibration",
         _static("percentile"), True),
    Mode("fp16", "fp16", "fused + FP16 weights and compute, fp32 IO (for GPUs)", _fp16),
    Mode("int4", "int4", "INT4 weight-only MatMulNBits (block 32)", _int4),
)}
# Modes that start from the fused model (the fastest on MiniLM here) rather than the raw export.
FROM_OPTIMIZED = {"dynamic-int8", "dynamic-int8-per-tensor", "fp16"}


def build_variants(fp32: str | Path, out_dir: str | Path, names: list[str],
                   ctx: QuantContext) -> dict[str, tuple[Path, dict]]:
    """Build each named mode from `fp32` into `out_dir/<name>.onnx`; returns paths and settings."""
    unknown = [n for n in names if n not in MODES]
    if unknown:
        raise InputError(f"unknown mode(s) {unknown}: use {', '.join(MODES)}")
    check_onnx(fp32)
    fp32, out_dir = Path(fp32).resolve(), Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    built: dict[str, tuple[Path, dict]] = {}
    needs_fused = any(n in FROM_OPTIMIZED for n in names)
    if needs_fused or "optimized-fp32" in names:
        built["optimized-fp32"] = (out_dir / "optimized-fp32.onnx",
                                   _optimize(fp32, out_dir / "optimized-fp32.onnx", ctx))
    for name in names:
        if name in built:
            continue
        source = built["optimized-fp32"][0] if name in FROM_OPTIMIZED else fp32
        target = out_dir / f"{name}.onnx"
        settings = MODES[name].build(source, target, ctx)
        if name in FROM_OPTIMIZED:
            settings["from"] = "optimized-fp32"
        built[name] = (target, settings)
    return {n: built[n] for n in names}
