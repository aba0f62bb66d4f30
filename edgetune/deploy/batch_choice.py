"""How many texts one session run should take: measured at start-up, not assumed.

Micro-batching pays where one run has a fixed cost to share (a GPU launch, many idle cores).
On a small CPU it can cost more than it saves: a batch is padded to its longest text, so on
2 cores a batch of 8 SST-2 sentences took ~30 % longer than the 8 run one by one
(benchmarks/RESULTS.md). So `serve` times the bundle on texts like its traffic (the bundle's
validation sample) at each candidate batch size, in interleaved rounds, and takes the size with
the lowest time per text, if it beats one text per run by at least `MIN_GAIN`; else 1.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetune.deploy import SAMPLE_TEXTS

SIZES = (1, 2, 4, 8, 16, 32)
MIN_GAIN = 0.10  # a larger batch must cut the time per text by 10 % to be worth its queueing
SAMPLE_NAME = "edgetune_validation_sample.json"


@dataclass
class BatchChoice:
    max_batch: int
    ms_per_text: dict[int, float]  # batch size -> median milliseconds per text

    def describe(self) -> str:
        timings = ", ".join(f"{b}: {ms:.2f}" for b, ms in self.ms_per_text.items())
        return f"batch up to {self.max_batch} (measured ms per text by batch size: {timings})"


def sample_texts(bundle_dir: Path) -> list[str]:
    path = bundle_dir / SAMPLE_NAME
    try:
        texts = [t for t in json.loads(path.read_text()) if isinstance(t, str) and t.strip()]
    except (OSError, ValueError):
        texts = []
    return texts or SAMPLE_TEXTS


def choose_max_batch(
    run: Callable[[list[str]], object],
    texts: list[str],
    limit: int,
    rounds: int = 5,
    seconds_per_size: float = 0.05,
    seed: int = 0,
) -> BatchChoice:
    """Time `run` at each batch size up to `limit`; the fastest per text (see the docstring)."""
    rng = random.Random(seed)
    sizes = [s for s in SIZES if s <= limit] or [1]
    per_text: dict[int, list[float]] = {s: [] for s in sizes}
    run(texts[:1])  # first run pays for allocation
    for r in range(rounds):
        for size in sizes[r % len(sizes) :] + sizes[: r % len(sizes)]:  # rotate: drift falls on all
            started, spent, runs = time.perf_counter(), 0.0, 0
            while spent < seconds_per_size or runs < 2:
                batch = [rng.choice(texts) for _ in range(size)]
                t0 = time.perf_counter()
                run(batch)
                per_text[size].append((time.perf_counter() - t0) * 1000 / size)
                runs += 1
                spent = time.perf_counter() - started
    medians = {s: float(np.median(v)) for s, v in per_text.items()}
    best = min(medians, key=medians.get)
    chosen = best if medians[best] <= (1 - MIN_GAIN) * medians[1] else 1
    return BatchChoice(chosen, {s: round(m, 3) for s, m in medians.items()})
