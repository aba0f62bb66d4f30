"""`edgetune prune`: prune a fine-tuned checkpoint, recover it, export a validated bundle."""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgetune.compress import qat
from edgetune.compress.channels import is_channel_pruned, trained_in_memory
from edgetune.compress.passes import PassContext, Step, get_pass
from edgetune.compress.pruning import PruneConfig, run_torch_steps
from edgetune.compress.qat_recover import export_quantized, reduce_range, split_budget
from edgetune.compress.recover import (
    distill_student,
    distillation_kind,
    make_student,
    scoring_batches,
)
from edgetune.config import PruneJobConfig
from edgetune.console import console
from edgetune.data.labels import align_labels
from edgetune.deploy.bundle import Bundle, write_bundle
from edgetune.deploy.manifest import candidate_manifest
from edgetune.exporter.onnx import export_validated, label_names, load_checkpoint
from edgetune.fsutil import check_output_dir
from edgetune.modality import for_model
from edgetune.profiles import load_profile


def prune(config: PruneJobConfig) -> Bundle:
    """Structured passes from layers/heads/ffn/hidden, then `passes`; recovery; export + check.

    Passes whose effect training would undo (`after_training`, e.g. sparsity) run on the
    recovered student, just before the export."""
    profile = load_profile(config.profile)
    structured = PruneConfig(config.layers, config.heads, config.ffn, config.hidden)
    extra = [Step.parse(p) for p in config.passes]
    before = [s for s in extra if not get_pass(s.pass_name).after_training]
    after = [s for s in extra if s not in before]
    check_output_dir(config.out, config.overwrite)
    checkpoint = Path(config.checkpoint).expanduser().resolve()
    teacher, tokenizer = load_checkpoint(checkpoint, config.trust_factory)
    names = label_names(teacher)
    train = config.train.for_profile(profile)
    modality = for_model(str(checkpoint))
    dataset = align_labels(modality.load_data(config, train.seed, str(checkpoint)), names)
    prepared = modality.prepare(teacher, tokenizer, profile, train.max_length)
    batches = scoring_batches(prepared.processor, teacher, dataset, train, seed=train.seed)
    pruned = make_student(teacher, structured, batches, config.importance, before)
    console.log(
        f"pruned {pruned.name}: {pruned.params_after / 1e6:.1f}M of "
        f"{pruned.params_before / 1e6:.1f}M parameters kept"
    )
    qat_alone = config.qat and pruned.config.is_dense and not before  # nothing cut to recover
    share = 1.0 if qat_alone else config.qat_share
    recovery, qat_phase = split_budget(train, share) if config.qat else (train, None)
    with tempfile.TemporaryDirectory(prefix="edgetune-prune-") as tmp:

        def recover(folder: str, phase):
            return distill_student(
                pruned,
                prepared.processor,
                teacher,
                dataset,
                Path(tmp) / folder,
                phase,
                use_teacher=config.distill,
                kind=config.distillation,
            )

        trained = None if qat_alone else recover("train", recovery)
        if qat_phase:
            qat.prepare(pruned.model, reduce_range())  # the same student, now rounded
            trained = recover("qat", qat_phase)
        # A channel-pruned CNN no longer matches its config.json: the trained model in memory
        # (the best checkpoint's weights, loaded back by the Trainer) is what is exported.
        student = (
            trained_in_memory(pruned.model)
            if is_channel_pruned(pruned.model)
            else load_checkpoint(trained.checkpoint, config.trust_factory)[0]
        )
        pruned.steps += run_torch_steps(student, after, PassContext())
        check_batches = modality.check_batches(dataset, prepared)
        quantized = None
        if qat_phase:
            calibration = modality.calibration(
                dataset, prepared, config.calibration_samples, train.seed
            )
            quantized = export_quantized(
                student, prepared.processor, calibration, check_batches, Path(tmp), config.atol
            )
            onnx_model, check = quantized.model, quantized.export_check
        else:
            onnx_model, check = export_validated(
                student,
                prepared.processor,
                Path(tmp) / "model.onnx",
                [],
                prepared.input_size,
                atol=config.atol,
                batches=check_batches,
            )
        pruning = {
            **pruned.to_json(),
            "importance": config.importance,
            "distilled": config.distill,
            "distillation": distillation_kind(teacher, config.distillation)
            if config.distill
            else None,
        }
        if quantized:
            pruning["qat"] = {"share": share, "twin": quantized.twin}
        manifest = candidate_manifest(
            names,
            prepared.input_size,
            "int8" if quantized else "fp32",
            profile,
            quantized.manifest_fields() if quantized else {},
            source=str(checkpoint),
            pruning=pruning,
            metrics={"pytorch_accuracy": trained.metrics["accuracy"]},
            train=trained.to_json(),
            export_check=check.to_json(),
            task=modality.task(dataset),
        )
        return write_bundle(config.out, onnx_model, trained.checkpoint, manifest, config.overwrite)
