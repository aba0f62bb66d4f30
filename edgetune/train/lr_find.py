"""The learning-rate range test: find a learning rate instead of asking the user for one.

Exponentially increasing learning rates from 1e-6 to 1 over a short run (`steps_for`: 100
steps, or a quarter of a short run's planned steps but at least 24: BBC News's one epoch at
batch 8 spent 93 s of the demo in a 90-step test against 225 s of training; 24 steps over six
decades are four a decade, 1.8x apart, finer than the factor of 2 an LR choice tolerates). It
starts at 1e-6, not fastai's 1e-7: fine-tuning's rates lie above 1e-5, and the demo's curve was
flat (within 0.3 %) from 1e-7 to 1e-4, 17 of its 38 steps. On the real training batches and
the real loss (distillation included, through the trainer's own `compute_loss`), drawn in a
shuffled order; the smoothed loss is read back and a tenth of the
learning rate where it was lowest is taken (fastai's "minimum" rule). The steepest descent,
tried first, was picked by noise on the nearly flat curves distillation gives (SST-2 students
got 1e-7, or the cautious 2.8e-5 where their loss kept falling up to 3e-3). A curve that never
falls has no minimum to read: then the Trainer's default LR, and the record says so. The
weights are put back afterwards, so the run itself starts from where it was.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from edgetune.fsutil import write_json_atomic

RECORD = "lr_find.json"
MAX_STEPS, MIN_STEPS, SHARE = 100, 24, 0.25
START_LR, END_LR = 1e-6, 1.0


def steps_for(planned_steps: int) -> int:
    """The test's length: `SHARE` of the run's planned steps, within [MIN_STEPS, MAX_STEPS]."""
    return int(min(MAX_STEPS, max(MIN_STEPS, round(SHARE * planned_steps))))


@dataclass
class LrFindResult:
    learning_rates: list[float]
    losses: list[float]  # smoothed (exponential moving average, bias-corrected)
    suggestion: float
    steps: int
    seconds: float
    method: str = "a tenth of the LR of the lowest smoothed loss (first 10 % of the sweep left out)"

    def to_json(self) -> dict:
        return asdict(self)


MIN_DESCENT = 0.01  # below this relative fall of the loss the curve has no minimum to read
NO_DESCENT = (
    f"no descent in the sweep (lowest smoothed loss within {MIN_DESCENT:.0%} of its start): "
    "the Trainer's default"
)


def suggest(learning_rates: list[float], losses: list[float], skip: float = 0.1) -> float | None:
    """A tenth of the LR where the smoothed loss is lowest (fastai's "minimum" rule), the first
    `skip` of the sweep left out (the moving average has seen only a few batches there). None
    where the loss never falls by `MIN_DESCENT`: the lowest point of a flat curve is noise (an
    SST-2 L2 student's flat curve gave 1.9e-7, and it learnt nothing: benchmarks/RESULTS.md);
    healthy curves there fell by 3-13 %."""
    lrs, loss = np.asarray(learning_rates), np.asarray(losses)
    first = min(int(len(lrs) * skip), len(lrs) - 1)
    lowest = first + int(np.argmin(loss[first:]))
    if loss[lowest] > (1.0 - MIN_DESCENT) * loss[first]:
        return None
    return float(max(lrs[lowest] / 10.0, lrs[0]))


def capped(result: LrFindResult, ceiling: float | None) -> LrFindResult:
    """`result` with its suggestion lowered to `ceiling`, and the record saying so. Fine-tuning
    pretrained weights: the "minimum" rule's 2.2e-4 (batch 16) made SST-2's validation accuracy
    swing 0.81 / 0.77 / 0.80 / 0.74 and stop early at 0.81, where its 9.1e-5 reached 0.90
    (benchmarks/RESULTS.md); the usual range for such models ends near 1e-4."""
    if ceiling is None or result.suggestion <= ceiling:
        return result
    return replace(
        result,
        suggestion=ceiling,
        method=f"{result.method}: {result.suggestion:.2g}, capped at {ceiling:g} "
        "(max_auto_learning_rate)",
    )


def find_lr(
    trainer,
    steps: int = 100,
    start: float = START_LR,
    end: float = END_LR,
    beta: float | None = None,
    diverge: float = 4.0,
    seed: int = 0,
) -> LrFindResult:
    """Run the range test with `trainer`'s model, batches and loss; restore the weights.
    `beta`: the loss's smoothing, by default with a time constant of half the sweep (fastai's
    0.98 at 100 steps), so a shorter sweep's curve does not lag behind its learning rates."""
    import torch

    beta = 1.0 - 2.0 / steps if beta is None else beta
    model = trainer.model
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=start, weight_decay=trainer.args.weight_decay
    )
    loader = trainer.get_train_dataloader()
    if trainer.args.group_by_length:
        # the run's own batches (grouped by length: cheap) in a shuffled order: such a loader
        # yields long batches first, and that trend in the loss would pass for the LR's
        # (text batches: small to hold)
        loader = list(itertools.islice(loader, steps))
        random.Random(seed).shuffle(loader)
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
    suggestion = suggest(lrs, smoothed) if lrs else None
    result = LrFindResult(
        lrs,
        smoothed,
        suggestion or trainer.args.learning_rate,
        len(lrs),
        time.monotonic() - started,
    )
    if suggestion is None:
        result.method = f"{NO_DESCENT} {trainer.args.learning_rate:g}"
    return result


def save(result: LrFindResult, folder: Path) -> None:
    """`lr_find.json` (so a resumed run reuses the same LR) and the curve as `lr_find.png`."""
    write_json_atomic(folder / RECORD, result.to_json())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(result.learning_rates, result.losses, color="tab:blue")
    ax.axvline(
        result.suggestion,
        color="tab:green",
        linestyle="--",
        label=f"chosen {result.suggestion:.2g}",
    )
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
