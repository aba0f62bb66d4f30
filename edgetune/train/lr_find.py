"""The learning-rate range test: find a learning rate instead of asking the user for one.

Exponentially increasing learning rates over a short run (100 steps by default) on the real
training batches and the real loss (distillation included, through the trainer's own
`compute_loss`); the smoothed loss is read back and the learning rate at its steepest descent
is taken (as fastai's and Lightning's `lr_find` do), capped at a tenth of where the loss was
lowest. The weights are put back afterwards, so the run itself starts from where it was.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgetune.fsutil import write_json_atomic

RECORD = "lr_find.json"


@dataclass
class LrFindResult:
    learning_rates: list[float]
    losses: list[float]  # smoothed (exponential moving average, bias-corrected)
    suggestion: float
    steps: int
    seconds: float
    method: str = ("steepest descent of the smoothed loss over a decade of LRs, within 1/100..1/10 "
                   "of the lowest-loss LR")

    def to_json(self) -> dict:
        return asdict(self)


def suggest(learning_rates: list[float], losses: list[float]) -> float:
    """Steepest descent of loss vs log(lr) before the lowest loss, the slope measured across a
    decade of learning rates (a point-to-point slope picks noise on a flat curve, as a
    distillation loss often is); kept within [1/100, 1/10] of the lowest-loss LR."""
    lrs, loss = np.asarray(learning_rates), np.asarray(losses)
    lowest = int(np.argmin(loss))
    cap = lrs[lowest] / 10.0
    decades = math.log10(lrs[-1] / lrs[0]) if len(lrs) > 1 and lrs[0] > 0 else 0.0
    window = max(1, round((len(lrs) - 1) / decades)) if decades > 0 else 1
    if lowest < window:
        return float(max(cap, lrs[0]))
    log_lrs = np.log(lrs)
    slopes = [(loss[i + window] - loss[i]) / (log_lrs[i + window] - log_lrs[i])
              for i in range(lowest - window + 1)]
    steepest = int(np.argmin(slopes)) + window // 2
    return float(np.clip(lrs[steepest], cap / 10.0, cap))


def find_lr(trainer, steps: int = 100, start: float = 1e-7, end: float = 1.0,
            beta: float = 0.98, diverge: float = 4.0) -> LrFindResult:
    """Run the range test with `trainer`'s model, batches and loss; restore the weights."""
    import torch

    model = trainer.model
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=start,
                                  weight_decay=trainer.args.weight_decay)
    loader = trainer.get_train_dataloader()
    batches = iter(loader)
    factor = (end / start) ** (1.0 / max(1, steps - 1))
    lrs, smoothed, average, best = [], [], 0.0, math.inf
    started = time.monotonic()
    model.train()
    for step in range(steps):
        lr = start * factor**step
        for group in optimizer.param_groups:
            group["lr"] = lr
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        loss = trainer.compute_loss(model, trainer._prepare_inputs(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            break
        average = beta * average + (1 - beta) * value
        current = average / (1 - beta ** (step + 1))
        lrs.append(lr)
        smoothed.append(current)
        best = min(best, current)
        if step > 10 and current > diverge * best:
            break
    model.load_state_dict(saved)
    optimizer.zero_grad(set_to_none=True)
    del optimizer
    model.zero_grad(set_to_none=True)
    return LrFindResult(lrs, smoothed, suggest(lrs, smoothed) if lrs else start, len(lrs),
                        time.monotonic() - started)


def save(result: LrFindResult, folder: Path) -> None:
    """`lr_find.json` (so a resumed run reuses the same LR) and the curve as `lr_find.png`."""
    write_json_atomic(folder / RECORD, result.to_json())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(result.learning_rates, result.losses, color="tab:blue")
    ax.axvline(result.suggestion, color="tab:green", linestyle="--",
               label=f"chosen {result.suggestion:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_title(f"LR range test: {result.steps} steps, {result.seconds:.0f} s")
    ax.legend()
    fig.tight_layout()
    tmp = folder / ".lr_find.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(folder / "lr_find.png")


def load(folder: Path) -> LrFindResult | None:
    path = folder / RECORD
    if not path.is_file():
        return None
    try:
        return LrFindResult(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None
