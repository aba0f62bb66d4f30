"""`torch.onnx.export` for what optimum's exporter does not take: plain PyTorch modules
(`exporter/module.py`) and the plain classifiers of `train/plain.py`."""

from __future__ import annotations

from pathlib import Path

from edgetune.errors import InputError


def torch_export(
    model,
    example: tuple,
    target: Path,
    inputs: list[str],
    outputs: list[str],
    opset: int,
    batch: str = "batch_size",
) -> Path:
    """`torch.onnx.export` (TorchScript) to `target`, the first dimension of every input and
    output dynamic and named `batch` (`batch_size`: as optimum names a transformers export's);
    one line when it fails."""
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad():
            torch.onnx.export(
                model,
                example,
                str(target),
                input_names=inputs,
                output_names=outputs,
                opset_version=opset,
                dynamo=False,
                dynamic_axes={name: {0: batch} for name in inputs + outputs},
            )
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds; one line says which
        raise InputError(
            f"torch.onnx.export failed: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    return target


def export_plain(model, target: Path, opset: int, example: dict | None = None) -> Path:
    """A plain classifier (`train/plain.py`): its one input (`pixel_values`, `input_features`)
    -> `logits`, traced on `example`'s input at its real shape, else on zeros of the config's
    example shape."""
    import torch

    from edgetune.train.plain import LogitsOnly

    name = model.input_name
    traced = torch.from_numpy(example[name]) if example is not None else model.example()
    logits = LogitsOnly(model).eval()
    return torch_export(logits, (traced,), target, [name], ["logits"], opset)
