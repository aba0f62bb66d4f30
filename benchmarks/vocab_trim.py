"""Vocabulary trimming on a real task.

    python benchmarks/vocab_trim.py -- --data ../shared/data/sst2 --out runs/trim [...]
    python benchmarks/vocab_trim.py --unseen runs/trim ../shared/data/sst2

The first form runs `edgetune tune --trim-vocab on` with everything after `--`, so every
candidate built from a preset mode gets a trimmed variant in the same run, and prints each
beside its untrimmed twin: tokens kept, size, ONNX accuracy (McNemar p against the twin) and p90
from the same interleaved rounds. The second rebuilds trimmed variants of that run's fp32
export with each way of mapping unseen tokens (`unseen = unknown | nearest`) and reserves, and
prints their accuracy on the data's validation rows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def tune_table(argv: list[str]) -> int:
    from click.testing import CliRunner

    from edgetune.cli import cli
    from edgetune.measure.stats import mcnemar_exact
    from edgetune.search.record import Candidate

    args = argv[argv.index("--") + 1 :] if "--" in argv else argv
    out = Path(args[args.index("--out") + 1]) if "--out" in args else Path("runs/edgetune")
    result = CliRunner().invoke(cli, ["tune", "--trim-vocab", "on", *args])
    print(result.output[-1500:])
    report = json.loads((out / "report.json").read_text())
    found = {c["name"]: Candidate.from_json(c) for c in report["candidates"]}
    print("| candidate | tokens kept | size MB | ONNX accuracy | McNemar p vs untrimmed | p90 ms |")
    print("|---|---|---|---|---|---|")
    for name, c in found.items():
        twin = found.get(name.removesuffix("+vocab-trim")) if name.endswith("+vocab-trim") else None
        kept = c.settings.get("vocabulary")
        p = (
            f"{mcnemar_exact(c.accuracy.correct_mask(), twin.accuracy.correct_mask()).p_value:.3f}"
            if twin
            else ""
        )
        tokens = f"{kept['kept']} of {kept['size']}" if kept else "all"
        p90 = f"{c.latency.p90_ms:.2f}" if c.latency else "-"
        print(f"| {name} | {tokens} | {c.size_mb:.2f} | {c.accuracy.accuracy:.4f} | {p} | {p90} |")
    return result.exit_code


def unseen_table(run: Path, data: str) -> int:
    import numpy as np

    from edgetune.compress.modes import MODES, Mode, build_variants, trimmed
    from edgetune.compress.passes import PassContext, Step
    from edgetune.data.text import load_text_dataset
    from edgetune.exporter.onnx import load_checkpoint
    from edgetune.measure.bench import EvalSet, Subject, evaluate
    from edgetune.modality.base import Prepared
    from edgetune.modality.text import TextModality
    from edgetune.profiles import load_profile

    model, tokenizer = load_checkpoint(run / "work" / "best")
    dataset = load_text_dataset(data, None, None)
    prepared = Prepared(tokenizer, 128)
    ctx = PassContext(vocabulary=TextModality().vocabulary(dataset, prepared))
    profile = load_profile("cpu-edge")
    labels = np.asarray(dataset.validation["label"])
    evaluation = EvalSet(tokenizer, list(dataset.validation["text"]), labels, 128)

    def variant(base: Mode, unseen: str, reserve: int) -> Mode:
        mode = trimmed(base, reserve)
        steps = tuple(
            Step.of("vocab-trim", unseen=unseen, reserve=reserve)
            if s.pass_name == "vocab-trim"
            else s
            for s in mode.steps
        )
        return Mode(f"{mode.name}:{unseen},reserve={reserve}", steps, mode.description)

    print("| variant | size MB | ONNX accuracy |\n|---|---|---|")
    for base in (MODES["optimized-fp32"], MODES["dynamic-int8"]):
        modes = [base] + [
            variant(base, unseen, reserve)
            for unseen, reserve in (("unknown", 0), ("nearest", 0), ("nearest", 20000))
        ]
        built = build_variants(
            run / "work" / "onnx" / "model.fp32.onnx", run / "unseen", modes, ctx
        )
        for name, (path, _) in built.items():
            accuracy = evaluate(Subject(name, path, tokenizer), profile, evaluation).accuracy
            print(f"| {name} | {path.stat().st_size / 1e6:.2f} | {accuracy:.4f} |")
    del model
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if sys.argv[1:2] == ["--unseen"]:
        sys.exit(unseen_table(Path(sys.argv[2]), sys.argv[3]))
    sys.exit(tune_table(sys.argv[1:]))
