"""Recovery of one pruned configuration under the same minutes: logits-only vs layer-wise
distillation, a fixed learning rate vs the LR range test's.

    python benchmarks/recovery_ablation.py CHECKPOINT --data D [--layers 3 --ffn 0.5]
        [--minutes 5] [--fixed-lr 5e-5] [--out runs/ablation]

Runs `edgetune prune` four times (each with the same time cap and seed) and prints, per
variant, the learning rate used, the steps done, and the validation accuracy of the exported
ONNX model (run with ONNX Runtime on every validation row, with a Wilson 95 % interval).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def onnx_accuracy(bundle: Path, data: str) -> tuple[float, int]:
    from edgetune.data.labels import align_labels
    from edgetune.data.text import load_text_dataset
    from edgetune.deploy.runtime import Predictor

    predictor = Predictor(bundle, threads=2)
    dataset = align_labels(load_text_dataset(data, None, None, 0.1, 42), predictor.labels)
    rows = dataset.validation
    texts = [tuple(t) if dataset.is_pair else t for t in rows["text"]]
    predicted = [
        p["label"] for i in range(0, len(texts), 32) for p in predictor.predict(texts[i : i + 32])
    ]
    correct = sum(p == dataset.label_names[t] for p, t in zip(predicted, rows["label"]))
    return correct / len(texts), len(texts)


def main(argv: list[str] | None = None) -> list[dict]:
    import edgetune
    from edgetune.config import PruneJobConfig
    from edgetune.measure.stats import wilson_interval

    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--data", required=True)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--ffn", type=float, default=0.5)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--fixed-lr", type=float, default=5e-5)
    parser.add_argument("--max-train-samples", type=int, default=None)
    parser.add_argument("--profile", default="cpu-edge")
    parser.add_argument("--out", default="runs/ablation")
    args = parser.parse_args(argv)
    rows = []
    print(
        "| distillation | learning rate | steps | ONNX accuracy [95 % interval] "
        "|\n|---|---|---|---|"
    )
    for distillation in ("logits", "layerwise"):
        for lr in (args.fixed_lr, "auto"):
            out = Path(args.out) / f"{distillation}-{lr}"
            bundle = edgetune.prune(
                PruneJobConfig(
                    checkpoint=args.checkpoint,
                    data=args.data,
                    out=str(out),
                    layers=args.layers,
                    ffn=args.ffn,
                    distillation=distillation,
                    overwrite=True,
                    profile=args.profile,
                    train={
                        "epochs": 1.0,
                        "max_train_minutes": args.minutes,
                        "learning_rate": lr,
                        "max_train_samples": args.max_train_samples,
                    },
                )
            )
            train = bundle.manifest.train
            accuracy, n = onnx_accuracy(out, args.data)
            interval = wilson_interval(round(accuracy * n), n)
            used = f"{train['learning_rate']:.2g}" + (" (found)" if lr == "auto" else " (fixed)")
            print(
                (
                    f"| {distillation} | {used} | {train['steps']} | {accuracy:.4f} "
                    f"[{interval.low:.3f}, {interval.high:.3f}] |"
                ),
                flush=True,
            )
            rows.append(
                {
                    "distillation": distillation,
                    "learning_rate": train["learning_rate"],
                    "found": lr == "auto",
                    "steps": train["steps"],
                    "accuracy": accuracy,
                    "pytorch_accuracy": bundle.manifest.metrics["pytorch_accuracy"],
                }
            )
    return rows


if __name__ == "__main__":
    main()
