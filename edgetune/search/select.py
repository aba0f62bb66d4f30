"""The budget check, the Pareto frontier and the choice among measured candidates.

Accuracy is higher-is-better, p90 latency and size lower-is-better. Accuracy differences are
judged with the exact McNemar test on the same validation rows: by default the choice is the
fastest candidate whose accuracy is not significantly below the most accurate one's, so two
texts out of 223 never buy a 3x slower model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgetune.measure.latency import budget_p90
from edgetune.measure.stats import PairedTest, mcnemar_exact
from edgetune.profiles import Profile
from edgetune.search.record import Candidate

ALPHA = 0.05  # a difference in accuracy counts when the paired test's p is below this
Objective = Literal["latency", "accuracy", "size"]


@dataclass
class Selection:
    winner: Candidate | None
    reason: str
    fastest: Candidate
    pareto: list[str]
    objective: str = "latency"

    def to_json(self) -> dict:
        return {"winner": self.winner.name if self.winner else None, "reason": self.reason,
                "fastest": self.fastest.name, "pareto_frontier": self.pareto,
                "objective": self.objective, "alpha": ALPHA}


def check_budget(candidate: Candidate, profile: Profile) -> Candidate:
    """Fill in whether the candidate meets the profile's p90 budget and size limit: a `met`
    verdict does, `missed` does not; a `marginal` one (its interval straddles the budget even
    after more rounds) is judged on its point estimate, and says so in the report."""
    lat = candidate.latency
    if lat.verdict in ("met", "missed"):
        candidate.meets_latency = lat.verdict == "met"
    else:
        candidate.meets_latency = budget_p90(lat, profile)[0] <= profile.latency_budget_ms
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


def _paired(a: Candidate, b: Candidate) -> PairedTest | None:
    """McNemar of `a` vs `b` on the same validation rows (None if the rows are not known)."""
    if not (a.accuracy and b.accuracy and a.accuracy.correct
            and len(a.accuracy.correct) == len(b.accuracy.correct)):
        return None
    return mcnemar_exact(a.accuracy.correct_mask(), b.accuracy.correct_mask())


def _comparison(c: Candidate, other: Candidate) -> dict:
    test = _paired(other, c)
    drop = 100 * (other.accuracy.accuracy - c.accuracy.accuracy)
    return {"against": other.name, "drop_points": round(drop, 3),
            "significant": bool(test and test.p_value < ALPHA and drop > 0),
            **(test.to_json() if test else {"p_value": None})}


def compare_accuracy(candidates: list[Candidate]) -> None:
    """Each candidate's accuracy against the fp32 ONNX model and the most accurate one, paired."""
    best = max(candidates, key=lambda c: c.accuracy.accuracy)
    reference = next((c for c in candidates if c.name == "fp32"), None)
    for c in candidates:
        c.stats = {"accuracy_ci": c.accuracy.ci, "vs_best": _comparison(c, best)}
        if reference is not None:
            c.stats["vs_reference"] = _comparison(c, reference)


def _not_significantly_worse(c: Candidate, best: Candidate) -> bool:
    if c is best or c.accuracy.accuracy >= best.accuracy.accuracy:
        return True
    test = _paired(best, c)
    return test is not None and test.p_value >= ALPHA


def choose(candidates: list[Candidate], profile: Profile, min_accuracy: float | None = None,
           objective: Objective = "latency") -> Selection:
    """Among candidates within the budget (and the accuracy bound): `accuracy` takes the most
    accurate (ties to the faster); `latency` (default) and `size` take the fastest (smallest)
    of those whose accuracy is not significantly below the most accurate one's."""
    if not candidates:
        raise ValueError("choose() needs at least one candidate")
    compare_accuracy(candidates)
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
        return Selection(None, reason, fastest, front, objective)
    best = max(feasible, key=lambda c: (c.accuracy.accuracy, -c.latency.p90_ms))
    if objective == "accuracy":
        return Selection(best, _accuracy_reason(best, feasible), fastest, front, objective)
    ties = [c for c in feasible if _not_significantly_worse(c, best)]
    key = ((lambda c: (c.latency.p90_ms, c.size_mb)) if objective == "latency"
           else (lambda c: (c.size_mb, c.latency.p90_ms)))
    winner = min(ties, key=key)
    return Selection(winner, _cost_reason(winner, best, feasible, ties, objective), fastest,
                     front, objective)


def _accuracy_reason(winner: Candidate, feasible: list[Candidate]) -> str:
    others = [c for c in feasible if c is not winner]
    if not others:
        return f"{winner.name} is the only candidate within the budget"
    runner = max(others, key=lambda c: (c.accuracy.accuracy, -c.latency.p90_ms))
    if runner.accuracy.accuracy == winner.accuracy.accuracy:
        return (f"{winner.name} ties {runner.name} on accuracy and is faster "
                f"(p90 {winner.latency.p90_ms:.2f} vs {runner.latency.p90_ms:.2f} ms)")
    test = _paired(winner, runner)
    p = f"; McNemar p = {test.p_value:.2g}" if test else ""
    return (f"{winner.name} is the most accurate within the budget ({winner.accuracy.accuracy:.4f} "
            f"vs {runner.accuracy.accuracy:.4f} for {runner.name}{p}; objective: accuracy)")


def _p(test: PairedTest | None, n: int) -> str:
    return f"on {n} examples, McNemar p = {test.p_value:.2g}" if test else "no per-row results to test"


def _cost_reason(winner: Candidate, best: Candidate, feasible: list[Candidate],
                 ties: list[Candidate], objective: str) -> str:
    cheaper = "faster" if objective == "latency" else "smaller"
    if len(feasible) == 1:
        return f"{winner.name} is the only candidate within the budget"
    n = winner.accuracy.examples
    if winner is not best:
        ratio = (best.latency.p90_ms / winner.latency.p90_ms if objective == "latency"
                 else best.size_mb / winner.size_mb)
        return (f"{best.name} is {100 * (best.accuracy.accuracy - winner.accuracy.accuracy):.1f} "
                f"points more accurate than {winner.name} ({_p(_paired(best, winner), n)}: not "
                f"significant); {winner.name} is {ratio:.1f}x {cheaper}"
                f"{' at p90' if objective == 'latency' else ''}: chosen")
    rivals = [c for c in feasible if c not in ties]
    if len(ties) > 1 or not rivals:
        return (f"{winner.name} is the most accurate within the budget and {cheaper} than the "
                f"{len(ties) - 1} other(s) whose accuracy is not significantly below it")
    rival = min(rivals, key=lambda c: c.latency.p90_ms if objective == "latency" else c.size_mb)
    gap = 100 * (winner.accuracy.accuracy - rival.accuracy.accuracy)
    test = _paired(winner, rival)
    significant = "significant" if test else "the smaller counts as worse"
    return (f"{winner.name} is the most accurate within the budget, {gap:.1f} points above the "
            f"{cheaper} {rival.name} ({_p(test, n)}: {significant}): chosen")
