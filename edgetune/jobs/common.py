"""Small helpers the jobs share: reading ONNX files, tokenizers, splits, model types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from edgetune.console import console
from edgetune.errors import InputError
from edgetune.measure.bench import FALLBACK_TEXTS

if TYPE_CHECKING:
    from edgetune.config import BenchConfig, TuneConfig
    from edgetune.data.text import TextDataset
    from edgetune.measure.fleet import Fleet
    from edgetune.profiles import Profile

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


def measuring_agents(config: TuneConfig | BenchConfig, profile: Profile) -> Fleet | None:
    """The agents that measure for this run (`--target`, else the profile's `targets`),
    asked for their fingerprints now, before any work; None: measured here."""
    from edgetune.measure.fleet import fleet_for

    return fleet_for(config.target, profile, config.target_token_file, config.allow_mixed_targets)


def accuracy_agents(config: TuneConfig | BenchConfig, agents: Fleet | None) -> Fleet | None:
    """Who runs the validation set: None (here), or the agents with `--accuracy-on target`."""
    if config.accuracy_on == "host":
        return None
    if agents is None:
        raise InputError(
            "--accuracy-on target needs an agent: give --target URL (or targets in the profile)"
        )
    return agents
