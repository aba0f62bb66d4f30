"""Back-to-back latency measurements of one ONNX model: do their p50 intervals overlap?

Each measurement is what `edgetune bench` does for one model (its own worker process, 10
rotating rounds, cluster-bootstrap 95 % interval over rounds). Blocks of five back-to-back
measurements, each block with the given number of warm-up runs, print p50 [interval].

    python benchmarks/repeat_drift.py BUNDLE_DIR [--profile cpu-edge] [--warmups 10 500 10 500]
"""

from __future__ import annotations

import argparse

from transformers import AutoTokenizer

from edgetune.data.encoding import latency_feed
from edgetune.measure.latency import LatencySettings, measure_latency
from edgetune.profiles import load_profile


def main(argv: list[str] | None = None) -> list[list[tuple[float, list[float]]]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--profile", default="cpu-edge")
    parser.add_argument("--warmups", type=int, nargs="+", default=[10, 500, 10, 500])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    profile = load_profile(args.profile)
    tokenizer = AutoTokenizer.from_pretrained(args.bundle)
    feed = latency_feed(
        tokenizer,
        ["a gripping, beautifully shot film"],
        profile.batch_size,
        profile.sequence_length,
    )
    blocks = []
    for warmup in args.warmups:
        block = []
        for _ in range(args.repeats):
            result = measure_latency(
                f"{args.bundle}/model.onnx", profile, feed, LatencySettings(warmup_runs=warmup)
            )
            block.append((result.p50_ms, result.p50_ci))
        print(
            f"warm-up {warmup:4d} runs: "
            + "  ".join(f"{p50:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" for p50, ci in block),
            flush=True,
        )
        blocks.append(block)
    return blocks


if __name__ == "__main__":
    main()
