"""Known answers for the statistics behind a choice: McNemar, interval coverage, verdicts, picks."""

from __future__ import annotations

import numpy as np
import pytest

from edgetune.measure.bench import AccuracyResult
from edgetune.measure.latency import LatencyResult, LatencySettings, System, measure_interleaved
from edgetune.measure.stats import (
    mcnemar_exact,
    percentile_interval,
    ratio_interval,
    wilson_interval,
)
from edgetune.profiles import Profile
from edgetune.search.record import Candidate
from edgetune.search.select import check_budget, choose


def test_mcnemar_on_a_hand_computed_table():
    # 10 rows only the first gets right, 2 only the second: p = 2 * P(X <= 2 | 12, 1/2)
    first = np.array([1] * 10 + [0] * 2 + [1] * 50 + [0] * 8, bool)
    second = np.array([0] * 10 + [1] * 2 + [1] * 50 + [0] * 8, bool)
    test = mcnemar_exact(first, second)
    assert (test.only_first_right, test.only_second_right) == (10, 2)
    assert test.p_value == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar_exact(first, first).p_value == 1.0


def test_p50_interval_covers_the_true_median_about_95_percent():
    mu, sigma = np.log(5.0), 0.3  # log-normal timings: true median 5 ms
    covered = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        rounds = [rng.lognormal(mu, sigma, 30) for _ in range(10)]
        interval = percentile_interval(rounds, 50, seed=seed, samples=400)
        covered += interval.low <= 5.0 <= interval.high
    assert 0.89 <= covered / 200 <= 0.99, covered


def test_ratio_interval_cancels_shared_drift():
    rng = np.random.default_rng(0)
    drift = np.linspace(1.0, 1.4, 10)  # the machine slows down 40 % over the run
    a = [d * rng.normal(10, 0.3, 20) for d in drift]
    b = [d * rng.normal(5, 0.15, 20) for d in drift]
    ratio = ratio_interval(a, b, 50)
    assert ratio.low <= 0.5 <= ratio.high and ratio.high - ratio.low < 0.05


def test_wilson_interval():
    interval = wilson_interval(96, 100)
    assert interval.value == 0.96 and 0.90 < interval.low < 0.96 < interval.high < 0.99
    assert wilson_interval(0, 10).low == 0.0


PROFILE = Profile(name="t", latency_budget_ms=10.0)


def cand(name: str, right: int, total: int, p90: float) -> Candidate:
    correct = "1" * right + "0" * (total - right)
    lat = LatencyResult(p90 * 0.9, p90, p90 * 1.1, p90, 50, 1, 128, 1000 / p90, 100.0, ["CPU"], 2)
    acc = AccuracyResult(right / total, right / total, total, [], correct)
    return check_budget(Candidate(name, "fp32", f"{name}.onnx", acc, lat, 10.0), PROFILE)


def test_a_one_example_difference_goes_to_the_faster():
    slow, fast = cand("int4", 190, 200, 9.0), cand("dynamic-int8", 189, 200, 2.5)
    selection = choose([slow, fast], PROFILE)
    assert selection.winner.name == "dynamic-int8"
    assert "not significant" in selection.reason and "3.6x faster" in selection.reason
    assert choose([slow, fast], PROFILE, objective="accuracy").winner.name == "int4"


def test_a_twenty_point_difference_goes_to_the_more_accurate():
    good, fast = cand("good", 180, 200, 9.0), cand("fast", 140, 200, 2.5)
    selection = choose([good, fast], PROFILE)
    assert selection.winner.name == "good" and "significant" in selection.reason
    assert good.stats["vs_best"]["against"] == "good" and fast.stats["vs_best"]["significant"]


def test_size_objective_takes_the_smallest_of_the_ties():
    a, b = cand("a", 150, 200, 2.0), cand("b", 150, 200, 5.0)
    b.size_mb = 3.0
    assert choose([a, b], PROFILE, objective="size").winner.name == "b"


class FakeWorker:
    """Stands in for a worker process: seeded normal timings, no ONNX Runtime."""

    def __init__(self, system, profile, settings, tmp):
        self.rng = np.random.default_rng(sum(system.name.encode()))
        self.mean = float(system.name.split("@")[1])
        self.name, self.request = system.name, {}

    def send(self, request):
        pass

    def pause(self):
        pass

    def ask(self, request):
        if request and request["op"] == "run":
            return {"times": list(self.rng.normal(self.mean, 1.0, request["runs"]))}
        return {"peak_rss_mb": 1.0, "providers": ["CPUExecutionProvider"], "gpu_memory_mb": None}

    def close(self):
        pass


def test_a_verdict_near_the_line_gets_more_rounds():
    feed = {"input_ids": np.ones((1, 8), np.int64)}
    systems = [System(f"{n}@{m}", None, feed) for n, m in (("near", 10.0), ("far", 4.0))]
    settings = LatencySettings(min_runs=50, min_seconds=0, rounds=10, max_rounds=60)
    budget = 10.9  # the true p90 of N(10, 1) is 11.28: just over the line
    results = measure_interleaved(systems, PROFILE, settings, budget, worker=FakeWorker)
    near, far = results["near@10.0"], results["far@4.0"]
    assert far.verdict == "met" and far.rounds == 10  # clear: no extra rounds
    assert near.verdict == "missed" and near.rounds == 20  # resolved by 10 more rounds
    assert "after 20 rounds" in near.verdict_note
    first = measure_interleaved(
        systems[:1],
        PROFILE,
        LatencySettings(min_runs=50, min_seconds=0, rounds=10, max_rounds=10),
        budget,
        worker=FakeWorker,
    )["near@10.0"]
    assert first.verdict == "marginal" and first.rounds == 10


def test_a_marginal_verdict_outranked_by_a_faster_one_that_met_gets_no_more_rounds():
    feed = {"input_ids": np.ones((1, 8), np.int64)}
    settings = LatencySettings(min_runs=50, min_seconds=0, rounds=10, max_rounds=60)
    near, fast = System("near@10.0", None, feed), System("fast@4.0", None, feed)
    near.outranked_by = ("fast@4.0",)  # as accurate and as small: the choice never falls on it
    results = measure_interleaved([near, fast], PROFILE, settings, 10.9, worker=FakeWorker)
    assert results["fast@4.0"].verdict == "met"
    assert results["near@10.0"].verdict == "marginal" and results["near@10.0"].rounds == 10
    assert "not measured further: fast@4.0" in results["near@10.0"].verdict_note
    near.outranked_by = ("over@12.0",)  # by one that missed the budget: measured on
    over = System("over@12.0", None, feed)
    results = measure_interleaved([near, over], PROFILE, settings, 10.9, worker=FakeWorker)
    assert results["over@12.0"].verdict == "missed"
    assert results["near@10.0"].rounds == 20 and results["near@10.0"].verdict == "missed"


def test_resampled_percentiles_match_numpy_on_each_resample_of_uneven_rounds():
    from edgetune.measure import stats

    rng = np.random.default_rng(3)
    rounds = [rng.normal(10, 1, rng.integers(1, 40)) for _ in range(7)]
    picks = stats._resampled_rounds(len(rounds), 300, seed=1)
    for q in (50, 90, 99):
        expected = [np.percentile(np.concatenate([rounds[i] for i in p]), q) for p in picks]
        assert np.allclose(stats.resampled_percentiles(rounds, picks, q), expected)
    tied = [np.array([1.0, 1.0, 2.0]), np.array([2.0]), np.array([1.0, 3.0, 3.0, 3.0])]
    picks = np.array([[0, 0, 0], [2, 2, 1], [1, 1, 1], [0, 1, 2]])  # ties, one round alone
    for q in (0, 50, 90, 100):
        expected = [np.percentile(np.concatenate([tied[i] for i in p]), q) for p in picks]
        assert np.allclose(stats.resampled_percentiles(tied, picks, q), expected)
    with_empty = [np.array([]), np.array([2.0, 4.0])]
    found = stats.resampled_percentiles(with_empty, np.array([[0, 0], [0, 1]]), 50)
    assert np.isnan(found[0]) and found[1] == 3.0  # a resample of empty rounds: no number
