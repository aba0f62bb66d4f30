"""Trainer callbacks that stop training on a preset condition: a deadline, a target accuracy."""

from __future__ import annotations

import time
from functools import partial

from transformers import TrainerCallback

from edgetune.train.distributed import from_main


class TimeBudgetCallback(TrainerCallback):
    """Stops training past a deadline, after one last evaluation and save."""

    def __init__(self, minutes: float) -> None:
        self.minutes = minutes
        self.deadline: float | None = None
        self.hit = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.deadline = time.monotonic() + self.minutes * 60.0

    def on_step_end(self, args, state, control, **kwargs):
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.hit = True
            control.should_training_stop = True
            control.should_evaluate = True
            control.should_save = True
        return control


class TargetCallback(TrainerCallback):
    """Stops training once an evaluation's accuracy reaches `target` (the best checkpoint,
    this one, is kept by `load_best_model_at_end`)."""

    def __init__(self, target: float) -> None:
        self.target = target
        self.hit = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and metrics.get("eval_accuracy", -1.0) >= self.target:
            self.hit = True
            control.should_training_stop = True
            control.should_save = True
        return control


class FitToTimeCallback(TrainerCallback):
    """Re-plans a time-budgeted run's length from its own first steps.

    The batch-size test times forward + backward only; real steps add the optimizer, data
    loading and checkpoints, and on a shared CPU run slower still. After `measure_steps` real
    steps, the run is shortened to the steps that fit in `fit` of the budget at the measured
    pace, and the warm-up/decay schedule is stretched to the new end (so the learning rate
    still decays to its end instead of being cut off high). It only ever shortens a run.
    """

    def __init__(self, minutes: float, fit: float, measure_steps: int = 40) -> None:
        self.minutes, self.fit, self.measure_steps = minutes, fit, measure_steps
        self.started: float | None = None
        self.first_step = 0
        self.replanned: tuple[int, int] | None = None  # (old, new) total steps

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.first_step = time.monotonic(), state.global_step

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        done = state.global_step - self.first_step
        if self.replanned is not None:
            if state.global_step == state.max_steps:  # the new end: evaluate and save there
                control.should_evaluate = control.should_save = True
            return control
        if done < self.measure_steps or self.started is None:
            return control
        pace = (time.monotonic() - self.started) / done
        left = self.fit * self.minutes * 60.0 - (time.monotonic() - self.started)
        total = from_main(state.global_step + max(1, int(left / pace)))  # one end for all processes
        if total < state.max_steps and _stretch(
            lr_scheduler, state.max_steps, total, state.global_step
        ):
            self.replanned = (state.max_steps, total)
            state.max_steps = total
        else:
            self.replanned = (state.max_steps, state.max_steps)
        return control


def _stretch(scheduler, old_total: int, new_total: int, done: int = 0) -> bool:
    """Point a transformers warm-up/decay schedule (a LambdaLR over a partial that takes
    `num_training_steps`) at a new total, its warm-up scaled alike (what is left of a warm-up
    under way is scaled, not what is done, so the rate does not jump); False if it is not one."""
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if not lambdas or not all(
        isinstance(f, partial) and "num_training_steps" in f.keywords for f in lambdas
    ):
        return False
    scale = new_total / old_total
    for index, f in enumerate(lambdas):
        keywords = {**f.keywords, "num_training_steps": new_total}
        if "num_warmup_steps" in keywords:
            warmup = keywords["num_warmup_steps"]
            keywords["num_warmup_steps"] = (
                done + round((warmup - done) * scale)
                if done < warmup
                else max(0, round(warmup * scale))
            )
        lambdas[index] = partial(f.func, *f.args, **keywords)
    return True
