"""Small helpers the jobs share: opening a bundle or an ONNX file, opsets, model types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from edgetune.deploy.bundle import Bundle, load_bundle
from edgetune.errors import InputError
from edgetune.onnxfile import check_onnx

if TYPE_CHECKING:
    from edgetune.config import BenchConfig, TuneConfig
    from edgetune.measure.fleet import Fleet
    from edgetune.profiles import Profile


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
