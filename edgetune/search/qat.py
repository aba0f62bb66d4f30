"""Quantization-aware recovery offered by the search to a student whose static INT8 broke the
bound while the same student held it in another mode: its weights can hold the bound, the
rounding cannot yet. The student trains a further `[search] qat_share` of its recovery budget
with fake quantization (`compress/qat_recover.py`) and is exported as static INT8 QDQ, a
candidate like any other (`<config>+static-int8-qat`), measured side by side with the rest.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from edgetune.compress import qat
from edgetune.compress.qat_recover import MODE as QAT_MODE
from edgetune.compress.qat_recover import export_quantized, reduce_range, split_budget
from edgetune.compress.recover import distill_student
from edgetune.exporter.onnx import load_checkpoint
from edgetune.search.record import Candidate
from edgetune.train.settings import TrainConfig


def is_static_int8(c: Candidate) -> bool:
    return (c.settings.get("quantization") or {}).get("format") == "QDQ"


def needs_qat(found: list[Candidate], bound: float) -> bool:
    """A static INT8 candidate below `bound` while another mode of the same student holds it."""
    static = [c for c in found if is_static_int8(c) and c.accuracy is not None]
    held = [
        c for c in found if not is_static_int8(c) and c.accuracy and c.accuracy.accuracy >= bound
    ]
    return bool(held) and any(c.accuracy.accuracy < bound for c in static)


def quantization_aware(
    job,  # search.pruning.Student
    pruned,  # compress.recover.PrunedModel: what was cut (the layer map for distillation)
    student,  # its recovered weights, loaded from the best checkpoint
    teacher,
    folder: Path,
    recovery: TrainConfig,
    pruning: dict,
) -> list[Candidate]:
    """The QAT candidate of a recovered student (resumable in `folder / "qat"`)."""
    builder = job.builder
    _, phase = split_budget(recovery, job.search.qat_share)
    rounded = replace(pruned, model=qat.prepare(student, reduce_range(builder.ctx.flags)))
    trained = distill_student(
        rounded,
        builder.processor,
        teacher,
        job.dataset,
        folder / "qat",
        phase,
        resume=True,
        kind=job.search.distillation,
        target_accuracy=job.target_accuracy,
    )
    quantization_trained, _ = load_checkpoint(trained.checkpoint)
    out = folder / "qat-onnx"
    out.mkdir(parents=True, exist_ok=True)
    exported = export_quantized(
        quantization_trained, builder.processor, builder.ctx.calibration, builder.check_batches, out
    )
    qat_record = {"share": job.search.qat_share, "twin": exported.twin, "train": trained.to_json()}
    return [
        builder.candidate(
            f"{pruned.config.name}+{QAT_MODE}",
            "int8",
            exported.model,
            job.evaluation,
            {**exported.manifest_fields(), "pruning": {**pruning, "qat": qat_record}},
            str(trained.checkpoint),
        )
    ]
