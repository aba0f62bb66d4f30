"""What a load test measured: its steps (latency percentiles, throughput, verdict) and the
capacity at budget they show. Kept apart from the traffic (`deploy/loadtest.py`), which only
produces them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


def capacity(steps: list[Step]) -> float | None:
    """The highest rate that was within budget *with every lower rate tried*: a rate within
    budget above one that was over is taken for noise, not capacity (the notes say so)."""
    best = None
    for step in sorted((s for s in steps if s.kind == "open"), key=lambda s: s.offered_rps):
        if not step.within_budget:
            break
        best = step.offered_rps
    return best


def edge(steps: list[Step]) -> tuple[float | None, float | None]:
    """The capacity so far and the lowest rate above it that was over budget."""
    low = capacity(steps)
    above = [
        s.offered_rps
        for s in steps
        if s.kind == "open" and not s.within_budget and (low is None or s.offered_rps > low)
    ]
    return low, min(above, default=None)


@dataclass
class Step:
    kind: str  # "warm-up", "closed" or "open"
    seconds: float
    sent: int
    ok: int
    errors: int
    throughput_rps: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    concurrency: int | None = None
    offered_rps: float | None = None
    within_budget: bool | None = None


@dataclass
class LoadTestResult:
    url: str
    budget_ms: float
    steps: list[Step]
    capacity_rps: float | None  # None: no open-loop step was within budget
    single_stream: Step
    saturated: Step
    stopped: str  # why the rate stopped rising
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def make_step(kind: str, seconds: float, latencies: list[float], errors: int, **extra) -> Step:
    ms = np.asarray(latencies) * 1000
    pct = (lambda q: round(float(np.percentile(ms, q)), 3)) if len(ms) else (lambda q: None)
    return Step(
        kind,
        round(seconds, 3),
        len(latencies) + errors,
        len(latencies),
        errors,
        round(len(latencies) / seconds, 2) if seconds > 0 else 0.0,
        pct(50),
        pct(90),
        pct(99),
        **extra,
    )
