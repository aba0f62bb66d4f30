"""Time of one cluster-bootstrap percentile interval: edgetune's search over per-round counts
against sorting every resample (what `measure/stats.py` did before, without its chunking),
interleaved, on the same picks.

    python benchmarks/bootstrap_speed.py [--repeats 5]

For a few shapes (rounds x timings per round: a real model's few hundred timings, a tiny
model's thousands) it prints each method's median milliseconds per interval, their ratio with
the spread over repeats, and whether the two give the same numbers.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from edgetune.hardware import describe, fingerprint
from edgetune.measure.stats import BOOTSTRAP_SAMPLES, _resampled_rounds, resampled_percentiles

SHAPES = [(10, 100), (10, 2000), (30, 3000)]


def sorted_resamples(rounds: list[np.ndarray], picks: np.ndarray, q: float) -> np.ndarray:
    """The method before: every resample's timings gathered (rounds padded with +inf to one
    length) and sorted at once, vectorised, then numpy's linear rule."""
    lengths = np.array([len(r) for r in rounds])
    padded = np.full((len(rounds), int(lengths.max())), np.inf)
    for i, r in enumerate(rounds):
        padded[i, : len(r)] = r
    values = np.sort(padded[picks].reshape(len(picks), -1), axis=1)
    counts = lengths[picks].sum(axis=1)
    position = q / 100.0 * (counts - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, counts - 1)
    below = np.take_along_axis(values, low[:, None], axis=1)[:, 0]
    above = np.take_along_axis(values, high[:, None], axis=1)[:, 0]
    return below + (above - below) * (position - low)


def timed(method, *args) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    found = method(*args)
    return (time.perf_counter() - started) * 1000.0, found


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(describe(fingerprint()))
    rows = []
    for n_rounds, per_round in SHAPES:
        rng = np.random.default_rng(n_rounds * per_round)
        rounds = [
            rng.gamma(2.0, 1.0, per_round + int(rng.integers(0, 50))) for _ in range(n_rounds)
        ]
        picks = _resampled_rounds(n_rounds, BOOTSTRAP_SAMPLES, seed=0)
        ours, reference, same = [], [], True
        for _ in range(args.repeats):  # interleaved: both methods in each repeat
            ms, found = timed(resampled_percentiles, rounds, picks, 90)
            ours.append(ms)
            ms, expected = timed(sorted_resamples, rounds, picks, 90)
            reference.append(ms)
            same = same and np.allclose(found, expected, rtol=0, atol=1e-12)
        ratios = [r / o for r, o in zip(reference, ours)]
        row = {
            "shape": f"{n_rounds}x{per_round}",
            "ours_ms": statistics.median(ours),
            "sorted_ms": statistics.median(reference),
            "ratio": statistics.median(ratios),
            "ratio_range": [min(ratios), max(ratios)],
            "same_numbers": same,
        }
        rows.append(row)
        print(
            f"{row['shape']:>8} rounds x timings: search {row['ours_ms']:8.1f} ms, sort each "
            f"resample {row['sorted_ms']:8.1f} ms, {row['ratio']:.0f}x faster "
            f"[{min(ratios):.0f}x, {max(ratios):.0f}x over {args.repeats} repeats]; "
            f"same numbers: {same}"
        )
    return rows


if __name__ == "__main__":
    main()
