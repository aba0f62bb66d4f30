import pytest

from edgetune.measure.bench import AccuracyResult
from edgetune.measure.latency import LatencyResult
from edgetune.profiles import Profile
from edgetune.search.record import Candidate
from edgetune.search.select import check_budget, choose, pareto_front


def cand(name, acc, p90, size=10.0):
    lat = LatencyResult(p90 * 0.9, p90, p90 * 1.1, p90, 50, 1, 128, 1000 / p90, 100.0, ["CPU"], 2)
    return Candidate(name, "fp32", f"{name}.onnx", AccuracyResult(acc, acc, 100), lat, size)


PROFILE = Profile(name="t", latency_budget_ms=10.0, max_model_size_mb=50.0)


def test_pareto_front_of_a_known_set():
    cs = [cand("a", 0.90, 20), cand("b", 0.89, 10), cand("c", 0.85, 12),  # c dominated by b
          cand("d", 0.80, 5), cand("e", 0.90, 25), cand("f", 0.79, 5)]   # e by a, f by d
    assert [c.name for c in pareto_front(cs)] == ["d", "b", "a"]


def test_most_accurate_within_budget_wins():
    cs = [check_budget(c, PROFILE) for c in (cand("big", 0.92, 30), cand("mid", 0.90, 9),
                                             cand("small", 0.85, 4))]
    sel = choose(cs, PROFILE)
    assert sel.winner.name == "mid" and "most accurate" in sel.reason
    assert sel.fastest.name == "small"


def test_tie_goes_to_the_faster():
    cs = [check_budget(c, PROFILE) for c in (cand("x", 0.9, 8), cand("y", 0.9, 6))]
    assert choose(cs, PROFILE).winner.name == "y"


def test_size_limit_counts():
    c = check_budget(cand("fat", 0.95, 1, size=80.0), PROFILE)
    assert c.meets_latency and not c.meets_size and not c.meets_budget


def test_no_candidate_names_the_fastest():
    cs = [check_budget(c, PROFILE) for c in (cand("a", 0.9, 30), cand("b", 0.8, 12))]
    sel = choose(cs, PROFILE)
    assert sel.winner is None
    assert "no candidate meets the budget" in sel.reason and "b at p90 12.00 ms" in sel.reason


def test_candidate_json_round_trip():
    c = check_budget(cand("a", 0.9, 3), PROFILE)
    again = Candidate.from_json(c.to_json())
    assert again == c


def test_choose_needs_candidates():
    with pytest.raises(ValueError):
        choose([], PROFILE)
