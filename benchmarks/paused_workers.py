"""What a finished worker's spinning threads did to the next system's latency, side by side.

The same models timed in interleaved rounds (measure/latency.py) two ways, in alternating
blocks: `pause` (idle workers stopped between their slices, measure/park.py, what edgetune
does) and `sleep` (the 10 ms pause between slices used before). Prints each model's p50 and p90
with intervals per block, and the p90 ratio sleep / pause per model (the median over the block
pairs).

    python benchmarks/paused_workers.py runs/x/work/onnx/{fp32,dynamic-int8}.onnx \\
        --profile cpu-edge --blocks 2

Inputs are made from each graph at the profile's shape (`measure/synthetic.py`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from unittest import mock

import numpy as np

from edgetune.hardware import describe, fingerprint
from edgetune.measure import park
from edgetune.measure.latency import LatencySettings, System, measure_interleaved
from edgetune.measure.synthetic import synthetic_feed
from edgetune.profiles import load_profile

OLD_PAUSE_SECONDS = 0.01


def label(model: Path) -> str:
    """A bundle's `model.onnx` by its folder's name, a bare file by its own."""
    return model.parent.name if model.stem == "model" else model.stem


def measure(models: list[Path], profile, feeds: dict, seconds: float, how: str) -> dict:
    systems = [System(label(m), m, feeds[m]) for m in models]
    settings = LatencySettings(min_seconds=seconds)
    if how == "pause":
        return measure_interleaved(systems, profile, settings)
    with mock.patch.object(park, "pause", lambda pid: time.sleep(OLD_PAUSE_SECONDS)):
        return measure_interleaved(systems, profile, settings)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--profile", default="cpu-edge")
    parser.add_argument("--seconds", type=float, default=None, help="per model and block")
    parser.add_argument("--blocks", type=int, default=2, help="pairs of (pause, sleep) blocks")
    args = parser.parse_args(argv)
    profile = load_profile(args.profile)
    seconds = args.seconds if args.seconds is not None else profile.measure_seconds
    feeds = {m: synthetic_feed(m, profile, {}) for m in args.models}
    print(f"machine: {describe(fingerprint())}; profile {profile.name}, {profile.threads} threads")
    ratios: dict[str, list[float]] = {label(m): [] for m in args.models}
    for block in range(args.blocks):
        p90 = {}
        for how in ("pause", "sleep") if block % 2 == 0 else ("sleep", "pause"):
            results = measure(args.models, profile, feeds, seconds, how)
            p90[how] = {name: r.p90_ms for name, r in results.items()}
            for name, r in results.items():
                print(
                    f"block {block} {how:5s} {name:32s} p50 {r.p50_ms:7.2f} "
                    f"[{r.p50_ci[0]:.2f}, {r.p50_ci[1]:.2f}]  p90 {r.p90_ms:7.2f} "
                    f"[{r.p90_ci[0]:.2f}, {r.p90_ci[1]:.2f}] ms"
                )
        for name, values in ratios.items():
            values.append(p90["sleep"][name] / p90["pause"][name])
    summary = {name: float(np.median(values)) for name, values in ratios.items()}
    for name, ratio in summary.items():
        print(f"p90 sleep / pause {name:32s} {ratio:.3f} (median of {args.blocks} block pairs)")
    return summary


if __name__ == "__main__":
    main()
