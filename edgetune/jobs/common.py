"""Small helpers the jobs share: opening a bundle or an ONNX file, opsets, model types."""

from __future__ import annotations

import json
from pathlib import Path

from edgetune.deploy.bundle import Bundle, load_bundle
from edgetune.errors import InputError
from edgetune.onnxfile import check_onnx


def open_model(model: str | Path) -> tuple[Bundle | None, Path]:
    """A bundle (its folder, or the model.onnx inside it) or a bare ONNX file: the bundle if it
    is one, and the ONNX file, checked to parse."""
    path = Path(model)
    if not path.exists():
        raise InputError(f"'{model}' does not exist; give a model.onnx file or a bundle folder")
    bundle: Bundle | None = None
    try:
        bundle = load_bundle(path)
    except InputError:
        if path.is_dir():
            raise  # a folder must be a bundle: say what is wrong with it
    model_path = bundle.model_path if bundle else path
    check_onnx(model_path)
    return bundle, model_path


def model_type_of(folder: Path | None) -> str | None:
    """The `model_type` in a folder's config.json (None for an ONNX file without one)."""
    config = folder / "config.json" if folder else None
    if config is None or not config.is_file():
        return None
    return json.loads(config.read_text()).get("model_type")
