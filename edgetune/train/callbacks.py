"""Trainer callbacks that stop training on a preset condition: a deadline, a target accuracy."""

from __future__ import annotations

import time

from transformers import TrainerCallback


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
