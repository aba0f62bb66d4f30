"""The quantization-aware share of a recovery, and its export as a static INT8 QDQ model.

`edgetune prune --qat` trains the pruned student as usual for the first part of its budget,
then the last `share` with fake quantization (`compress/qat.py`), distilled from the same
teacher. The trained weights are exported to ONNX (checked against PyTorch like every export)
and quantized by ORT's static QDQ pass with MinMax ranges on the calibration batches, leaving
the activation products in fp32 as training did. The fake-quantized PyTorch model, calibrated on
the same batches, is the QDQ model's twin: their logits are compared and the difference
recorded, so a user sees that what was trained is what runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgetune.compress import qat
from edgetune.compress.cpu import choose_dynamic_int8
from edgetune.compress.passes import PassContext, Step, get_pass
from edgetune.exporter.onnx import ExportCheck, export_validated
from edgetune.train.settings import TrainConfig

MODE = "static-int8-qat"
# what fake quantization trained: the weighted MatMuls/Gemms, MinMax ranges, products left fp32
PASS_OPTIONS = {"method": "minmax", "activation_products": False, "op_types": ("MatMul", "Gemm")}


def split_budget(train: TrainConfig, share: float) -> tuple[TrainConfig, TrainConfig]:
    """The recovery's epochs, steps and minutes split: (1 - share) plain, `share` with fake
    quantization. A share of 1 is a QAT phase alone (an unpruned model)."""

    def part(fraction: float) -> TrainConfig:
        update: dict = {}
        if train.epochs is not None:
            update["epochs"] = train.epochs * fraction
        if train.max_steps > 0:
            update["max_steps"] = max(1, int(train.max_steps * fraction))
        if train.max_train_minutes:
            update["max_train_minutes"] = train.max_train_minutes * fraction
        return train.model_copy(update=update)

    return part(1.0 - share), part(share)


def reduce_range(flags: set[str] | None = None) -> bool:
    """The weight range static INT8 will use on this CPU (`compress/cpu.py`)."""
    return choose_dynamic_int8(flags).reduce_range


@dataclass
class QuantizedExport:
    model: Path  # the QDQ model
    fp32: Path  # the trained weights, unquantized
    export_check: ExportCheck  # fp32 ONNX against PyTorch
    settings: dict  # what the static INT8 pass chose
    twin: dict  # QDQ ONNX against the fake-quantized PyTorch model

    def manifest_fields(self) -> dict:
        """The bundle's mode, its ONNX step and what the step chose."""
        step = Step.of("static-int8", **PASS_OPTIONS).to_json()
        return {**self.settings, "mode": MODE, "steps": [step]}


def export_quantized(
    model: torch.nn.Module,
    processor,
    calibration: list[dict],
    check_batches: list[dict],
    out_dir: Path,
    atol: float | None = None,
) -> QuantizedExport:
    """`model` (plain, QAT-trained) to a static INT8 QDQ ONNX model in `out_dir`, compared on
    `check_batches` with its fake-quantized twin calibrated on `calibration`."""
    unrounded = _logits(model, check_batches)
    qat.prepare(model, reduce_range())
    qat.calibrate(model, calibration)
    expected = _logits(model, check_batches)
    qat.strip(model)
    fp32, check = export_validated(
        model, processor, out_dir / "model.fp32.onnx", [], 0, atol=atol, batches=check_batches
    )
    target = out_dir / "model.onnx"
    static = get_pass("static-int8")
    settings = static.run(
        fp32,
        target,
        static.parse_config(PASS_OPTIONS),
        PassContext(calibration=calibration),
    )
    twin = twin_check(target, check_batches, expected, unrounded)
    return QuantizedExport(target, fp32, check, settings, twin)


@torch.no_grad()
def _logits(model: torch.nn.Module, batches: list[dict]) -> np.ndarray:
    model.eval()
    return np.concatenate(
        [model(**{k: torch.as_tensor(v) for k, v in b.items()}).logits.numpy() for b in batches]
    )


def twin_check(
    model_path: Path, batches: list[dict], expected: np.ndarray, unrounded: np.ndarray
) -> dict:
    """The QDQ model's logits against the fake-quantized PyTorch model's, on the same rows, and
    (the scale to read it against) against the unquantized model's. They do not match to the
    last bit: a value on a rounding boundary in one runtime may not be in the other (fp32
    LayerNorm and GELU differ in their last bits), and ORT's integer kernels differ as much from
    its own QDQ graph run in fp32. A flip moves one logit by one step of the output's scale, so
    the medians say more than the maxima."""
    import onnxruntime as ort

    from edgetune.measure.bench import predict_logits

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    got = predict_logits(session, batches)
    twin, unquantized = np.abs(got - expected), np.abs(got - unrounded)
    return {
        "rows": len(got),
        "max_abs_diff": float(twin.max()),
        "median_abs_diff": float(np.median(twin)),
        "unquantized_max_abs_diff": float(unquantized.max()),
        "unquantized_median_abs_diff": float(np.median(unquantized)),
        "same_prediction": float((got.argmax(-1) == expected.argmax(-1)).mean()),
    }
