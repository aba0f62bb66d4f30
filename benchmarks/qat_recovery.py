"""Post-training static INT8 against quantization-aware recovery, on one pruned student.

    python benchmarks/qat_recovery.py --teacher runs/sst2/work/best --data ../shared/data/sst2 \
        --config L2-H0.5-F0.5 --minutes 6 --out runs/qat

Prunes the teacher to `--config` twice with the same recovery budget: once plainly (then static
INT8 MinMax after training, with and without the attention products quantized), once with the
last 30 % of the budget quantization-aware (`prune --qat`). Then benches the fp32 student, the
post-training INT8 models and the QAT model side by side on the validation rows (accuracy on
each ONNX model, p90 in interleaved rounds) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgetune_run import run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--config", default="L2-H0.5-F0.5")
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--profile", default="cpu-edge")
    parser.add_argument("--out", default="runs/qat")
    args = parser.parse_args(argv)
    from edgetune.compress.pruning import PruneConfig

    config = PruneConfig.parse(args.config)
    structure = ["--layers", config.layers] if config.layers else []
    structure += ["--heads", config.heads, "--ffn", config.ffn, "--hidden", config.hidden]
    out = Path(args.out)
    common = ["--data", args.data, "--max-train-minutes", args.minutes, "--profile", args.profile]
    run("prune", args.teacher, *structure, *common, "--out", out / "plain", "--overwrite")
    modes = "static-int8-minmax,static-int8-minmax-linear"
    run("quantize", out / "plain", "--mode", modes, "--calibration-data", args.data,
        "--out", out / "ptq", "--overwrite")  # fmt: skip
    run("prune", args.teacher, *structure, *common, "--qat", "--out", out / "qat", "--overwrite")
    subjects = [out / "plain", out / "ptq" / "static-int8-minmax"]
    subjects += [out / "ptq" / "static-int8-minmax-linear", out / "qat"]
    output = run("bench", *subjects, "--data", args.data, "--profile", args.profile, "--json")
    report = json.JSONDecoder().raw_decode(
        output[output.rindex("{", 0, output.index('"results"')) :]
    )[0]
    print("\n| model | ONNX accuracy [95 % CI] | p90 ms [CI] | size MB |\n|---|---|---|---|")
    for r in report["results"]:
        accuracy, latency = r["accuracy"], r["latency"]
        print(
            f"| {r['model']} | {accuracy['accuracy']:.4f} "
            f"[{accuracy['ci'][0]:.3f}, {accuracy['ci'][1]:.3f}] | {latency['p90_ms']:.2f} "
            f"[{latency['p90_ci'][0]:.2f}, {latency['p90_ci'][1]:.2f}] | {r['size_mb']:.1f} |"
        )
    print("\np90 ratios to the fp32 student:", json.dumps(report["ratios"], indent=1))
    twin = json.loads((out / "qat" / "edgetune.json").read_text())["pruning"]["qat"]["twin"]
    print(f"\nQAT twin check (QDQ ONNX vs fake-quantized PyTorch): {twin}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
