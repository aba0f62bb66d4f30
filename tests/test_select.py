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
    cs = [
        cand("a", 0.90, 20),
        cand("b", 0.89, 10),
        cand("c", 0.85, 12),  # c dominated by b
        cand("d", 0.80, 5),
        cand("e", 0.90, 25),
        cand("f", 0.79, 5),
    ]  # e by a, f by d
    assert [c.name for c in pareto_front(cs)] == ["d", "b", "a"]


def test_most_accurate_within_budget_wins():
    cs = [
        check_budget(c, PROFILE)
        for c in (cand("big", 0.92, 30), cand("mid", 0.90, 9), cand("small", 0.85, 4))
    ]
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


def test_a_relative_budget_is_taken_again_from_the_final_rounds():
    """`--relative-budget`: the budget is re-derived from the dense dynamic INT8 p90 measured in
    the same final rounds as every other candidate, and the verdicts follow it."""
    from types import SimpleNamespace

    from edgetune.search.budget import relative_budget

    dense, int8, pruned = (
        cand("fp32", 0.9, 10),
        cand("dynamic-int8", 0.9, 6),
        cand("L3+dynamic-int8", 0.89, 2.8),
    )
    pruned.settings = {"pruning": {"name": "L3"}}
    for c, ci in ((dense, [9.5, 10.5]), (int8, [5.8, 6.2]), (pruned, [2.7, 2.9])):
        c.latency.p90_ci = ci
    builder = SimpleNamespace(
        profile=PROFILE
    )  # its budget (10 ms) came from an earlier measurement
    profile, base = relative_budget(builder, [dense, int8, pruned], None, 0.5)
    assert profile.latency_budget_ms == 3.0 and builder.profile is profile and base is int8
    assert [c.latency.verdict for c in (dense, int8, pruned)] == ["missed", "missed", "met"]
    assert (
        pruned.meets_latency
        and not int8.meets_latency
        and "vs budget 3 ms" in pruned.latency.verdict_note
    )


def timed(name, right, p90, drift, rng, size=10.0, total=200):
    """A candidate with per-row results and 10 interleaved rounds of timings (around `p90`,
    the machine's `drift` shared with the others measured in the same rounds)."""
    correct = "1" * right + "0" * (total - right)
    c = cand(name, right / total, p90, size)
    c.accuracy = AccuracyResult(right / total, right / total, total, [], correct)
    c.latency.round_times = [d * rng.normal(p90 / 1.2, p90 / 20, 40) for d in drift]
    return check_budget(c, PROFILE)


def tied_pair():
    import numpy as np

    rng, drift = np.random.default_rng(0), np.linspace(1.0, 1.3, 10)
    # minmax is the faster on the point estimate by 1 %, inside its own noise; percentile is
    # 1 point more accurate, not significantly (McNemar on 200 rows)
    return [
        timed("static-int8-minmax", 178, 6.0, drift, rng),
        timed("static-int8-percentile", 180, 6.06, drift, rng),
        timed("fp32", 181, 9.0, drift, rng, size=40.0),
    ]


def test_a_tie_on_latency_goes_to_the_more_accurate():
    cs = tied_pair()
    minmax, percentile, fp32 = cs
    assert minmax.latency.p90_ms < percentile.latency.p90_ms
    sel = choose(cs, PROFILE)
    assert sel.winner.name == "static-int8-percentile", sel.reason
    assert "tied on latency with the fastest, static-int8-minmax" in sel.reason
    assert "1.0 points more accurate" in sel.reason and "fp32 is 0.5 points" in sel.reason
    ratio = percentile.stats["latency_vs_fastest"]
    assert ratio["tied"] and ratio["ratio"][1] <= 1.0 <= ratio["ratio"][2]
    assert not fp32.stats["latency_vs_fastest"]["tied"]  # 1.5x slower: not a tie


def test_the_choice_from_the_report_keeps_the_tie():
    """`edgetune report` chooses again from report.json, where the rounds are not kept: the
    ratio recorded with each candidate stands in for them."""
    cs = tied_pair()
    choose(cs, PROFILE)
    again = [Candidate.from_json(c.to_json()) for c in cs]
    assert not hasattr(again[0].latency, "round_times")
    sel = choose(again, PROFILE)
    assert sel.winner.name == "static-int8-percentile" and "tied on latency" in sel.reason


def test_a_significantly_faster_candidate_still_wins():
    import numpy as np

    rng, drift = np.random.default_rng(1), np.linspace(1.0, 1.3, 10)
    cs = [timed("fast", 175, 3.0, drift, rng), timed("slow", 180, 6.0, drift, rng)]
    sel = choose(cs, PROFILE)
    assert sel.winner.name == "fast" and "tied" not in sel.reason
    assert not cs[1].stats["latency_vs_fastest"]["tied"]


def test_a_tie_on_size_goes_to_the_more_accurate():
    import numpy as np

    rng, drift = np.random.default_rng(2), np.ones(10)
    cs = [
        timed("a", 178, 3.0, drift, rng, size=5.0),
        timed("b", 180, 6.0, drift, rng, size=5.0),
        timed("c", 181, 2.0, drift, rng, size=20.0),
    ]
    sel = choose(cs, PROFILE, objective="size")
    assert sel.winner.name == "b" and "tied on size with a (5.0 MB each)" in sel.reason


def test_the_report_shows_both_ends_of_a_batch_dependent_models_accuracy():
    from edgetune.deploy.report import _served_lines

    steady, moving = cand("fp32", 0.90, 20), cand("dynamic-int8", 0.88, 10)
    for c in (steady, moving):
        c.accuracy.served_as = "batches of 1, each padded to its longest row"
    moving.accuracy.under_load = {
        "served_as": "batches of 32, each padded to its longest row",
        "accuracy": 0.87,
        "p_value": 0.25,
    }
    lines = _served_lines([steady, moving])
    assert (
        lines[0]
        == "Accuracy of each ONNX model as served: batches of 1, each padded to its longest row."
    )
    assert lines[2].startswith("- dynamic-int8: 0.8800 as served, 0.8700 in batches of 32 under")
    moving.accuracy.under_load["accuracy"] = 0.88  # the same: nothing more to show
    assert len(_served_lines([steady, moving])) == 2
