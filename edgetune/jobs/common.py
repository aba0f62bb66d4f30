"""Small helpers the jobs share: reading ONNX files, tokenizers, splits, model types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from edgetune.console import console
from edgetune.errors import InputError
from edgetune.measure.bench import FALLBACK_TEXTS

if TYPE_CHECKING:
    from edgetune.data.text import TextDataset

VALIDATION_SAMPLE = "edgetune_validation_sample.json"


def check_is_onnx(model_path: Path) -> None:
    import onnx

    if not model_path.is_file():
        raise InputError(f"{model_path}: no such ONNX file")
    try:
        onnx.load(str(model_path), load_external_data=False)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise InputError(f"{model_path}: not an ONNX model (could not parse it)") from None


def onnx_opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def model_type_of(folder: Path | None) -> str | None:
    """The `model_type` in a folder's config.json (None for an ONNX file without one)."""
    config = folder / "config.json" if folder else None
    if config is None or not config.is_file():
        return None
    return json.loads(config.read_text()).get("model_type")


def pick_split(dataset: TextDataset, split: str):
    import datasets

    if split == "all":
        return datasets.concatenate_datasets([dataset.train, dataset.validation])
    if split not in ("train", "validation"):
        raise InputError(f"unknown split '{split}': use train, validation or all")
    return getattr(dataset, split)


def task_of(texts: list) -> str:
    """The bundle's task, from the texts it was checked on (a pair is a [first, second] list)."""
    pair = bool(texts) and isinstance(texts[0], (list, tuple))
    return "text-pair-classification" if pair else "text-classification"


def validation_texts(checkpoint: Path, data: str | None) -> list[str]:
    """Texts to check an export on: the data's, the sample `tune` saved, or built-in ones."""
    if data is not None:
        from edgetune.data.text import load_text_dataset

        return list(load_text_dataset(data).validation["text"])
    sample = checkpoint / VALIDATION_SAMPLE
    if sample.is_file():
        return json.loads(sample.read_text())
    console.log(
        "no --data and no saved validation sample: checking the export on built-in sentences"
    )
    return FALLBACK_TEXTS
