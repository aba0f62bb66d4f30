"""Trainer's steps on the shared console: a rich bar on a terminal; elsewhere (CI, nohup, a log
file) a plain line every `EDGETUNE_PROGRESS_SECONDS` (default 30) with step, loss, rate, ETA."""

from __future__ import annotations

import os
import sys
import time

from rich.progress import Progress
from transformers import TrainerCallback

from edgetune.console import console, make_progress


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


class RichProgressCallback(TrainerCallback):
    """Training steps as a rich bar (or periodic lines); the latest loss and eval metric."""

    def __init__(self, every_seconds: float | None = None) -> None:
        self.progress: Progress | None = None
        self.task = None
        self.plain = not sys.stderr.isatty()
        self.every = every_seconds or float(os.environ.get("EDGETUNE_PROGRESS_SECONDS", "30"))
        self.loss: float | None = None
        self.started = self.last_line = 0.0
        self.first_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.last_line = time.monotonic()
        self.first_step = state.global_step
        if self.plain:
            console.log(f"fine-tune: {state.max_steps} steps (progress every {self.every:g} s)")
            return
        self.progress = make_progress()
        self.progress.start()
        self.task = self.progress.add_task(
            "fine-tune", total=state.max_steps, status="", completed=state.global_step
        )

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)
        now = time.monotonic()
        if self.plain and now - self.last_line >= self.every:
            self.last_line = now
            done = state.global_step - self.first_step
            rate = done / max(now - self.started, 1e-9)
            left = (state.max_steps - state.global_step) / rate if rate > 0 else float("inf")
            loss = f", loss {self.loss:.4f}" if self.loss is not None else ""
            console.log(
                f"step {state.global_step}/{state.max_steps} "
                f"({100 * state.global_step / max(state.max_steps, 1):.0f} %){loss}, "
                f"{rate:.2f} steps/s, ETA {_duration(left)}"
            )

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        if "eval_accuracy" in logs:
            console.log(
                f"step {state.global_step}: eval accuracy {logs['eval_accuracy']:.4f}"
                f"  macro-F1 {logs.get('eval_macro_f1', float('nan')):.4f}"
            )
        elif "loss" in logs:
            self.loss = logs["loss"]
            if self.progress is not None:
                self.progress.update(self.task, status=f"loss {self.loss:.4f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
