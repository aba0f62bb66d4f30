"""edgetune side by side with PyTorch eager and the Optimum recipe, each row in its own process.

Rows (same validation data, same ORT settings, same harness):
  1. PyTorch eager fp32 - the fine-tuned checkpoint as a user runs it;
  2. Optimum recipe     - optimum ONNX export, ORTOptimizer O2, ORTQuantizer dynamic INT8 with
                          the AutoQuantizationConfig preset for this CPU (avx512_vnni/avx2/arm64);
  3. edgetune           - the bundle a `tune` run chose (OUT/best).
Every row runs in a worker process of its own (`compare.py --worker`), so no row's threads
(PyTorch's OpenMP pool included) are left running beside another's; latencies are taken in
interleaved rounds whose order rotates (A B C, B C A, C A B, ...) so machine drift hits every
row alike, with 95 % intervals (cluster bootstrap over rounds) and ratios paired by round.
Threads are pinned to the profile's. Also checks the harness: edgetune's bench p50 (taken in its
worker process, as `bench` takes it) vs a bare `session.run` loop on the same ONNX file here.

    python benchmarks/compare.py --run runs/sst2 --data ../shared/data/sst2 --profile cpu-edge
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# PyTorch's OpenMP threads must not spin-wait after each call, even in their own process:
# on two cores a spinning pool steals time from the row measured next.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def machine_header() -> dict:
    import onnxruntime
    import optimum.version
    import torch
    import transformers

    cpu = "unknown"
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": onnxruntime.__version__,
        "optimum": optimum.version.__version__,
    }


def optimum_recipe(checkpoint: Path, work: Path) -> tuple[Path, str]:
    """What a typical Optimum user does: export, O2 optimization, dynamic INT8 by CPU preset."""
    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig

    from edgetune.hardware import cpu_flags

    flags = cpu_flags()
    if platform.machine().lower() in ("arm64", "aarch64"):
        preset, qconfig = "arm64", AutoQuantizationConfig.arm64(is_static=False, per_channel=False)
    elif "avx512_vnni" in flags:
        preset, qconfig = (
            "avx512_vnni",
            AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False),
        )
    else:
        preset, qconfig = "avx2", AutoQuantizationConfig.avx2(is_static=False, per_channel=False)
    cwd = os.getcwd()
    os.chdir(work)  # ORT tools drop temp files in the working directory
    try:
        model = ORTModelForSequenceClassification.from_pretrained(checkpoint, export=True)
        model.save_pretrained(work / "exported")
        optimizer = ORTOptimizer.from_pretrained(model)
        optimizer.optimize(AutoOptimizationConfig.O2(), work / "optimized")
        note = f"O2 + ORTQuantizer {preset} dynamic, per-tensor"
        try:
            quantizer = ORTQuantizer.from_pretrained(
                work / "optimized", file_name="model_optimized.onnx"
            )
            quantizer.quantize(qconfig, work / "quantized")
        except RuntimeError as exc:
            # Seen on BERT models: ORTQuantizer cannot quantize the O2-fused graph ("Unable to
            # find data type for weight_name") and offers no way to pass DefaultTensorType.
            # What a user then does: quantize the plain export instead.
            print(
                f"Optimum recipe: ORTQuantizer failed on the O2 model ({str(exc)[:80]}...); "
                "quantizing the unoptimized export instead",
                file=sys.stderr,
            )
            quantizer = ORTQuantizer.from_pretrained(work / "exported", file_name="model.onnx")
            quantizer.quantize(qconfig, work / "quantized")
            note = f"ORTQuantizer {preset} dynamic, per-tensor (on the plain export: fails on O2)"
    finally:
        os.chdir(cwd)
    return next((work / "quantized").glob("*quantized.onnx")), note


class Row:
    """One contender, measured by a worker process: `kind` is ort or torch."""

    def __init__(self, name: str, kind: str, path: Path, size_mb: float, note: str):
        self.name, self.kind, self.path, self.size_mb, self.note = name, kind, path, size_mb, note
        self.rounds: list[np.ndarray] = []
        self.times32: list[float] = []
        self.accuracy = self.macro_f1 = float("nan")
        self.proc: subprocess.Popen | None = None

    def start(self, threads: int, feeds: Path) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                self.kind,
                str(self.path),
                str(threads),
                str(feeds),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, request: dict):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker of row '{self.name}' died")
        return json.loads(line)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def ort_runner(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda feed: session.run(None, {n: feed[n] for n in names})[0], session


def torch_runner(checkpoint: Path, threads: int):
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.set_num_threads(threads)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()

    def run(feed):
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()

    return run


def timed(run, feed, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        run(feed)
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def worker(kind: str, path: str, threads: str, feeds_path: str) -> None:
    """A row's process: answers {"op": "eval"} with logits and {"op": "run", ...} with times."""
    run = (
        torch_runner(Path(path), int(threads))
        if kind == "torch"
        else ort_runner(Path(path), int(threads))[0]
    )
    with np.load(feeds_path) as data:
        arrays = {k: data[k] for k in data.files}
    feeds: dict[str, dict] = {}
    for key, value in arrays.items():
        group, name = key.split("/")
        feeds.setdefault(group, {})[name] = value
    evals = [feeds[g] for g in sorted(feeds, key=lambda g: (len(g), g)) if g.startswith("eval")]
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "eval":
            reply = {"logits": np.concatenate([run(b) for b in evals]).tolist()}
        else:
            reply = {"times": timed(run, feeds[request["feed"]], request["runs"])}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def harness_check(path: Path, profile, feed, seconds: float) -> tuple[float, float]:
    """edgetune's measured p50 (its worker process) vs a bare session.run loop here, same file."""
    from edgetune.measure.latency import LatencySettings, measure_latency

    settings = LatencySettings(warmup_runs=10, min_runs=50, min_seconds=seconds)
    ours = measure_latency(path, profile, feed, settings).p50_ms
    run, _ = ort_runner(path, profile.threads)
    timed(run, feed, 10)
    bare = []
    start = time.perf_counter()
    while len(bare) < 50 or time.perf_counter() - start < seconds:
        bare += timed(run, feed, 1)
    return ours, float(np.median(bare))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run", type=Path, help="an `edgetune tune` OUT folder (checkpoint + best bundle)"
    )
    parser.add_argument(
        "--checkpoint", type=Path, help="fine-tuned checkpoint (default RUN/work/best)"
    )
    parser.add_argument("--bundle", type=Path, help="edgetune bundle (default RUN/best)")
    parser.add_argument("--data", required=True)
    parser.add_argument("--profile", default="cpu-edge")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds")
    parser.add_argument("--runs-per-round", type=int, default=10)
    parser.add_argument("--harness-seconds", type=float, default=5.0)
    parser.add_argument(
        "--max-examples", type=int, default=None, help="accuracy on the first N only"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="write the JSON here (Markdown beside it)"
    )
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    from edgetune.data.encoding import eval_batches, latency_feed
    from edgetune.data.labels import align_labels
    from edgetune.data.text import load_text_dataset
    from edgetune.deploy.bundle import load_bundle
    from edgetune.measure.metrics import classification_metrics
    from edgetune.profiles import load_profile

    checkpoint = args.checkpoint or (args.run / "work" / "best")
    bundle = load_bundle(args.bundle or (args.run / "best"))
    profile = load_profile(args.profile)
    threads = profile.threads
    header = machine_header()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    dataset = align_labels(load_text_dataset(args.data), bundle.label_names)
    texts = list(dataset.validation["text"])[: args.max_examples]
    labels = np.asarray(dataset.validation["label"])[: len(texts)]
    length = bundle.max_length
    feed = latency_feed(tokenizer, texts, profile.batch_size, profile.sequence_length)
    feed32 = latency_feed(tokenizer, texts, 32, profile.sequence_length)
    batches = eval_batches(tokenizer, texts, length)

    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        optimum_path, optimum_note = optimum_recipe(checkpoint.resolve(), Path(tmp))
        weights = sum(p.stat().st_size for p in checkpoint.glob("*.safetensors")) / 1e6
        rows = [
            Row("PyTorch eager fp32", "torch", checkpoint, weights, "checkpoint"),
            Row(
                "Optimum recipe",
                "ort",
                optimum_path,
                optimum_path.stat().st_size / 1e6,
                optimum_note,
            ),
            Row(
                f"edgetune ({bundle.manifest.candidate or bundle.manifest.precision})",
                "ort",
                bundle.model_path,
                bundle.model_path.stat().st_size / 1e6,
                "tune's choice",
            ),
        ]
        feeds = Path(tmp) / "feeds.npz"
        np.savez(
            feeds,
            **{f"b1/{k}": v for k, v in feed.items()},
            **{f"b32/{k}": v for k, v in feed32.items()},
            **{f"eval{i}/{k}": v for i, b in enumerate(batches) for k, v in b.items()},
        )
        try:
            for row in rows:
                row.start(threads, feeds)
            for row in rows:
                m = classification_metrics(
                    np.asarray(row.ask({"op": "eval"})["logits"], np.float32), labels
                )
                row.accuracy, row.macro_f1 = m["accuracy"], m["macro_f1"]
                row.ask({"op": "run", "feed": "b1", "runs": 5})  # warm-up
                row.ask({"op": "run", "feed": "b32", "runs": 1})
            for r in range(args.rounds):  # interleaved, the order rotating every round
                for row in rows[r % len(rows) :] + rows[: r % len(rows)]:
                    row.rounds.append(
                        np.asarray(
                            row.ask({"op": "run", "feed": "b1", "runs": args.runs_per_round})[
                                "times"
                            ]
                        )
                    )
            for r in range(max(3, args.rounds // 5)):
                for row in rows[r % len(rows) :] + rows[: r % len(rows)]:
                    row.times32 += row.ask({"op": "run", "feed": "b32", "runs": 1})["times"]
        finally:
            for row in rows:
                row.stop()
        ours_p50, bare_p50 = harness_check(bundle.model_path, profile, feed, args.harness_seconds)

    from edgetune.measure.stats import percentile_interval, ratio_interval

    result = {
        "header": header,
        "profile": profile.model_dump(),
        "examples": len(texts),
        "rows": [],
        "ci_method": "cluster bootstrap over rounds, 95 %; ratios paired by round",
        "harness": {
            "edgetune_p50_ms": ours_p50,
            "bare_loop_p50_ms": bare_p50,
            "difference": abs(ours_p50 - bare_p50) / bare_p50,
        },
    }
    for r in rows:
        p50, p90, p99 = (percentile_interval(r.rounds, q) for q in (50, 90, 99))
        result["rows"].append(
            {
                "name": r.name,
                "note": r.note,
                "accuracy": r.accuracy,
                "macro_f1": r.macro_f1,
                "size_mb": r.size_mb,
                "p50_ms": p50.value,
                "p50_ci": [p50.low, p50.high],
                "p90_ms": p90.value,
                "p90_ci": [p90.low, p90.high],
                "p99_ms": p99.value,
                "runs": int(sum(len(x) for x in r.rounds)),
                "throughput_b32_items_per_s": 32 * 1000.0 / float(np.median(r.times32)),
                "p50_vs_pytorch": ratio_interval(rows[0].rounds, r.rounds).to_json(),
                "p50_vs_optimum": ratio_interval(rows[1].rounds, r.rounds).to_json(),
            }
        )
    text = render(result)
    print(text)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
        args.out.with_suffix(".md").write_text(text)
    return result


def render(result: dict) -> str:
    h, p = result["header"], result["profile"]
    lines = [
        (
            f"Machine: {h['cpu']}, {h['cores']} cores, load average {h['load_average']}; "
            f"{h['date']}; Python {h['python']}, torch {h['torch']}, transformers "
            f"{h['transformers']}, onnxruntime {h['onnxruntime']}, optimum {h['optimum']}."
        ),
        (
            f"Profile {p['name']}: {p['intra_op_threads'] or h['cores']} threads, batch "
            f"{p['batch_size']}, "
            f"sequence {p['sequence_length']}; accuracy on {result['examples']} validation "
            f"examples."
        ),
        "",
        (
            "| row | accuracy | macro-F1 | size MB | p50 ms [95% CI] | p90 ms [95% CI] | p99 "
            "ms | items/s @ b32 | p50 / PyTorch [CI] | p50 / Optimum [CI] |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def ratio(r: list[float]) -> str:
        return f"{r[0]:.2f} [{r[1]:.2f}, {r[2]:.2f}]"

    for r in result["rows"]:
        lines.append(
            f"| {r['name']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['size_mb']:.1f} | "
            f"{r['p50_ms']:.2f} [{r['p50_ci'][0]:.2f}, {r['p50_ci'][1]:.2f}] | "
            f"{r['p90_ms']:.2f} [{r['p90_ci'][0]:.2f}, {r['p90_ci'][1]:.2f}] | {r['p99_ms']:.2f} | "
            f"{r['throughput_b32_items_per_s']:.1f} | {ratio(r['p50_vs_pytorch'])} | "
            f"{ratio(r['p50_vs_optimum'])} |"
        )
    lines += ["", *[f"- {r['name']}: {r['note']}" for r in result["rows"]]]
    hc = result["harness"]
    lines += [
        "",
        (
            f"Harness check (same ONNX file): edgetune bench p50 (its worker process) "
            f"{hc['edgetune_p50_ms']:.3f} ms, bare session.run loop p50 "
            f"{hc['bare_loop_p50_ms']:.3f} ms, "
            f"difference {100 * hc['difference']:.1f} %."
        ),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if sys.argv[1:2] == ["--worker"]:
        worker(*sys.argv[2:6])
    else:
        main()
