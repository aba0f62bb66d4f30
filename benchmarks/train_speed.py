"""Training throughput on CPU: fp32 vs bf16 autocast, with and without length-grouped batches.

    python benchmarks/train_speed.py --data ../shared/data/sst2 --steps 120

Fine-tunes the packaged MiniLM for `--steps` steps of batch 32 in each setting, each run in a
fresh process (mixed-precision state must not carry over from one run to the next), in the
order A B C A B C (so drift falls on all alike), and prints examples/s and the fp32 validation
accuracy of each run. Reads the CPU flags first: bf16 is only fast where they say so.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SETTINGS = {
    "fp32, grouped": ("fp32", True),
    "bf16, grouped": ("bf16", True),
    "fp32, not grouped": ("fp32", False),
}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-train-samples", type=int, default=8000)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a single run, in a child
    args = parser.parse_args(argv)
    if args.one:
        return one_run(args)

    from edgetune.hardware import cpu_flags, cpu_model

    flags = sorted({"avx512_bf16", "amx_bf16", "avx512_vnni", "amx_int8"} & cpu_flags())
    print(f"CPU: {cpu_model()}; flags: {', '.join(flags) or 'none of avx512_bf16/amx'}")
    rows = []
    for repeat in range(args.repeats):
        for name in SETTINGS:
            child = [
                sys.executable,
                __file__,
                "--one",
                name,
                "--data",
                args.data,
                "--steps",
                str(args.steps),
                "--max-train-samples",
                str(args.max_train_samples),
            ]
            child += ["--model", args.model] if args.model else []
            done = subprocess.run(child, capture_output=True, text=True, check=True)
            row = {
                **json.loads(done.stdout.strip().splitlines()[-1]),
                "setting": name,
                "repeat": repeat + 1,
            }
            rows.append(row)
            print(
                f"{name:18s} run {repeat + 1}: {row['examples_per_second']:6.1f} examples/s, "
                f"fp32 validation accuracy {row['accuracy']:.4f} ({row['precision']})",
                flush=True,
            )
    print("\n| setting | examples/s (each run) | accuracy (each run) |\n|---|---|---|")
    for name in SETTINGS:
        mine = [r for r in rows if r["setting"] == name]
        speeds = ", ".join(f"{r['examples_per_second']:.1f}" for r in mine)
        accuracies = ", ".join(f"{r['accuracy']:.4f}" for r in mine)
        print(f"| {name} | {speeds} | {accuracies} |")
    return rows


def one_run(args) -> list[dict]:
    from edgetune.data.text import load_text_dataset
    from edgetune.defaults import default_model
    from edgetune.modality.text import TextModality
    from edgetune.train.loop import TrainConfig, fine_tune

    precision, grouped = SETTINGS[args.one]
    config = TrainConfig(
        max_steps=args.steps,
        eval_steps=args.steps,
        learning_rate=1e-4,
        batch_size=32,
        max_length=128,
        precision=precision,
        group_by_length=grouped,
        max_train_samples=args.max_train_samples,
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = fine_tune(
            args.model or default_model(),
            TextModality().adopt(load_text_dataset(args.data)),
            Path(tmp),
            config,
        )
    row = {
        "precision": result.precision,
        "examples_per_second": result.examples_per_second,
        "accuracy": result.metrics["accuracy"],
    }
    print(json.dumps(row))
    return [row]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
