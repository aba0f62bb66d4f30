"""`edgetune export`: a fine-tuned checkpoint -> a validated ONNX bundle, optionally compressed."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgetune.compress.modes import build_variants, resolve_modes
from edgetune.compress.passes import PassContext
from edgetune.config import ExportConfig
from edgetune.deploy.bundle import Bundle, write_bundle
from edgetune.deploy.manifest import candidate_manifest
from edgetune.errors import InputError
from edgetune.exporter.onnx import ExportCheck, export_validated, label_names, load_checkpoint
from edgetune.fsutil import build_dir_atomic, check_output_dir
from edgetune.modality import for_model
from edgetune.onnxfile import onnx_opset
from edgetune.profiles import load_profile


@dataclass
class ModuleExport:
    """A plain PyTorch model exported: `path` is its folder's model.onnx."""

    path: Path
    check: ExportCheck


def export_plain_module(config: ExportConfig) -> ModuleExport:
    """`pkg.module:factory` -> OUT/model.onnx + edgetune_export.json, checked against PyTorch."""
    from edgetune.exporter.module import export_module
    from edgetune.factory import load_factory
    from edgetune.measure.synthetic import parse_shapes

    if config.quantize != "none":
        raise InputError(
            "--quantize is for transformers checkpoints; quantize the plain model's "
            "ONNX file after: edgetune quantize OUT/model.onnx --mode MODE"
        )
    shapes = parse_shapes(config.input_shapes)
    if not shapes:
        raise InputError(
            f"{config.checkpoint}: a plain PyTorch model needs its input shapes: "
            "--input-shape x=1x3x224x224 (one per forward argument, in order)"
        )
    model = load_factory(config.checkpoint)
    check_output_dir(config.out, config.overwrite)
    checks: list[ExportCheck] = []

    def build(staging: Path) -> None:
        checks.append(
            export_module(model, shapes, staging / "model.onnx", config.opset, config.atol)
        )
        record = {
            "source": config.checkpoint,
            "input_shapes": shapes,
            "export_check": checks[0].to_json(),
            "opset": onnx_opset(staging / "model.onnx"),
        }
        (staging / "edgetune_export.json").write_text(json.dumps(record, indent=2) + "\n")

    folder = build_dir_atomic(config.out, build, config.overwrite)
    return ModuleExport(folder / "model.onnx", checks[0])


def export(config: ExportConfig) -> Bundle | ModuleExport:
    """Export, check against PyTorch, apply the `quantize` mode (any mode; `none` = fp32)."""
    from edgetune.factory import is_factory

    if is_factory(config.checkpoint):
        return export_plain_module(config)
    profile = load_profile(config.profile)
    [mode] = resolve_modes([config.quantize])
    check_output_dir(config.out, config.overwrite)
    checkpoint = Path(config.checkpoint).expanduser().resolve()
    model, preprocessor = load_checkpoint(checkpoint, config.trust_factory)
    modality = for_model(str(checkpoint))
    max_length = config.max_length or profile.sequence_length
    prepared = modality.prepare(model, preprocessor, profile, max_length)
    samples = 128 if mode.needs_calibration else 0
    inputs = modality.checkpoint_inputs(checkpoint, config.data, prepared, samples)
    labels = label_names(model)
    with tempfile.TemporaryDirectory(prefix="edgetune-export-") as tmp:
        fp32, check = export_validated(
            model,
            prepared.processor,
            Path(tmp) / "model.onnx",
            [],
            prepared.input_size,
            config.opset,
            config.atol,
            inputs.check_batches,
        )
        ctx = PassContext(model_type=model.config.model_type)
        ctx.calibration = inputs.calibration or None
        path, settings = build_variants(fp32, Path(tmp) / "variants", [mode], ctx)[mode.name]
        manifest = candidate_manifest(
            labels,
            prepared.input_size,
            mode.precision,
            profile,
            settings,
            export_check=check.to_json(),
            source=str(checkpoint),
            opset=onnx_opset(fp32),
            task=inputs.task,
        )
        return write_bundle(config.out, path, checkpoint, manifest, config.overwrite)
