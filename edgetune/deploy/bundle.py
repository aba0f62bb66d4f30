"""The deployable bundle: `model.onnx`, tokenizer files, `config.json`, `edgetune.json`."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import onnx

from edgetune.deploy.manifest import Manifest
from edgetune.errors import InputError
from edgetune.fsutil import build_dir_atomic

MANIFEST_NAME = "edgetune.json"
MODEL_NAME = "model.onnx"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".data")
_NOT_COPIED = ("training_args.bin", "edgetune_train.json")


@dataclass
class Bundle:
    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_NAME

    @property
    def label_names(self) -> list[str]:
        return list(self.manifest.labels)

    @property
    def max_length(self) -> int:
        return self.manifest.max_length

    @property
    def pairs(self) -> bool:
        """Whether the model classifies sentence pairs (two texts per row)."""
        return self.manifest.task == "text-pair-classification"

    @property
    def channels(self) -> int:
        """An image bundle's input channels (its config.json, or a plain module's record)."""
        config = next(
            (
                self.path / n
                for n in ("config.json", "edgetune_module.json")
                if (self.path / n).is_file()
            ),
            None,
        )
        return int(json.loads(config.read_text()).get("num_channels", 3)) if config else 3


def write_bundle(
    out_dir: str | Path,
    onnx_model: str | Path,
    tokenizer_dir: str | Path,
    manifest: Manifest,
    overwrite: bool = False,
) -> Bundle:
    """Assemble the bundle in a temp folder and move it into place in one step."""
    graph_inputs = onnx.load(str(onnx_model), load_external_data=False).graph.input
    manifest = manifest.model_copy(update={"input_names": [i.name for i in graph_inputs]})

    def build(staging: Path) -> None:
        shutil.copy2(onnx_model, staging / MODEL_NAME)
        for item in Path(tokenizer_dir).iterdir():
            if (
                item.is_file()
                and not item.name.endswith(_WEIGHT_SUFFIXES)
                and item.name not in _NOT_COPIED
            ):
                shutil.copy2(item, staging / item.name)
        text = json.dumps(manifest.to_json(), indent=2, default=str) + "\n"
        (staging / MANIFEST_NAME).write_text(text)

    path = build_dir_atomic(out_dir, build, overwrite)
    return Bundle(path, manifest)


def load_bundle(path: str | Path) -> Bundle:
    """A bundle folder, or a `model.onnx` inside one; the manifest validated."""
    path = Path(path)
    folder = path.parent if path.is_file() else path
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise InputError(f"{path}: not an edgetune bundle (no {MANIFEST_NAME})")
    try:
        data = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{manifest_path}: not valid JSON ({exc})") from None
    bundle = Bundle(folder, Manifest.parse(data, str(manifest_path)))
    if not bundle.model_path.is_file():
        raise InputError(f"{folder}: bundle has no {MODEL_NAME}")
    return bundle
