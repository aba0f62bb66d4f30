"""The budget check, the Pareto frontier and the choice among measured candidates.

Accuracy is higher-is-better, p90 latency and size lower-is-better.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgetune.profiles import Profile
from edgetune.search.record import Candidate


@dataclass
class Selection:
    winner: Candidate | None
    reason: str
    fastest: Candidate
    pareto: list[str]

    def to_json(self) -> dict:
        return {"winner": self.winner.name if self.winner else None, "reason": self.reason,
                "fastest": self.fastest.name, "pareto_frontier": self.pareto}


def check_budget(candidate: Candidate, profile: Profile) -> Candidate:
    """Fill in whether the candidate meets the profile's p90 budget and size limit."""
    candidate.meets_latency = candidate.latency.p90_ms <= profile.latency_budget_ms
    limit = profile.max_model_size_mb
    candidate.meets_size = limit is None or candidate.size_mb <= limit
    return candidate


def pareto_front(candidates: list[Candidate]) -> list[Candidate]:
    """Candidates no other candidate beats on accuracy and p90 at once (sorted by p90)."""
    def dominated(c: Candidate) -> bool:
        return any(
            o.accuracy.accuracy >= c.accuracy.accuracy and o.latency.p90_ms <= c.latency.p90_ms
            and (o.accuracy.accuracy > c.accuracy.accuracy or o.latency.p90_ms < c.latency.p90_ms)
            for o in candidates
        )
    return sorted((c for c in candidates if not dominated(c)), key=lambda c: c.latency.p90_ms)


def choose(candidates: list[Candidate], profile: Profile,
           min_accuracy: float | None = None) -> Selection:
    """The most accurate candidate that meets the budget (and the accuracy bound, if any);
    ties go to the faster."""
    if not candidates:
        raise ValueError("choose() needs at least one candidate")
    for c in candidates:
        c.within_accuracy_bound = min_accuracy is None or c.accuracy.accuracy >= min_accuracy
    fastest = min(candidates, key=lambda c: c.latency.p90_ms)
    front = [c.name for c in pareto_front(candidates)]
    feasible = [c for c in candidates if c.meets_budget and c.within_accuracy_bound]
    if not feasible:
        limit = f" and {profile.max_model_size_mb:g} MB" if profile.max_model_size_mb else ""
        bound = f" and accuracy >= {min_accuracy:.4f}" if min_accuracy is not None else ""
        best = max(candidates, key=lambda c: c.accuracy.accuracy)
        reason = (f"no candidate meets the budget (p90 <= {profile.latency_budget_ms:g} ms{limit}"
                  f"{bound}); the fastest is {fastest.name} at p90 {fastest.latency.p90_ms:.2f} ms"
                  f" (accuracy {fastest.accuracy.accuracy:.4f}), the most accurate is {best.name}"
                  f" at {best.accuracy.accuracy:.4f} (p90 {best.latency.p90_ms:.2f} ms)")
        return Selection(None, reason, fastest, front)
    winner = max(feasible, key=lambda c: (c.accuracy.accuracy, -c.latency.p90_ms))
    others = [c for c in feasible if c is not winner]
    if not others:
        reason = f"{winner.name} is the only candidate within the budget"
    else:
        runner = max(others, key=lambda c: (c.accuracy.accuracy, -c.latency.p90_ms))
        if runner.accuracy.accuracy == winner.accuracy.accuracy:
            reason = (f"{winner.name} ties {runner.name} on accuracy and is faster "
                      f"(p90 {winner.latency.p90_ms:.2f} vs {runner.latency.p90_ms:.2f} ms)")
        else:
            reason = (f"{winner.name} is the most accurate within the budget "
                      f"({winner.accuracy.accuracy:.4f} vs {runner.accuracy.accuracy:.4f} for {runner.name})")
    return Selection(winner, reason, fastest, front)
