"""The uncertainty behind every number a choice rests on.

Latency: percentiles of timings collected in interleaved rounds, with 95 % intervals from a
*cluster bootstrap over rounds* (whole rounds are resampled, so the machine's drift between
rounds widens the interval, as it should). Ratios of two systems are bootstrapped the same
way, pairing the rounds they shared. Accuracy: Wilson intervals, and paired comparisons of two
models on the same rows with the exact McNemar test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

LEVEL = 0.95
BOOTSTRAP_SAMPLES = 1000
CI_METHOD = "cluster bootstrap over rounds (1000 resamples, 95 %)"


@dataclass
class Interval:
    value: float
    low: float
    high: float

    def to_json(self) -> list[float]:
        return [self.value, self.low, self.high]

    def overlaps(self, other: Interval) -> bool:
        return self.low <= other.high and other.low <= self.high


def _resampled_rounds(n_rounds: int, samples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_rounds, size=(samples, n_rounds))


def resampled_percentiles(rounds: list[np.ndarray], picks: np.ndarray, q: float) -> np.ndarray:
    """The q-th percentile (numpy's linear rule) of each resample of whole rounds, one row of
    `picks` per resample, with no resample's timings gathered or sorted.

    A resample is the pooled timings weighted by how often it picked each round, so its k-th
    smallest timing is the smallest pooled timing that more than k of its timings do not
    exceed: a binary search per resample over the pooled timings, counting in each sorted
    round. Sorting every resample instead took ~40 ms an interval on a tiny model's thousands
    of timings, a quarter of a small `tune`; this takes a few ms in memory of one round set."""
    ordered = [np.sort(r) for r in rounds]
    values = np.sort(np.concatenate(rounds))
    weights = np.zeros((len(picks), len(rounds)), dtype=np.int64)
    np.add.at(weights, (np.arange(len(picks))[:, None], picks), 1)
    counts = weights @ np.array([len(r) for r in rounds])
    position = q / 100.0 * (counts - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, counts - 1)
    below = values[_rank_index(values, ordered, weights, low)]
    above = values[_rank_index(values, ordered, weights, high)]
    percentile = below + (above - below) * (position - low)
    return np.where(counts > 0, percentile, np.nan)  # a resample of empty rounds has none


def _rank_index(
    values: np.ndarray, ordered: list[np.ndarray], weights: np.ndarray, rank: np.ndarray
) -> np.ndarray:
    """Per resample, the index in `values` (all timings, sorted) of its rank-th smallest
    timing (from 0): the first value that more than `rank` of the resample's timings do not
    exceed."""
    low = np.zeros(len(weights), dtype=np.int64)
    high = np.full(len(weights), len(values) - 1, dtype=np.int64)
    while np.any(low < high):
        middle = (low + high) // 2
        at_most = [np.searchsorted(r, values[middle], side="right") for r in ordered]
        passed = (weights * np.stack(at_most, axis=1)).sum(axis=1) > rank
        high = np.where(passed, middle, high)
        low = np.where(passed, low, middle + 1)
    return low


def _bounds(stats: np.ndarray) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def percentile_interval(
    rounds: list[np.ndarray], q: float, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES
) -> Interval:
    """The q-th percentile of all timings, and its interval from resampling whole rounds."""
    rounds = [np.asarray(r, dtype=float) for r in rounds if len(r)]
    pooled = np.concatenate(rounds)
    point = float(np.percentile(pooled, q))
    if len(rounds) < 2:
        return Interval(point, point, point)
    picks = _resampled_rounds(len(rounds), samples, seed)
    return Interval(point, *_bounds(resampled_percentiles(rounds, picks, q)))


def ratio_interval(
    rounds_a: list[np.ndarray],
    rounds_b: list[np.ndarray],
    q: float = 50,
    seed: int = 0,
    samples: int = BOOTSTRAP_SAMPLES,
) -> Interval:
    """percentile_q(B) / percentile_q(A), the rounds resampled in pairs (A and B ran side by
    side in each round, so the drift they shared cancels)."""
    n = min(len(rounds_a), len(rounds_b))
    a, b = (
        [np.asarray(r, float) for r in rounds_a[:n]],
        [np.asarray(r, float) for r in rounds_b[:n]],
    )
    point = float(np.percentile(np.concatenate(b), q) / np.percentile(np.concatenate(a), q))
    if n < 2:
        return Interval(point, point, point)
    picks = _resampled_rounds(n, samples, seed)
    stats = resampled_percentiles(b, picks, q) / resampled_percentiles(a, picks, q)
    return Interval(point, *_bounds(stats))


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> Interval:
    """95 % Wilson score interval of a proportion (well-behaved near 0 and 1)."""
    if total == 0:
        return Interval(0.0, 0.0, 1.0)
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return Interval(p, float(max(0.0, centre - half)), float(min(1.0, centre + half)))


@dataclass
class PairedTest:
    """Exact McNemar test of two models on the same rows."""

    only_first_right: int  # b: rows the first gets right and the second wrong
    only_second_right: int  # c
    p_value: float
    name = "McNemar"

    def to_json(self) -> dict:
        return {
            "only_first_right": self.only_first_right,
            "only_second_right": self.only_second_right,
            "p_value": self.p_value,
            "test": "exact McNemar (two-sided binomial on discordant rows)",
        }


def mcnemar_exact(first_correct: np.ndarray, second_correct: np.ndarray) -> PairedTest:
    """Two-sided binomial test at 1/2 on the discordant rows: the distribution is symmetric,
    so the p-value is twice the lower tail (exact integers; no scipy on the runtime install)."""
    first, second = np.asarray(first_correct, bool), np.asarray(second_correct, bool)
    if first.shape != second.shape:
        raise ValueError("McNemar needs predictions on the same rows")
    b = int(np.sum(first & ~second))
    c = int(np.sum(~first & second))
    n = b + c
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    p = 1.0 if n == 0 else float(Fraction(2 * tail, 2**n))
    return PairedTest(b, c, min(1.0, p))


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (ties get their average rank; as scipy's `spearmanr`, without
    scipy on the runtime install). None with fewer than 3 points or a constant side."""
    if len(x) < 3 or len(x) != len(y):
        return None
    rx, ry = _average_ranks(np.asarray(x, float)), _average_ranks(np.asarray(y, float))
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks
