"""The work a bundle does before its ONNX model, timed apart from the model.

An audio bundle decodes each clip, resamples it and (a log-mel model) computes its features in
numpy before ONNX Runtime sees anything; for a small keyword spotter that costs several times
the model itself (benchmarks/RESULTS.md). An image bundle decodes the file and resizes it. The
model's p50/p90 leave that out, so `bench` and `tune` time it here beside them instead of
letting the model's numbers stand for the whole request. (Tokenization is left out: about
0.03 ms a sentence for MiniLM's tokenizer, against the model's milliseconds.)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from edgetune.hardware import fingerprint

MIN_RUNS = 20
MIN_SECONDS = 0.5
ENOUGH_SECONDS = 5.0  # past this, MIN_RUNS gives way (camera-sized photos in large batches)
ENOUGH_RUNS = 5
WARM_UP = 2


@dataclass(frozen=True)
class FrontEnd:
    """What a bundle does before its model (`what`, in words) for one batch (`run`)."""

    what: str
    batch_size: int
    run: Callable[[], object]


def time_front_end(front_end: FrontEnd) -> dict:
    """p50 and p90 of `front_end.run` over at least MIN_RUNS calls and MIN_SECONDS, in this
    process, after WARM_UP calls: on this machine (its fingerprint says which)."""
    for _ in range(WARM_UP):
        front_end.run()
    times: list[float] = []
    started = time.perf_counter()
    while not _enough(len(times), time.perf_counter() - started):
        begin = time.perf_counter()
        front_end.run()
        times.append((time.perf_counter() - begin) * 1000.0)
    cuts = statistics.quantiles(times, n=10)
    return {
        "what": front_end.what,
        "batch_size": front_end.batch_size,
        "runs": len(times),
        "p50_ms": statistics.median(times),
        "p90_ms": cuts[-1],
        "machine": fingerprint(),
    }


def _enough(runs: int, seconds: float) -> bool:
    if runs >= ENOUGH_RUNS and seconds >= ENOUGH_SECONDS:
        return True
    return runs >= MIN_RUNS and seconds >= MIN_SECONDS


def describe(timing: dict) -> str:
    """A `time_front_end` result in words, for the bench table and the tune report."""
    return (
        f"{timing['what']} takes p50 {timing['p50_ms']:.2f} ms, p90 {timing['p90_ms']:.2f} ms "
        f"per batch of {timing['batch_size']} ({timing['runs']} runs on "
        f"{timing['machine']['cpu']})"
    )
