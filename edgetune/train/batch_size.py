"""The training batch size, measured: the smallest that reaches the best throughput.

Out-of-memory retry (Trainer's `auto_find_batch_size`) only says what fits. On a CPU nearly
everything fits, and a bigger batch is not faster: it pads more and gives fewer optimizer steps
per minute of a time budget. So, before the learning-rate range test (which then finds the LR
for the chosen size, so the two always match), a fixed sample of training rows is run forward
and backward at rising sizes (no optimizer step: the weights are untouched), and the smallest
size whose examples/s is within `KEEP` of the best is taken: past it a bigger batch buys no
speed, only fewer steps. (The largest within `KEEP`, the first rule, took 128 on BBC News
articles, whose examples/s was flat at every size: the LR range test then ran 12,800 rows and
an epoch was 16 steps.) The sweep stops at the first size that gains less than that margin
over the best so far. Rows are sorted by length when training groups batches by length, as the
real batches will be.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgetune.fsutil import write_json_atomic

SIZES = (8, 16, 32, 64, 128)
KEEP = 0.95  # a size within 5 % of the best examples/s reaches it
# rows timed at every size: 64, or two batches at a size above 32 (the demo's sweep took 51 s
# of a 1.5-minute run at 128 rows a size; a size's pace, forward and backward, is steady)
SAMPLE = 64
# untimed rows before the first size (the first backward passes allocate and warm up: BBC News
# once timed 6.5 examples/s at 8 after a one-batch warm-up, 9.5 in a later run, flat at all sizes)
WARMUP_ROWS = 32
RECORD = "batch_size.json"


@dataclass
class BatchSizeResult:
    chosen: int
    examples_per_second: dict[int, float]
    stopped: str
    seconds: float
    method: str = (
        f"smallest batch within {100 * (1 - KEEP):.0f} % of the best examples/s "
        f"(forward + backward on {SAMPLE} training rows, or two batches, per size)"
    )

    def to_json(self) -> dict:  # JSON keys are strings; the same in memory as on disk
        return {
            **asdict(self),
            "examples_per_second": {str(k): v for k, v in self.examples_per_second.items()},
        }


def choose(rates: dict[int, float]) -> int:
    best = max(rates.values())
    return min(size for size, rate in rates.items() if rate >= KEEP * best)


def saturated(rates: dict[int, float]) -> bool:
    """The last size tried gained less than `KEEP`'s margin over the best before it."""
    *earlier, last = rates.values()
    return bool(earlier) and last * KEEP <= max(earlier)


def find_batch_size(
    trainer, sizes: tuple[int, ...] = SIZES, sample: int = SAMPLE
) -> BatchSizeResult:
    """Time `trainer`'s model and loss at each size (see the module docstring)."""
    import torch

    started = time.monotonic()
    model, data = trainer.model, trainer.train_dataset
    rows = [data[i] for i in range(min(max(sample, 2 * max(sizes)), len(data)))]
    collate = trainer.data_collator
    model.train()
    rates: dict[int, float] = {}
    stopped = f"largest size tried ({sizes[-1]})"
    for size in sizes:
        if size > len(rows):
            stopped = f"the sample has {len(rows)} rows"
            break
        timed = rows[: max(sample, 2 * size)]  # the same rows for every size up to 32
        if trainer.args.group_by_length:
            timed = sorted(timed, key=lambda row: len(row["input_ids"]))
        batches = [collate(timed[i : i + size]) for i in range(0, len(timed) - size + 1, size)]
        warmup = 1 if rates else max(1, WARMUP_ROWS // size)
        try:
            spent = 0.0
            for index, batch in enumerate(batches[:warmup] + batches):
                inputs = trainer._prepare_inputs(batch)
                t0 = time.perf_counter()
                with trainer.compute_loss_context_manager():
                    loss = trainer.compute_loss(model, inputs)
                loss.backward()
                model.zero_grad(set_to_none=True)
                spent += (time.perf_counter() - t0) if index >= warmup else 0.0
        except torch.OutOfMemoryError:
            model.zero_grad(set_to_none=True)
            stopped = f"out of memory at {size}"
            break
        rates[size] = round(size * len(batches) / max(spent, 1e-9), 1)
        if saturated(rates):
            stopped = f"no gain at {size}"
            break
    chosen = choose(rates) if rates else max(1, min(sizes[0], len(rows)))
    return BatchSizeResult(chosen, rates, stopped, round(time.monotonic() - started, 1))


def save(result: BatchSizeResult, output_dir: Path) -> None:
    write_json_atomic(Path(output_dir) / RECORD, result.to_json())


def load(output_dir: Path) -> BatchSizeResult | None:
    path = Path(output_dir) / RECORD
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    data["examples_per_second"] = {int(k): v for k, v in data["examples_per_second"].items()}
    return BatchSizeResult(**data)
