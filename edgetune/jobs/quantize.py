"""`edgetune quantize`: any ONNX model (or bundle) through the named modes into OUT/<mode>/."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from edgetune.compress.modes import build_variants, resolve_modes
from edgetune.compress.passes import PassContext
from edgetune.config import QuantizeConfig
from edgetune.data.arrays import is_array_data, load_array_data
from edgetune.data.encoding import calibration_batches
from edgetune.data.tokenizer import load_tokenizer
from edgetune.deploy.bundle import write_bundle
from edgetune.deploy.manifest import derived_manifest
from edgetune.errors import InputError
from edgetune.fsutil import build_dir_atomic, check_output_dir
from edgetune.jobs.common import model_type_of, open_model
from edgetune.measure.synthetic import graph_input_specs
from edgetune.modality import for_bundle


def quantize(config: QuantizeConfig) -> dict[str, Path]:
    """Returns the folder written for each mode. Accuracy is not measured here (bench it)."""
    bundle, source = open_model(config.model)
    modes = resolve_modes(config.modes)
    check_output_dir(config.out, config.overwrite)
    ctx = PassContext(model_type=model_type_of(bundle.path if bundle else None))
    if any(m.needs_calibration for m in modes):
        if config.calibration_data is None:
            raise InputError("static INT8 modes need --calibration-data")
        if is_array_data(config.calibration_data):
            arrays = load_array_data(config.calibration_data, graph_input_specs(source))
            ctx.calibration = arrays.batches(1, config.calibration_samples)
        elif bundle:
            ctx.calibration = for_bundle(bundle).bundle_calibration(
                bundle, config.calibration_data, config.calibration_samples
            )
        else:  # a bare ONNX file with a tokenizer beside it (or named)
            ctx.calibration = _text_calibration(config, source)
    written: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="edgetune-quantize-") as tmp:
        built = build_variants(source, tmp, modes, ctx)
        for mode in modes:
            model_file, settings = built[mode.name]
            target = Path(config.out) / mode.name
            if bundle:
                manifest = derived_manifest(
                    bundle.manifest, mode.precision, settings, candidate=mode.name
                )
                written[mode.name] = write_bundle(
                    target, model_file, bundle.path, manifest, config.overwrite
                ).path
            else:
                build_dir_atomic(
                    target,
                    lambda d, f=model_file: shutil.copy2(f, d / "model.onnx"),
                    config.overwrite,
                )
                written[mode.name] = target
    return written


def _text_calibration(config: QuantizeConfig, source: Path) -> list[dict]:
    from edgetune.data.text import load_text_dataset

    tokenizer = load_tokenizer(config.tokenizer or source.parent)
    texts = list(load_text_dataset(config.calibration_data).train["text"])
    return calibration_batches(tokenizer, texts, config.max_length, config.calibration_samples, 0)
