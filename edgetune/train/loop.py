"""Fine-tune a pretrained classifier (any modality: the dataset's says how its rows become
inputs) with transformers' `Trainer`.

The loop people expect: evaluation on held-out data every epoch (or N steps), a learning-rate
schedule (warm-up then linear/cosine, or reduce-on-plateau), early stopping on a preset
condition, a budget (epochs, steps, minutes: whichever comes first; minutes alone train until
early stopping), batch size found by `auto_find_batch_size`, the best checkpoint kept, and
`resume` from the last checkpoint. Evaluations during training see at most `EVAL_ROWS`
validation rows (a fixed stratified sample); the reported metrics are on all of them.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from transformers import Trainer

from edgetune.console import console
from edgetune.fsutil import write_json_atomic
from edgetune.train.autoset import (
    TIME_FIT,
    auto_batch_size,
    auto_learning_rate,
    eval_every,
    fit_schedule_to_time,
)
from edgetune.train.callbacks import FitToTimeCallback, TargetCallback, TimeBudgetCallback
from edgetune.train.distill import DistillationTrainer, DistillConfig
from edgetune.train.distributed import world_size
from edgetune.train.plain import PlainClassifier, save_record
from edgetune.train.precision import training_precision
from edgetune.train.progress import RichProgressCallback
from edgetune.train.settings import TrainConfig
from edgetune.train.sources import last_good_checkpoint

LOG = logging.getLogger(__name__)
TRAIN_RECORD = "edgetune_train.json"
EVAL_ROWS = 1000  # validation rows the evaluations during training see (a large set: a sample)


@dataclass
class TrainResult:
    checkpoint: Path
    metrics: dict[str, float]
    steps: int = 0
    train_seconds: float = 0.0
    stopped_by: str = "epochs"
    learning_rate: float | None = None  # the one used (found, when the config says auto)
    lr_find: dict | None = None  # the range test's curve and cost, when it ran
    precision: str = "fp32"  # what training computed in, and why
    examples_per_second: float = 0.0  # training throughput (steps x batch / seconds)
    batch_size: dict | None = None  # the measured choice, when the config says auto
    epochs: float = 0.0  # epochs trained (fractional: where the run stopped)

    def to_json(self) -> dict:
        return {
            "checkpoint": str(self.checkpoint),
            "metrics": self.metrics,
            "steps": self.steps,
            "train_seconds": round(self.train_seconds, 1),
            "stopped_by": self.stopped_by,
            "learning_rate": self.learning_rate,
            "lr_find": self.lr_find,
            "precision": self.precision,
            "examples_per_second": round(self.examples_per_second, 1),
            "batch_size": self.batch_size,
            "epochs": round(self.epochs, 2),
        }


def fine_tune(
    model_source: str,
    dataset,  # a TextDataset or ImageDataset, adopted by its modality
    output_dir: str | Path,
    config: TrainConfig,
    resume: bool = False,
    model=None,
    tokenizer=None,
    teacher=None,
    distill: DistillConfig | None = None,
    target_accuracy: float | None = None,
) -> TrainResult:
    """Fine-tune and return the best checkpoint (saved to `output_dir/best`).

    Pass `model`/`tokenizer` to train an already-built model (a pruned student), `teacher`
    to distil from it with the same loop, and `target_accuracy` to stop as soon as an
    evaluation reaches it (the search gives the minutes saved to the next student).
    """
    import torch
    from transformers import EarlyStoppingCallback, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback

    if config.max_length is None:
        raise ValueError("fine_tune needs TrainConfig.max_length (the jobs set the profile's)")
    datasets.disable_progress_bars()
    set_seed(config.seed)
    output_dir = Path(output_dir)
    modality = dataset.modality  # decided when the data was loaded (`edgetune.modality`)
    if modality is None:
        raise ValueError("fine_tune needs a dataset loaded through its modality (adopt it)")
    if model is None:
        modality.check_source(model_source)
        model, tokenizer = modality.load_pretrained(model_source, dataset.label_names)
    task = modality.train_task(tokenizer, model, config)

    train = dataset.train
    if config.max_train_samples and len(train) > config.max_train_samples:
        train = train.shuffle(seed=config.seed).select(range(config.max_train_samples))

    train_tok = task.encode(train, training=True)
    val_tok = task.encode(evaluation_rows(dataset.validation, config.seed), training=False)

    start_batch = 32 if config.batch_size == "auto" else config.batch_size
    eval_steps = config.eval_steps or eval_every(len(train_tok), start_batch, config)
    scheduler_type = "reduce_lr_on_plateau" if config.scheduler == "plateau" else config.scheduler
    scheduler_kwargs = (
        {"mode": "max", "factor": 0.5, "patience": 1} if config.scheduler == "plateau" else {}
    )

    use_bf16, precision_reason = training_precision(config.precision)
    console.log(f"training precision: {precision_reason}")
    had_checkpoints = (output_dir / "checkpoints").is_dir()  # before the Trainer makes it
    last = last_good_checkpoint(output_dir / "checkpoints") if resume else None
    args = TrainingArguments(
        output_dir=str(output_dir / "checkpoints"),
        num_train_epochs=config.planned_epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate if config.learning_rate != "auto" else 5e-5,
        per_device_train_batch_size=start_batch,
        per_device_eval_batch_size=64,
        auto_find_batch_size=config.auto_find_batch_size,
        lr_scheduler_type=scheduler_type,
        lr_scheduler_kwargs=scheduler_kwargs,
        warmup_ratio=config.warmup_ratio if config.scheduler != "plateau" else 0.0,
        weight_decay=config.weight_decay,
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=eval_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=config.metric,
        greater_is_better=True,
        logging_steps=max(1, min(50, eval_steps)),
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        fp16=False,
        bf16=use_bf16,
        group_by_length=task.group_by_length,
        remove_unused_columns=task.remove_unused_columns,
        save_safetensors=True,
    )

    def compute_metrics(eval_pred):
        logits, labels = eval_pred
        return task.metrics(np.asarray(logits), np.asarray(labels))

    early = EarlyStoppingCallback(config.early_stopping_patience, config.early_stopping_min_delta)
    callbacks = [early, RichProgressCallback()]
    budget = TimeBudgetCallback(config.max_train_minutes) if config.max_train_minutes else None
    target = TargetCallback(target_accuracy) if target_accuracy is not None else None
    fit = (
        FitToTimeCallback(config.max_train_minutes, TIME_FIT)
        if config.max_train_minutes and config.max_steps <= 0
        else None
    )
    callbacks += [c for c in (budget, target, fit) if c is not None]
    extra = (
        {"teacher": teacher, "distill": distill or DistillConfig()} if teacher is not None else {}
    )
    trainer = (DistillationTrainer if teacher is not None else Trainer)(
        **extra,
        model=model,
        args=args,
        train_dataset=train_tok,
        eval_dataset=val_tok,
        processing_class=tokenizer,
        data_collator=task.collator(),
        compute_metrics=compute_metrics,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # our rich callback reports progress instead
    sized = auto_batch_size(trainer, config, output_dir, resume, len(train_tok))
    fit_schedule_to_time(trainer, config, sized, len(train_tok))
    found = auto_learning_rate(trainer, config, output_dir, resume)
    if resume and last is None and had_checkpoints:
        LOG.warning("--resume: no checkpoint in %s, starting from the beginning", args.output_dir)
    started = time.monotonic()
    output = trainer.train(resume_from_checkpoint=last)
    train_seconds = time.monotonic() - started

    # The reported metrics in fp32, as the exported model computes, whatever training used.
    metrics = task.validation_metrics(trainer.model, dataset.validation)

    best = output_dir / "best"
    trainer.save_model(str(best))  # every process calls it; only the main one writes
    stopped_by = (
        f"target accuracy {target_accuracy:.4f} reached"
        if target and target.hit
        else _stop_reason(trainer, config, budget, fit, early)
    )
    console.log(f"training stopped by {stopped_by} after {trainer.state.epoch or 0:.2f} epochs")
    steps_run = output.global_step - (int(Path(last).name.split("-")[1]) if last else 0)
    rate = steps_run * trainer._train_batch_size / max(train_seconds, 1e-9)
    result = TrainResult(
        best,
        metrics,
        output.global_step,
        train_seconds,
        stopped_by,
        trainer.args.learning_rate,
        found.to_json() if found else None,
        precision_reason,
        rate,
        sized.to_json() if sized else None,
        trainer.state.epoch or 0.0,
    )
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(best))
        if isinstance(model, PlainClassifier):  # what rebuilds it: factory + labels
            save_record(model, best)
        # Written last: its presence marks a finished run for `finished_training`.
        write_json_atomic(
            best / TRAIN_RECORD,
            {
                "config": config.model_dump(mode="json"),
                "processes": world_size(),
                **result.to_json(),
            },
        )
    return result


def finished_training(output_dir: str | Path, config: TrainConfig) -> TrainResult | None:
    """The result of an earlier run in `output_dir` that finished with the same settings.

    `--resume` uses it so that a run stopped *after* training (during export or the search)
    does not train again; a run stopped during training resumes from its last checkpoint.
    """
    record_path = Path(output_dir) / "best" / TRAIN_RECORD
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text())
    if record.get("config") != config.model_dump(mode="json"):
        LOG.warning("--resume: training settings changed since the finished run; training again")
        return None
    return TrainResult(
        record_path.parent,
        record["metrics"],
        record["steps"],
        record["train_seconds"],
        record["stopped_by"],
        record.get("learning_rate"),
        record.get("lr_find"),
        record.get("precision", "fp32"),
        record.get("examples_per_second", 0.0),
        record.get("batch_size"),
        record.get("epochs", 0.0),
    )


def evaluation_rows(validation, seed: int):
    """What the evaluations during training see: all rows, or a fixed stratified sample of
    `EVAL_ROWS` (patience needs frequent evaluations, and they stay cheap on a large set)."""
    if len(validation) <= EVAL_ROWS:
        return validation
    if "label" not in validation.column_names:  # tagged sentences: a plain seeded sample
        return validation.shuffle(seed=seed).select(range(EVAL_ROWS))
    try:
        return validation.train_test_split(
            test_size=EVAL_ROWS, seed=seed, stratify_by_column="label"
        )["test"]
    except ValueError:  # a label too rare to stratify: a plain seeded sample
        return validation.shuffle(seed=seed).select(range(EVAL_ROWS))


def _stop_reason(trainer, config: TrainConfig, budget, fit, early) -> str:
    """Which preset condition ended training, in words (the log and the report say it)."""
    if budget is not None and budget.hit:
        return f"time budget ({config.max_train_minutes:g} min)"
    if early.early_stopping_patience_counter >= config.early_stopping_patience:
        return (
            f"early stopping: {config.early_stopping_patience} evaluations in a row without "
            f"a gain above {config.early_stopping_min_delta:g} (--patience, --min-delta)"
        )
    state = trainer.state
    if config.max_steps > 0 and state.global_step >= config.max_steps:
        return f"max steps ({config.max_steps})"
    shortened = fit is not None and fit.replanned and fit.replanned[1] < fit.replanned[0]
    if (
        fit is not None
        and state.global_step >= state.max_steps
        and (trainer.args.max_steps > 0 or shortened)
    ):  # the steps planned for the minutes ran
        planned = fit.replanned[0] if fit.replanned else state.max_steps
        return (
            f"time budget: the {state.max_steps} steps that fit in "
            f"{config.max_train_minutes:g} min"
            + (f" (re-planned from {planned} at the pace measured)" if shortened else "")
        )
    return f"epochs ({config.planned_epochs:g})"
