"""What measuring through `edgetune agent` costs: one model timed here and through an agent on
this same machine, in alternating blocks (local, agent, agent, local, ...), and the agent's p50
over the local p50 with a 95 % interval (blocks resampled in adjacent pairs, so that drift
shared by neighbours cancels). Prints one line per block, then the ratio.

    python benchmarks/agent_overhead.py runs/x/best --profile cpu-edge --blocks 8 --seconds 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tomli_w

import edgetune
from edgetune.config import BenchConfig
from edgetune.hardware import describe, fingerprint
from edgetune.measure.stats import ratio_interval
from edgetune.profiles import load_profile


def start_agent(store: Path) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "edgetune", "agent", "--port", "0", "--store", str(store)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "ready on" in line:
            return proc, line.split("ready on ")[1].split()[0]
    raise SystemExit("the agent did not start")


def times(model: str, profile: str, seconds: float, target: str | None) -> np.ndarray:
    """Every run's time (ms) of one `bench` of `model`, here or on `target`."""
    config = BenchConfig(models=[model], profile=profile, min_seconds=seconds, target=target)
    latency = edgetune.bench(config).results[0].latency
    return np.concatenate(latency.round_times)


def unbudgeted(profile: str, folder: Path) -> str:
    """The profile with a budget nothing misses: no extra rounds for marginal verdicts, so
    every block times the same number of runs here and on the agent."""
    settings = load_profile(profile).model_dump(exclude_none=True)
    settings["latency_budget_ms"] = 1e9
    path = folder / "unbudgeted.toml"
    path.write_text(tomli_w.dumps(settings))
    return str(path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a bundle or .onnx file")
    parser.add_argument("--profile", default="cpu-edge")
    parser.add_argument("--blocks", type=int, default=8, help="blocks of each (even)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per block")
    parser.add_argument("--store", default="/tmp/edgetune-agent-overhead")
    args = parser.parse_args(argv)
    os.environ.pop("EDGETUNE_AGENT_TOKEN", None)  # loopback agent without a token
    print(f"machine: {describe(fingerprint())}; profile {args.profile}; {args.seconds:g} s a block")
    Path(args.store).mkdir(parents=True, exist_ok=True)
    profile = unbudgeted(args.profile, Path(args.store))
    proc, url = start_agent(Path(args.store))
    local, remote = [], []
    try:
        times(args.model, profile, 0.2, url)  # upload once, outside the blocks
        for block in range(args.blocks):
            order = [None, url] if block % 2 == 0 else [url, None]
            for target in order:
                measured = times(args.model, profile, args.seconds, target)
                (remote if target else local).append(measured)
                where = "agent" if target else "local"
                print(
                    f"block {block + 1} {where:5s} p50 {np.percentile(measured, 50):.3f} ms "
                    f"({len(measured)} runs)",
                    flush=True,
                )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    ratio = ratio_interval(local, remote, 50)
    print(
        f"agent p50 / local p50 = {ratio.value:.3f} [{ratio.low:.3f}, {ratio.high:.3f}] "
        f"over {args.blocks} block pairs"
    )
    return {"ratio": ratio.value, "interval": [ratio.low, ratio.high]}


if __name__ == "__main__":
    main()
