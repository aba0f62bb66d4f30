"""Wall time of `edgetune tune`, end to end and per stage.

    python benchmarks/tune_time.py -- --model M --data D --profile cpu-edge --out runs/x [...]

Everything after `--` goes to `edgetune tune`. Prints the total wall time, each stage
(data, fine-tune, export, quantize, bench, search) and each pruned candidate's recovery time,
read back from the run's report.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    from click.testing import CliRunner

    from edgetune.cli import cli

    args = argv[argv.index("--") + 1 :] if "--" in argv else argv
    out = Path(args[args.index("--out") + 1]) if "--out" in args else Path("runs/edgetune")
    start = time.perf_counter()
    result = CliRunner().invoke(cli, ["tune", *args])
    wall = time.perf_counter() - start
    print(result.output[-2000:])
    report = json.loads((out / "report.json").read_text())
    run = report["run"]
    print("\n| stage | seconds |\n|---|---|")
    for stage, seconds in run["stage_seconds"].items():
        print(f"| {stage} | {seconds:.1f} |")
    seen = set()
    for c in report["candidates"]:
        pruning = c["settings"].get("pruning")
        if pruning and pruning["name"] not in seen:
            seen.add(pruning["name"])
            print(f"| recovery {pruning['name']} | {pruning['train']['train_seconds']:.1f} |")
    print(f"| **total wall time** | **{wall:.1f}** |")
    return result.exit_code


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main(sys.argv[1:]))
