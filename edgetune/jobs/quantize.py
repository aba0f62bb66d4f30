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
from edgetune.deploy.bundle import MANIFEST_NAME, Bundle, load_bundle, write_bundle
from edgetune.errors import InputError
from edgetune.fsutil import build_dir_atomic, check_output_dir
from edgetune.jobs.common import check_is_onnx, model_type_of
from edgetune.measure.synthetic import graph_input_specs


def quantize(config: QuantizeConfig) -> dict[str, Path]:
    """Returns the folder written for each mode. Accuracy is not measured here (bench it)."""
    path = Path(config.model)
    if not path.exists():
        raise InputError(
            f"'{config.model}' does not exist; give a model.onnx file or a bundle folder"
        )
    modes = resolve_modes(config.modes)
    is_bundle = path.is_dir() or (path.parent / MANIFEST_NAME).is_file()
    bundle: Bundle | None = load_bundle(path) if is_bundle else None
    source = bundle.model_path if bundle else path
    check_is_onnx(source)
    check_output_dir(config.out, config.overwrite)
    ctx = PassContext(model_type=model_type_of(bundle.path if bundle else None))
    if any(m.needs_calibration for m in modes):
        if config.calibration_data is None:
            raise InputError("static INT8 modes need --calibration-data")
        if is_array_data(config.calibration_data):
            arrays = load_array_data(config.calibration_data, graph_input_specs(source))
            ctx.calibration = arrays.batches(1, config.calibration_samples)
        elif bundle and bundle.manifest.task == "image-classification":
            ctx.calibration = _image_calibration(config, bundle)
        else:
            ctx.calibration = _text_calibration(config, bundle, source)
    written: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="edgetune-quantize-") as tmp:
        built = build_variants(source, tmp, modes, ctx)
        for mode in modes:
            model_file, settings = built[mode.name]
            target = Path(config.out) / mode.name
            if bundle:
                manifest = bundle.manifest.model_copy(
                    update={
                        **settings,
                        "precision": mode.precision,
                        "candidate": mode.name,
                        "metrics": None,
                    }
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


def _text_calibration(config: QuantizeConfig, bundle: Bundle | None, source: Path) -> list[dict]:
    from edgetune.data.text import load_text_dataset

    tokenizer = load_tokenizer(config.tokenizer or (bundle.path if bundle else source.parent))
    length = bundle.max_length if bundle else config.max_length
    texts = list(load_text_dataset(config.calibration_data).train["text"])
    return calibration_batches(tokenizer, texts, length, config.calibration_samples, 0)


def _image_calibration(config: QuantizeConfig, bundle: Bundle) -> list[dict]:
    """Training images of `--calibration-data` (a folder or CSV of images) through the
    bundle's own image processor."""
    from edgetune.data.image_processor import load_image_processor
    from edgetune.data.images import load_image_dataset
    from edgetune.data.pixels import calibration_pixels

    images = load_image_dataset(config.calibration_data).train["image"]
    return calibration_pixels(
        load_image_processor(bundle.path), images, config.calibration_samples, 0
    )
