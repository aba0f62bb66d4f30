"""Which budget verdicts change when the device is smaller than the machine that tunes: every
candidate bundle of a `tune` run timed here (the profile's threads) and through an `edgetune
agent` pinned to one core (`taskset -c 0`) on this machine, each side's models in interleaved
rounds, against the profile's latency budget. Prints each candidate's p90 with its interval and
verdict on both, the fingerprints, and the verdicts that change.

    python benchmarks/one_core_agent.py runs/x --profile cpu-edge --seconds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import edgetune
from edgetune.config import BenchConfig
from edgetune.hardware import describe
from edgetune.profiles import load_profile


def start_agent(store: Path, cores: str) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "edgetune", "agent", "--port", "0", "--store", str(store)]
    proc = subprocess.Popen(
        ["taskset", "-c", cores, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in proc.stdout:
        if "ready on" in line:
            return proc, line.split("ready on ")[1].split()[0]
    raise SystemExit("the agent did not start")


def bench(models: list[str], profile: str, seconds: float, target: str | None):
    config = BenchConfig(models=models, profile=profile, min_seconds=seconds, target=target)
    return edgetune.bench(config).results


def row(result) -> str:
    latency = result.latency
    low, high = latency.p90_ci or [latency.p90_ms, latency.p90_ms]
    return f"p90 {latency.p90_ms:7.2f} [{low:.2f}, {high:.2f}] ms {latency.verdict or '-':8s}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a `tune` output folder (its candidates/ are timed)")
    parser.add_argument("--profile", default="cpu-edge")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per model")
    parser.add_argument("--cores", default="0", help="the agent's CPUs (taskset -c)")
    parser.add_argument("--store", default="/tmp/edgetune-one-core-agent")
    args = parser.parse_args(argv)
    if shutil.which("taskset") is None:
        raise SystemExit("taskset (util-linux) is needed to pin the agent")
    os.environ.pop("EDGETUNE_AGENT_TOKEN", None)  # loopback agent without a token
    models = sorted(str(p) for p in (Path(args.run) / "candidates").iterdir() if p.is_dir())
    Path(args.store).mkdir(parents=True, exist_ok=True)
    proc, url = start_agent(Path(args.store), args.cores)
    try:
        here = bench(models, args.profile, args.seconds, None)
        there = bench(models, args.profile, args.seconds, url)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"here:  {describe(here[0].latency.machine)}")
    print(f"agent: {describe(there[0].latency.machine)} (taskset -c {args.cores})")
    print(f"profile {args.profile}: budget {load_profile(args.profile).latency_budget_ms:g} ms p90")
    changed = []
    for a, b in zip(here, there):
        name = Path(a.model).name
        print(f"{name:28s} here {row(a)} | agent {row(b)}")
        if a.latency.verdict != b.latency.verdict:
            changed.append(f"{name}: {a.latency.verdict} -> {b.latency.verdict}")
    print("verdicts that change: " + ("; ".join(changed) if changed else "none"))
    return {"changed": changed}


if __name__ == "__main__":
    main()
