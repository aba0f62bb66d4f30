"""Session settings of one bundle, timed side by side: which ONNX Runtime settings are faster?

What `edgetune bench BUNDLE --tune-session` does (`measure/tuning.py`): the default session,
then each setting changed alone (intra-op threads below the profile's, spinning off, graph
optimization extended/basic, parallel execution), in interleaved rounds (one worker process per
setting, rotating order); winners confirmed in a second pass with their combination. Prints
each setting's p50/p90 and its ratios to the default with 95 % intervals, and the choice.

    python benchmarks/session_tuning.py BUNDLE [--profile cpu-edge] [--seconds 3] [--rounds 10]
        [--target http://device:8765] [--out tuning.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

import edgetune
from edgetune.config import BenchConfig
from edgetune.deploy.report import session_tuning_table


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--profile", default="cpu-edge")
    parser.add_argument(
        "--seconds", type=float, default=None, help="per setting (default: the profile's)"
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--target", default=None, help="an `edgetune agent` URL")
    parser.add_argument("--out", default=None, help="write the tuning's JSON here")
    args = parser.parse_args(argv)
    report = edgetune.bench(
        BenchConfig(
            models=[args.bundle],
            profile=args.profile,
            min_seconds=args.seconds,
            rounds=args.rounds,
            min_runs=args.rounds,
            target=args.target,
            tune_session=True,
        )
    )
    tuning = report.session_tuning.to_json()
    machine = tuning["machine"]
    title = (
        f"{args.bundle} on {args.profile}, measured on {machine.get('cpu')} "
        f"({machine.get('cores')} cores): {tuning['reason']}"
    )
    Console(width=160).print(session_tuning_table(tuning, title))
    if args.out:
        Path(args.out).write_text(json.dumps(tuning, indent=2) + "\n")
    return tuning


if __name__ == "__main__":
    main()
