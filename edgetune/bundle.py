"""The deployable bundle: `model.onnx`, tokenizer files, `config.json`, `edgetune.json`.

`edgetune.json` (the manifest) says what a server needs to run the model and what was
measured: task, labels, input names, max length, precision, profile, metrics, version.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import onnx

from edgetune import __version__
from edgetune.errors import InputError
from edgetune.fsutil import build_dir_atomic

MANIFEST_NAME = "edgetune.json"
MODEL_NAME = "model.onnx"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".data")
_NOT_COPIED = ("training_args.bin", "edgetune_train.json")


@dataclass
class Bundle:
    path: Path
    manifest: dict

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_NAME

    @property
    def label_names(self) -> list[str]:
        return list(self.manifest["labels"])

    @property
    def max_length(self) -> int:
        return int(self.manifest["max_length"])


def write_bundle(
    out_dir: str | Path, onnx_model: str | Path, tokenizer_dir: str | Path, manifest: dict,
    overwrite: bool = False,
) -> Bundle:
    """Assemble the bundle in a temp folder and move it into place in one step."""
    full_manifest = {"format": "edgetune-bundle/1", "edgetune_version": __version__, **manifest,
                     "input_names": [i.name for i in onnx.load(str(onnx_model), load_external_data=False).graph.input]}

    def build(staging: Path) -> None:
        shutil.copy2(onnx_model, staging / MODEL_NAME)
        for item in Path(tokenizer_dir).iterdir():
            if item.is_file() and not item.name.endswith(_WEIGHT_SUFFIXES) and item.name not in _NOT_COPIED:
                shutil.copy2(item, staging / item.name)
        (staging / MANIFEST_NAME).write_text(json.dumps(full_manifest, indent=2, default=str) + "\n")

    path = build_dir_atomic(out_dir, build, overwrite)
    return Bundle(path, full_manifest)


def load_bundle(path: str | Path) -> Bundle:
    """A bundle folder, or a `model.onnx` inside one."""
    path = Path(path)
    folder = path.parent if path.is_file() else path
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise InputError(f"{path}: not an edgetune bundle (no {MANIFEST_NAME})")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{manifest_path}: not valid JSON ({exc})") from None
    return Bundle(folder, manifest)
