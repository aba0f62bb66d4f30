"""`torch.onnx.export` for what optimum's exporter does not take: plain PyTorch modules
(`exporter/module.py`) and the plain image classifiers of `train/plain.py`."""

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


def export_plain(model, target: Path, opset: int) -> Path:
    """A plain image classifier (`train/plain.py`): `pixel_values` -> `logits`."""
    import torch

    from edgetune.train.plain import LogitsOnly

    size, channels = model.config.image_size, model.config.num_channels
    example = (torch.zeros(1, channels, size, size),)
    logits = LogitsOnly(model).eval()
    return torch_export(logits, example, target, ["pixel_values"], ["logits"], opset)
