"""A latency budget relative to the run's own unpruned model (`tune --relative-budget F`):
F x the p90 of its dynamic INT8 candidate, taken from the same rounds as what it judges."""

from __future__ import annotations

from edgetune.console import console
from edgetune.measure.bench import EvalSet
from edgetune.measure.latency import judge
from edgetune.profiles import Profile
from edgetune.search.candidates import CandidateBuilder
from edgetune.search.record import Candidate
from edgetune.search.select import check_budget


def fraction_of(p90_ms: float, fraction: float) -> float:
    """The budget in ms that `fraction` of a reference p90 gives (rounded as reports show it)."""
    return round(fraction * p90_ms, 3)


def relative_budget(
    builder: CandidateBuilder,
    candidates: list[Candidate],
    evaluation: EvalSet | None,
    fraction: float,
) -> tuple[Profile, Candidate]:
    """The budget as a fraction of this run's unpruned dynamic INT8 p90 (else the fastest dense
    one's), measured now (given `evaluation`), or from the final rounds (`evaluation` None:
    all are judged again on the budget those rounds give, with no more rounds); and that base."""
    if evaluation is not None:
        builder.measure(candidates, evaluation)
    dense = [c for c in candidates if not c.settings.get("pruning")]
    base = next((c for c in dense if c.name == "dynamic-int8"), None) or min(
        dense, key=lambda c: c.latency.p90_ms
    )
    budget = fraction_of(base.latency.p90_ms, fraction)
    console.log(
        f"latency budget {budget:g} ms: {fraction:g} x the p90 of {base.name} "
        f"({base.latency.p90_ms:.2f} ms{'' if evaluation else ', final rounds'})"
    )
    builder.profile = builder.profile.model_copy(update={"latency_budget_ms": budget})
    if evaluation is None:
        for c in candidates:
            judge(c.latency, builder.profile, budget)
            check_budget(c, builder.profile)
    return builder.profile, base
