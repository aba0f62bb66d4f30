"""The loop's automatic settings, made on the built Trainer before it trains: the batch size
(measured), the schedule that fits a time budget, and the learning rate (range test). Each
choice is saved and reused on resume, so a resumed run trains on the same settings."""

from __future__ import annotations

import math
from pathlib import Path

from edgetune.console import console
from edgetune.train import batch_size, lr_find
from edgetune.train.distributed import from_main, is_main_process, world_size
from edgetune.train.settings import TrainConfig

TIME_FIT = 0.8  # of a time budget planned for steps: the rest for evaluations, saves, drift
EVALS_PER_EPOCH = 4  # training until early stopping: patience counts evaluations, so several


def eval_every(rows: int, batch_size: int, config: TrainConfig) -> int:
    """Every epoch, or `EVALS_PER_EPOCH` times an epoch when training until early stopping (a
    small data set then still gets evaluations enough for patience); at most 500 steps apart."""
    per_epoch = EVALS_PER_EPOCH if config.until_no_gain else 1
    return min(max(1, math.ceil(math.ceil(rows / batch_size) / per_epoch)), 500)


def auto_batch_size(trainer, config: TrainConfig, output_dir: Path, resume: bool, rows: int):
    """With `batch_size = "auto"`: the measured choice (the saved one on resume), set on the
    trainer before the LR range test, so the LR found is the LR for this size."""
    if config.batch_size != "auto":
        return None
    sized = from_main(
        (batch_size.load(output_dir) if resume else None) or batch_size.find_batch_size(trainer)
    )
    if is_main_process():
        batch_size.save(sized, output_dir)
    trainer.args.per_device_train_batch_size = sized.chosen
    trainer._train_batch_size = trainer.args.train_batch_size  # x devices of this process
    if config.eval_steps is None:
        trainer.args.eval_steps = trainer.args.save_steps = eval_every(rows, sized.chosen, config)
    rates = ", ".join(f"{size}: {rate:g}" for size, rate in sized.examples_per_second.items())
    console.log(f"batch size {sized.chosen} (examples/s by size: {rates}; {sized.seconds:.0f} s)")
    return sized


def fit_schedule_to_time(trainer, config: TrainConfig, sized, rows: int) -> None:
    """With a time budget and a measured throughput: plan the steps that fit in it, so the
    learning rate decays to its end inside the budget instead of being cut off at a high
    value. The same numbers on resume (the measurement is saved), so the same schedule.

    Given epochs are a cap (the plan only shortens them). Without them the plan is the run's
    length and early stopping may end it sooner; a given batch size is then timed the same way
    (again on resume), as the plan needs a pace."""
    if not (config.max_train_minutes and config.max_steps <= 0):
        return
    if sized is None and config.until_no_gain:
        size = trainer.args.per_device_train_batch_size
        sample = max(batch_size.SAMPLE, size)
        sized = from_main(batch_size.find_batch_size(trainer, (size,), sample))
    if sized is None:  # epochs and batch size given: FitToTimeCallback shortens at the real pace
        return
    rate = sized.examples_per_second.get(sized.chosen) or 0.0
    per_epoch = steps_per_epoch(rows, sized.chosen)
    planned = math.ceil(config.planned_epochs * per_epoch)
    fits = int(TIME_FIT * config.max_train_minutes * 60.0 * rate / sized.chosen)
    if fits > 0 and config.until_no_gain:
        trainer.args.max_steps = fits
        console.log(
            f"schedule: {fits} steps fit in {config.max_train_minutes:g} min at {rate:g} "
            f"examples/s (about {fits / per_epoch:.1f} epochs); early stopping ends it "
            f"sooner once {config.early_stopping_patience} evaluations in a row gain no "
            f"more than {config.early_stopping_min_delta:g}"
        )
    elif 0 < fits < planned:
        trainer.args.max_steps = fits
        console.log(
            f"schedule: {fits} steps fit in {config.max_train_minutes:g} min at "
            f"{rate:g} examples/s (of {planned} for {config.planned_epochs:g} epochs)"
        )


def steps_per_epoch(rows: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: every process takes `batch_size` rows a step."""
    return math.ceil(rows / (batch_size * world_size()))


def planned_steps(trainer) -> int:
    """The optimizer steps the run is planned for: its max steps, else its epochs'."""
    if trainer.args.max_steps > 0:
        return trainer.args.max_steps
    per_epoch = steps_per_epoch(len(trainer.train_dataset), trainer.args.train_batch_size)
    return math.ceil(trainer.args.num_train_epochs * per_epoch)


def auto_learning_rate(trainer, config: TrainConfig, output_dir: Path, resume: bool):
    """With `learning_rate = "auto"`: the range test's choice (the saved one on resume)."""
    if config.learning_rate != "auto":
        return None
    saved = lr_find.load(output_dir) if resume else None
    found = from_main(saved or lr_find.find_lr(trainer, lr_find.steps_for(planned_steps(trainer))))
    found = lr_find.capped(found, config.max_auto_learning_rate)
    if is_main_process():
        lr_find.save(found, output_dir)
    trainer.args.learning_rate = found.suggestion
    how = "" if found.method == lr_find.LrFindResult.method else f"; {found.method}"
    console.log(
        f"learning rate {found.suggestion:.2g} (LR range test, {found.steps} steps, "
        f"{found.seconds:.0f} s{how})"
    )
    return found
