"""Plain PyTorch models: `pkg.module:factory` (a callable returning an `nn.Module`) to ONNX.

For users whose model is not a transformers model. The factory is imported by name (the
current folder is importable, as `uvicorn app:main` does), called without arguments, and the
module exported with `torch.onnx.export` at the given input shapes, the first dimension
dynamic (batch). The check is the same idea as for text models: ONNX Runtime against PyTorch
on fresh random inputs (batch 2, so the dynamic batch is exercised), max |diff| within `atol`,
else `ValidationError` (exit 3). The ONNX file then goes through `bench --shape` and `quantize`
like any other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetune.errors import InputError, ValidationError
from edgetune.exporter.onnx import DEFAULT_ATOL, DEFAULT_OPSET, ExportCheck
from edgetune.exporter.torch_export import torch_export


def export_module(
    model,
    shapes: dict[str, list[int]],
    target: Path,
    opset: int | None = None,
    atol: float | None = None,
    seed: int = 0,
) -> ExportCheck:
    """Export `model` at `shapes` (input name -> shape, in forward's order) and check it."""
    import onnxruntime as ort
    import torch

    if not shapes:
        raise InputError(
            "a plain PyTorch model needs its input shapes: --input-shape x=1x3x224x224"
        )
    generator = torch.Generator().manual_seed(seed)
    example = tuple(torch.randn(shape, generator=generator) for shape in shapes.values())
    names = list(shapes)
    with torch.no_grad():
        outputs = model(*example)
    count = len(outputs) if isinstance(outputs, (tuple, list)) else 1
    output_names = [f"output_{i}" for i in range(count)] if count > 1 else ["output"]
    torch_export(model, example, target, names, output_names, opset or DEFAULT_OPSET, "batch")
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    check = [torch.randn([2, *shape[1:]], generator=generator) for shape in shapes.values()]
    with torch.no_grad():
        expected = model(*check)
    expected = [
        t.numpy() for t in (expected if isinstance(expected, (tuple, list)) else [expected])
    ]
    got = session.run(None, {n: t.numpy() for n, t in zip(names, check)})
    diff = max(float(np.abs(e - g).max()) for e, g in zip(expected, got))
    agree = (
        float(np.mean(expected[0].argmax(-1) == got[0].argmax(-1))) if expected[0].ndim > 1 else 1.0
    )
    tolerance = atol or DEFAULT_ATOL
    if diff > tolerance:
        raise ValidationError(
            f"ONNX output differs from PyTorch by {diff:.2e} (> atol {tolerance:g})",
            diff,
            tolerance,
        )
    return ExportCheck(diff, tolerance, 2, agree)
