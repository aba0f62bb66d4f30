"""Trainer's steps as a rich progress bar on the shared console."""

from __future__ import annotations

from rich.progress import Progress
from transformers import TrainerCallback

from edgetune.console import console, make_progress


class RichProgressCallback(TrainerCallback):
    """Training steps as a rich bar; the latest loss and eval metric beside it."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.progress = make_progress()
        self.progress.start()
        self.task = self.progress.add_task("fine-tune", total=state.max_steps, status="",
                                           completed=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or not logs:
            return
        if "eval_accuracy" in logs:
            console.log(f"step {state.global_step}: eval accuracy {logs['eval_accuracy']:.4f}"
                        f"  macro-F1 {logs.get('eval_macro_f1', float('nan')):.4f}")
        elif "loss" in logs:
            self.progress.update(self.task, status=f"loss {logs['loss']:.4f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
