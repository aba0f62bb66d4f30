"""`edgetune export`: a fine-tuned checkpoint -> a validated ONNX bundle, optionally compressed."""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgetune.compress.modes import build_variants, resolve_modes
from edgetune.compress.passes import PassContext
from edgetune.config import ExportConfig
from edgetune.data.encoding import calibration_batches
from edgetune.deploy.bundle import Bundle, write_bundle
from edgetune.deploy.manifest import candidate_manifest
from edgetune.exporter.onnx import export_validated, load_checkpoint
from edgetune.fsutil import check_output_dir
from edgetune.jobs.common import onnx_opset, validation_texts
from edgetune.profiles import load_profile


def export(config: ExportConfig) -> Bundle:
    """Export, check against PyTorch, apply the `quantize` mode (any mode; `none` = fp32)."""
    profile = load_profile(config.profile)
    [mode] = resolve_modes([config.quantize])
    check_output_dir(config.out, config.overwrite)
    checkpoint = Path(config.checkpoint).expanduser().resolve()
    model, tokenizer = load_checkpoint(checkpoint)
    max_length = config.max_length or profile.sequence_length
    texts = validation_texts(checkpoint, config.data)
    labels = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    with tempfile.TemporaryDirectory(prefix="edgetune-export-") as tmp:
        fp32, check = export_validated(model, tokenizer, Path(tmp) / "model.onnx", texts, max_length,
                                       config.opset, config.atol)
        ctx = PassContext(model_type=model.config.model_type)
        if mode.needs_calibration:
            ctx.calibration = calibration_batches(tokenizer, texts, max_length, 128, 0)
        path, settings = build_variants(fp32, Path(tmp) / "variants", [mode], ctx)[mode.name]
        manifest = candidate_manifest(labels, max_length, mode.precision, profile, settings,
                                      export_check=check.to_json(), source=str(checkpoint),
                                      opset=onnx_opset(fp32))
        return write_bundle(config.out, path, checkpoint, manifest, config.overwrite)
