"""The budget check, the Pareto frontier and the choice among measured candidates.

Accuracy is higher-is-better, p90 latency and size lower-is-better. Accuracy differences are
judged with the exact McNemar test on the same validation rows: by default the choice is the
fastest candidate whose accuracy is not significantly below the most accurate one's, so two
texts out of 223 never buy a 3x slower model. Latencies are judged alike: candidates whose p90
is not significantly different from the fastest one's (the paired ratio interval over the
interleaved rounds they shared holds 1) are tied on latency, and the most accurate of the tie
wins, as a point estimate of speed inside its own noise is no reason to lose accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgetune.measure.counts import GraphCounts, over_counted_budget
from edgetune.measure.entities import F1Test
from edgetune.measure.latency import budget_p90
from edgetune.measure.stats import Interval, PairedTest, ratio_interval, spearman
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
        return {
            "winner": self.winner.name if self.winner else None,
            "reason": self.reason,
            "fastest": self.fastest.name,
            "pareto_frontier": self.pareto,
            "objective": self.objective,
            "alpha": ALPHA,
        }


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


def within_counted_budget(
    candidates: list[Candidate], profile: Profile
) -> tuple[list[Candidate], dict[str, list[str]]]:
    """The candidates within the profile's counted bounds (`max_params_m`, `max_gmacs`,
    `max_peak_memory_mb`), and for each other one what it breaks: those are never timed."""
    kept, over = [], {}
    for c in candidates:
        broken = over_counted_budget(GraphCounts.from_json(c.counts), profile) if c.counts else []
        if broken:
            over[c.name] = broken
        else:
            kept.append(c)
    return kept, over


def count_agreement(candidates: list[Candidate], profile: Profile) -> dict:
    """How well counting ranks the measured latency over this run's candidates: Spearman's rho
    of GMACs (plain and width-weighted) and of weight bytes against the budget p90 (None with
    fewer than 3, or where the count is the same for all: a dense menu's plain GMACs)."""
    counted = [c for c in candidates if c.counts and c.latency]
    p90 = [_speed(c, profile) for c in counted]
    return {"candidates": len(counted)} | {
        f"spearman_{key}_p90": spearman([c.counts[key] for c in counted], p90)
        for key in ("gmacs", "width_weighted_gmacs", "weight_bytes")
    }


def pareto_front(candidates: list[Candidate]) -> list[Candidate]:
    """Candidates no other candidate beats on accuracy and p90 at once (sorted by p90)."""

    def dominated(c: Candidate) -> bool:
        return any(
            o.accuracy.accuracy >= c.accuracy.accuracy
            and o.latency.p90_ms <= c.latency.p90_ms
            and (o.accuracy.accuracy > c.accuracy.accuracy or o.latency.p90_ms < c.latency.p90_ms)
            for o in candidates
        )

    return sorted((c for c in candidates if not dominated(c)), key=lambda c: c.latency.p90_ms)


def paired_test(a: Candidate, b: Candidate) -> PairedTest | F1Test | None:
    """`a` vs `b` on the same validation rows (`AccuracyResult.paired_with`: McNemar, or the
    randomization test for entity F1); None if the rows are not known."""
    if not (a.accuracy and b.accuracy):
        return None
    return a.accuracy.paired_with(b.accuracy)


def _comparison(c: Candidate, other: Candidate) -> dict:
    test = paired_test(other, c)
    drop = 100 * (other.accuracy.accuracy - c.accuracy.accuracy)
    return {
        "against": other.name,
        "drop_points": round(drop, 3),
        "significant": bool(test and test.p_value < ALPHA and drop > 0),
        **(test.to_json() if test else {"p_value": None}),
    }


def compare_accuracy(candidates: list[Candidate]) -> None:
    """Each candidate's accuracy against the fp32 ONNX model and the most accurate one, paired."""
    best = max(candidates, key=lambda c: c.accuracy.accuracy)
    reference = next((c for c in candidates if c.name == "fp32"), None)
    for c in candidates:
        c.stats = {"accuracy_ci": c.accuracy.ci, "vs_best": _comparison(c, best)}
        if reference is not None:
            c.stats["vs_reference"] = _comparison(c, reference)


def _speed(c: Candidate, profile: Profile) -> float:
    """The latency the budget is checked on (fixed-shape p90, or traffic p90 where the profile
    says so): the one the objective ranks by."""
    return budget_p90(c.latency, profile)[0]


def _latency_ratio(
    c: Candidate, fastest: Candidate, profile: Profile, stored: dict | None
) -> Interval | None:
    """`c`'s budget p90 over `fastest`'s, bootstrapped over the interleaved rounds they shared;
    from `stored` (the report's record) where the rounds are gone, as in `edgetune report`."""
    rounds = "traffic_round_times" if budget_p90(c.latency, profile)[2] else "round_times"
    ours, theirs = getattr(c.latency, rounds, None), getattr(fastest.latency, rounds, None)
    if ours and theirs:
        return ratio_interval(theirs, ours, 90)
    if stored and stored.get("against") == fastest.name:
        return Interval(*stored["ratio"])
    return None


def _latency_ties(
    pool: list[Candidate], fastest: Candidate, profile: Profile, stored: dict[str, dict]
) -> list[Candidate]:
    """`fastest` and the candidates of `pool` not significantly slower (ratio interval holding
    1); each one's ratio is kept in its stats, so the report shows it and can choose again."""
    ties = [fastest]
    for c in pool:
        ratio = None if c is fastest else _latency_ratio(c, fastest, profile, stored.get(c.name))
        if ratio is None:
            continue
        tied = ratio.low <= 1.0 <= ratio.high
        c.stats["latency_vs_fastest"] = {
            "against": fastest.name,
            "ratio": ratio.to_json(),
            "tied": tied,
        }
        ties += [c] if tied else []
    return ties


def _not_significantly_worse(c: Candidate, best: Candidate) -> bool:
    if c is best or c.accuracy.accuracy >= best.accuracy.accuracy:
        return True
    test = paired_test(best, c)
    return test is not None and test.p_value >= ALPHA


def choose(
    candidates: list[Candidate],
    profile: Profile,
    min_accuracy: float | None = None,
    objective: Objective = "latency",
) -> Selection:
    """Among candidates within the budget (and the accuracy bound): `accuracy` takes the most
    accurate (ties to the faster); `latency` (default) and `size` take the fastest (smallest)
    of those whose accuracy is not significantly below the most accurate one's, and of those
    tied with it on latency (not significantly different) or size (equal), the most accurate
    (then the smaller, or the faster)."""
    if not candidates:
        raise ValueError("choose() needs at least one candidate")
    stored = {c.name: c.stats.get("latency_vs_fastest") for c in candidates}  # from a report
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
        reason = (
            f"no candidate meets the budget (p90 <= {profile.latency_budget_ms:g} ms{limit}"
            f"{bound}); the fastest is {fastest.name} at p90 {fastest.latency.p90_ms:.2f} ms"
            f" (accuracy {fastest.accuracy.accuracy:.4f}), the most accurate is {best.name}"
            f" at {best.accuracy.accuracy:.4f} (p90 {best.latency.p90_ms:.2f} ms)"
        )
        return Selection(None, reason, fastest, front, objective)
    best = max(feasible, key=lambda c: (c.accuracy.accuracy, -c.latency.p90_ms))
    if objective == "accuracy":
        return Selection(best, _accuracy_reason(best, feasible), fastest, front, objective)
    ties = [c for c in feasible if _not_significantly_worse(c, best)]
    if objective == "latency":
        cheapest = min(ties, key=lambda c: (_speed(c, profile), c.size_mb))
        tied = _latency_ties(ties, cheapest, profile, stored)
        winner = max(tied, key=lambda c: (c.accuracy.accuracy, -c.size_mb, -_speed(c, profile)))
    else:
        cheapest = min(ties, key=lambda c: (c.size_mb, _speed(c, profile)))
        tied = [c for c in ties if c.size_mb == cheapest.size_mb]
        winner = max(tied, key=lambda c: (c.accuracy.accuracy, -_speed(c, profile)))
    reason = (
        _tie_reason(winner, cheapest, best, objective, profile)
        if winner is not cheapest
        else _cost_reason(winner, best, feasible, ties, objective, profile)
    )
    return Selection(winner, reason, fastest, front, objective)


def _accuracy_reason(winner: Candidate, feasible: list[Candidate]) -> str:
    others = [c for c in feasible if c is not winner]
    if not others:
        return f"{winner.name} is the only candidate within the budget"
    runner = max(others, key=lambda c: (c.accuracy.accuracy, -c.latency.p90_ms))
    if runner.accuracy.accuracy == winner.accuracy.accuracy:
        return (
            f"{winner.name} ties {runner.name} on accuracy and is faster "
            f"(p90 {winner.latency.p90_ms:.2f} vs {runner.latency.p90_ms:.2f} ms)"
        )
    test = paired_test(winner, runner)
    p = f"; {test.name} p = {test.p_value:.2g}" if test else ""
    return (
        f"{winner.name} is the most accurate within the budget ({winner.accuracy.accuracy:.4f} "
        f"vs {runner.accuracy.accuracy:.4f} for {runner.name}{p}; objective: accuracy)"
    )


def _p(test: PairedTest | None, n: int) -> str:
    return (
        f"on {n} examples, {test.name} p = {test.p_value:.2g}"
        if test
        else "no per-row results to test"
    )


def _tie_reason(
    winner: Candidate, cheapest: Candidate, best: Candidate, objective: str, profile: Profile
) -> str:
    """Why a candidate tied with the fastest (smallest) one won: its accuracy, or its speed."""
    gap = 100 * (winner.accuracy.accuracy - cheapest.accuracy.accuracy)
    if objective == "latency":
        r = winner.stats["latency_vs_fastest"]["ratio"]
        tie = (
            f"tied on latency with the fastest, {cheapest.name} (p90 ratio {r[0]:.2f} "
            f"[{r[1]:.2f}, {r[2]:.2f}] over the same interleaved rounds: not significant)"
        )
    else:
        tie = f"tied on size with {cheapest.name} ({cheapest.size_mb:.1f} MB each)"
    if gap > 0:
        better = f"{gap:.1f} points more accurate"
    elif objective == "latency":
        better = f"as accurate and smaller ({winner.size_mb:.1f} vs {cheapest.size_mb:.1f} MB)"
    else:
        better = (
            f"as accurate and faster (p90 {_speed(winner, profile):.2f} vs "
            f"{_speed(cheapest, profile):.2f} ms)"
        )
    text = f"{winner.name} is {tie} and {better}: chosen"
    if winner is not best:
        n = winner.accuracy.examples
        text += (
            f"; {best.name} is {100 * (best.accuracy.accuracy - winner.accuracy.accuracy):.1f}"
            f" points more accurate still ({_p(paired_test(best, winner), n)}: not significant)"
        )
    return text


def _cost_reason(
    winner: Candidate,
    best: Candidate,
    feasible: list[Candidate],
    ties: list[Candidate],
    objective: str,
    profile: Profile,
) -> str:
    cheaper = "faster" if objective == "latency" else "smaller"
    if len(feasible) == 1:
        return f"{winner.name} is the only candidate within the budget"
    n = winner.accuracy.examples
    if winner is not best:
        ratio = (
            _speed(best, profile) / _speed(winner, profile)
            if objective == "latency"
            else best.size_mb / winner.size_mb
        )
        return (
            f"{best.name} is {100 * (best.accuracy.accuracy - winner.accuracy.accuracy):.1f} "
            f"points more accurate than {winner.name} ({_p(paired_test(best, winner), n)}: not "
            f"significant); {winner.name} is {ratio:.1f}x {cheaper}"
            f"{' at p90' if objective == 'latency' else ''}: chosen"
        )
    rivals = [c for c in feasible if c not in ties]
    if len(ties) > 1 or not rivals:
        return (
            f"{winner.name} is the most accurate within the budget and {cheaper} than the "
            f"{len(ties) - 1} other(s) whose accuracy is not significantly below it"
        )
    rival = min(rivals, key=lambda c: _speed(c, profile) if objective == "latency" else c.size_mb)
    gap = 100 * (winner.accuracy.accuracy - rival.accuracy.accuracy)
    test = paired_test(winner, rival)
    significant = "significant" if test else "the smaller counts as worse"
    return (
        f"{winner.name} is the most accurate within the budget, {gap:.1f} points above the "
        f"{cheaper} {rival.name} ({_p(test, n)}: {significant}): chosen"
    )
