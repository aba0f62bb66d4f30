"""The jobs behind the CLI commands: `tune`, `export_checkpoint`, `bench_model`.

Each is a plain function a Python user can call; the CLI only parses flags and prints.
Stages: data -> fine-tune (train.py) -> ONNX export + check (export.py) -> quantize
(quantize.py) -> bench every candidate on the profile (bench.py) -> choose (select.py) ->
bundle (bundle.py) + report (report.py).
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetune import __version__
from edgetune.bench import (
    AccuracyResult,
    LatencyResult,
    LatencySettings,
    create_session,
    measure_accuracy,
    measure_latency,
    model_size_mb,
)
from edgetune.bundle import Bundle, load_bundle, write_bundle
from edgetune.data import TextDataset, align_labels, load_text_dataset
from edgetune.encoding import calibration_batches, eval_batches, latency_feed
from edgetune.errors import InputError, NoCandidateError
from edgetune.fsutil import build_dir_atomic, check_output_dir
from edgetune.profiles import Profile
from edgetune.progress import console
from edgetune.prune import PruneConfig
from edgetune.quantize import MODES, QuantContext, build_variants
from edgetune.report import write_report
from edgetune.select import Candidate, Selection, check_budget, choose

QUANTIZE_MODES = ("none", "dynamic-int8")
VALIDATION_SAMPLE = "edgetune_validation_sample.json"
FALLBACK_TEXTS = [
    "The service was quick and the staff were friendly.",
    "I would not recommend this to anyone; it broke after a day.",
    "Shares fell sharply after the company missed its earnings forecast.",
    "The match ended in a draw after extra time.",
]


@dataclass
class BenchResult:
    model: str
    profile: str
    latency: LatencyResult
    size_mb: float
    accuracy: AccuracyResult | None = None
    manifest_metrics: dict | None = None

    def to_json(self) -> dict:
        return {"model": self.model, "profile": self.profile, "size_mb": self.size_mb,
                "latency": self.latency.to_json(),
                "accuracy": self.accuracy.to_json() if self.accuracy else None,
                "reported_in_bundle": self.manifest_metrics}


@dataclass
class TuneResult:
    out_dir: Path
    candidates: list[Candidate]
    selection: Selection
    best_bundle: Path | None
    report_md: Path
    stage_seconds: dict[str, float] = field(default_factory=dict)


def bench_onnx(
    model_path: str | Path, tokenizer, profile: Profile, texts: list[str] | None,
    labels: np.ndarray | None, max_length: int, settings: LatencySettings | None = None,
) -> BenchResult:
    """Latency on the profile (always) and accuracy on `texts`/`labels` (when given)."""
    session = create_session(model_path, profile)
    feed = latency_feed(tokenizer, texts or FALLBACK_TEXTS, profile.batch_size, profile.sequence_length)
    feed = {i.name: feed[i.name] for i in session.get_inputs()}
    accuracy = None
    if texts is not None and labels is not None:
        accuracy = measure_accuracy(session, eval_batches(tokenizer, texts, max_length), labels)
    del session
    latency = measure_latency(model_path, profile, feed, settings)
    return BenchResult(str(model_path), profile.name, latency, model_size_mb(model_path), accuracy)


def bench_model(
    model: str | Path, profile: Profile, data: str | None = None, split: str = "validation",
    text_column: str | None = None, label_column: str | None = None, tokenizer_dir: str | None = None,
    settings: LatencySettings | None = None, seed: int = 42, validation_fraction: float = 0.1,
) -> BenchResult:
    """`edgetune bench`: an ONNX file or a bundle, on a profile, with optional data."""
    from transformers import AutoTokenizer

    path = Path(model)
    if not path.exists():
        raise InputError(f"'{model}' does not exist; give a model.onnx file or a bundle folder")
    bundle: Bundle | None = None
    try:
        bundle = load_bundle(path)
    except InputError:
        if path.is_dir():
            raise
    model_path = bundle.model_path if bundle else path
    max_length = bundle.max_length if bundle else profile.sequence_length
    tok_source = tokenizer_dir or (bundle.path if bundle else path.parent)
    _check_is_onnx(model_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tok_source), trust_remote_code=False)
    except (OSError, ValueError):
        raise InputError(f"no tokenizer in {tok_source}; pass --tokenizer DIR") from None
    texts = labels = None
    if data is not None:
        dataset = load_text_dataset(data, text_column, label_column, validation_fraction, seed)
        if bundle:  # the data's label ids, renumbered to the model's order by name
            dataset = align_labels(dataset, bundle.label_names)
        split_ds = _pick_split(dataset, split)
        texts = list(split_ds["text"])
        labels = np.asarray(split_ds["label"])
    result = bench_onnx(model_path, tokenizer, profile, texts, labels, max_length, settings)
    result.manifest_metrics = bundle.manifest.get("metrics") if bundle else None
    return result


def _pick_split(dataset: TextDataset, split: str):
    import datasets

    if split == "all":
        return datasets.concatenate_datasets([dataset.train, dataset.validation])
    if split not in ("train", "validation"):
        raise InputError(f"unknown split '{split}': use train, validation or all")
    return getattr(dataset, split)


def onnx_opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _check_is_onnx(model_path: Path) -> None:
    import onnx

    try:
        onnx.load(str(model_path), load_external_data=False)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise InputError(f"{model_path}: not an ONNX model (could not parse it)") from None


def _manifest(label_names: list[str], max_length: int, precision: str, profile: Profile,
              extra: dict) -> dict:
    return {"task": "text-classification", "labels": label_names, "max_length": max_length,
            "precision": precision, "profile": profile.model_dump(), **extra}


def export_checkpoint(
    checkpoint: str | Path, out: str | Path, profile: Profile, quantize: str = "none",
    opset: int | None = None, atol: float | None = None, data: str | None = None,
    overwrite: bool = False, max_length: int | None = None,
) -> Bundle:
    """`edgetune export`: checkpoint -> validated ONNX (optionally dynamic INT8) bundle."""

    from edgetune.export import export_validated, load_checkpoint

    if quantize not in QUANTIZE_MODES:
        raise InputError(f"unknown --quantize '{quantize}': use one of {', '.join(QUANTIZE_MODES)}")
    check_output_dir(out, overwrite)
    model, tokenizer = load_checkpoint(checkpoint)
    max_length = max_length or profile.sequence_length
    texts = _validation_texts(Path(checkpoint), data)
    labels = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    with tempfile.TemporaryDirectory(prefix="edgetune-export-") as tmp:
        fp32, check = export_validated(model, tokenizer, Path(tmp) / "model.onnx", texts, max_length,
                                       opset, atol)
        extra = {"export_check": check.to_json(), "source": str(checkpoint),
                 "opset": onnx_opset(fp32)}
        model_file, precision = fp32, "fp32"
        if quantize == "dynamic-int8":  # the same mode as tune's: fused, then dynamic INT8
            built = build_variants(fp32, Path(tmp) / "variants", ["dynamic-int8"],
                                   QuantContext(model_type=model.config.model_type))
            (model_file, settings), precision = built["dynamic-int8"], "int8"
            extra.update(settings)
        return write_bundle(out, model_file, checkpoint,
                            _manifest(labels, max_length, precision, profile, extra), overwrite)


def quantize_model(
    model: str | Path, out: str | Path, modes: list[str], calibration_data: str | None = None,
    tokenizer_dir: str | None = None, calibration_samples: int = 128, overwrite: bool = False,
    max_length: int = 128,
) -> dict[str, Path]:
    """`edgetune quantize`: any ONNX model (or bundle) through the named modes into OUT/<mode>/."""
    from transformers import AutoTokenizer

    path = Path(model)
    if not path.exists():
        raise InputError(f"'{model}' does not exist; give a model.onnx file or a bundle folder")
    bundle = load_bundle(path) if (path.is_dir() or (path.parent / "edgetune.json").is_file()) else None
    source = bundle.model_path if bundle else path
    _check_is_onnx(source)
    check_output_dir(out, overwrite)
    ctx = QuantContext(model_type=_source_model_type(bundle))
    if any(MODES[m].needs_calibration for m in modes if m in MODES):
        if calibration_data is None:
            raise InputError("static INT8 modes need --calibration-data")
        tok_dir = tokenizer_dir or (bundle.path if bundle else source.parent)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), trust_remote_code=False)
        except (OSError, ValueError):
            raise InputError(f"no tokenizer in {tok_dir}; pass --tokenizer DIR") from None
        length = bundle.max_length if bundle else max_length
        texts = list(load_text_dataset(calibration_data).train["text"])
        ctx.calibration = calibration_batches(tokenizer, texts, length, calibration_samples, 0)
    written: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="edgetune-quantize-") as tmp:
        built = build_variants(source, tmp, modes, ctx)
        for name, (model_file, extra) in built.items():
            target = Path(out) / name
            if bundle:
                manifest = {**bundle.manifest, "precision": MODES[name].precision,
                            "candidate": name, "metrics": None, **extra}
                written[name] = write_bundle(target, model_file, bundle.path, manifest, overwrite).path
            else:
                build_dir_atomic(target, lambda d, f=model_file: shutil.copy2(f, d / "model.onnx"),
                                 overwrite)
                written[name] = target
    return written


def _source_model_type(bundle: Bundle | None) -> str:
    if bundle and (bundle.path / "config.json").is_file():
        return _model_type(bundle.path)
    return "bert"


def prune_checkpoint(
    checkpoint: str | Path, data: str, out: str | Path, prune: PruneConfig, profile: Profile,
    train_config=None, distill: bool = True, importance: str = "taylor", overwrite: bool = False,
    text_column: str | None = None, label_column: str | None = None, atol: float | None = None,
) -> Bundle:
    """`edgetune prune`: prune a fine-tuned checkpoint, recover it, export a validated bundle."""
    from edgetune.export import export_validated, load_checkpoint
    from edgetune.recover import distill_student, make_student, scoring_batches
    from edgetune.train import TrainConfig

    check_output_dir(out, overwrite)
    teacher, tokenizer = load_checkpoint(checkpoint)
    names = [str(teacher.config.id2label[i]) for i in range(teacher.config.num_labels)]
    cfg = train_config or TrainConfig(max_length=profile.sequence_length)
    dataset = align_labels(load_text_dataset(data, text_column, label_column, 0.1, cfg.seed), names)
    batches = scoring_batches(tokenizer, dataset, cfg.max_length, seed=cfg.seed)
    pruned = make_student(teacher, prune, batches, importance)
    console.log(f"pruned {prune.name}: {pruned.params_after / 1e6:.1f}M of "
                f"{pruned.params_before / 1e6:.1f}M parameters kept")
    with tempfile.TemporaryDirectory(prefix="edgetune-prune-") as tmp:
        trained = distill_student(pruned, tokenizer, teacher, dataset, Path(tmp) / "train", cfg,
                                  use_teacher=distill)
        student, _ = load_checkpoint(trained.checkpoint)
        fp32, check = export_validated(student, tokenizer, Path(tmp) / "model.onnx",
                                       list(dataset.validation["text"]), cfg.max_length, atol=atol)
        manifest = _manifest(names, cfg.max_length, "fp32", profile, {
            "source": str(checkpoint), "pruning": {**pruned.to_json(), "importance": importance,
                                                   "distilled": distill},
            "metrics": {"pytorch_accuracy": trained.metrics["accuracy"]},
            "train": trained.to_json(), "export_check": check.to_json()})
        return write_bundle(out, fp32, trained.checkpoint, manifest, overwrite)


def _validation_texts(checkpoint: Path, data: str | None) -> list[str]:
    if data is not None:
        return list(load_text_dataset(data).validation["text"])
    sample = checkpoint / VALIDATION_SAMPLE
    if sample.is_file():
        return json.loads(sample.read_text())
    console.log("no --data and no saved validation sample: checking the export on built-in sentences")
    return FALLBACK_TEXTS


def tune(
    model: str, data: str, profile: Profile, out: str | Path, train_config=None,
    overwrite: bool = False, resume: bool = False, text_column: str | None = None,
    label_column: str | None = None, atol: float | None = None, opset: int | None = None,
    settings: LatencySettings | None = None, validation_fraction: float = 0.1,
    modes: list[str] | None = None, calibration_samples: int = 128, search=None,
) -> TuneResult:
    """`edgetune tune`: fine-tune, export, quantize, bench every candidate, choose, bundle."""
    from edgetune.export import export_validated, load_checkpoint
    from edgetune.train import TrainConfig, fine_tune, finished_training

    out = Path(out)
    if not resume:
        check_output_dir(out, overwrite)
    cfg = train_config or TrainConfig(max_length=profile.sequence_length)
    stages: dict[str, float] = {}
    t0 = time.monotonic()
    dataset = load_text_dataset(data, text_column, label_column, validation_fraction, cfg.seed)
    console.log(f"data: {len(dataset.train)} train / {len(dataset.validation)} validation, "
                f"{dataset.num_labels} labels {dataset.label_names[:8]}")
    work = out / "work"
    if overwrite and not resume and out.exists():
        shutil.rmtree(work, ignore_errors=True)
    stages["data"] = time.monotonic() - t0

    t0 = time.monotonic()
    trained = (finished_training(work, cfg) if resume else None) or \
        fine_tune(model, dataset, work, cfg, resume=resume)
    stages["fine_tune"] = time.monotonic() - t0
    val_texts = list(dataset.validation["text"])
    (trained.checkpoint / VALIDATION_SAMPLE).write_text(json.dumps(val_texts[:128]))
    console.log(f"fine-tuned: PyTorch validation accuracy {trained.metrics['accuracy']:.4f} "
                f"({trained.steps} steps, stopped by {trained.stopped_by})")

    t0 = time.monotonic()
    torch_model, tokenizer = load_checkpoint(trained.checkpoint)
    fp32, check = export_validated(torch_model, tokenizer, work / "onnx" / "model.fp32.onnx",
                                   val_texts, cfg.max_length, opset, atol)
    stages["export"] = time.monotonic() - t0
    del torch_model

    names = list(modes) if modes else default_modes(profile)
    allowed = [n for n in names if MODES[n].precision in profile.precisions] if not modes else names
    if not allowed:
        raise InputError(f"profile '{profile.name}' allows none of {names} "
                         f"(its precisions: {profile.precisions})")
    t0 = time.monotonic()
    ctx = QuantContext(model_type=_model_type(trained.checkpoint),
                       calibration=calibration_batches(tokenizer, list(dataset.train["text"]),
                                                       cfg.max_length, calibration_samples, cfg.seed))
    built = build_variants(fp32, work / "onnx", allowed, ctx)
    stages["quantize"] = time.monotonic() - t0
    variants = [(name, MODES[name].precision, path, extra) for name, (path, extra) in built.items()]

    labels = np.asarray(dataset.validation["label"])
    candidates: list[Candidate] = []
    t0 = time.monotonic()
    for name, precision, path, settings_extra in variants:
        console.log(f"bench {name} on {profile.name} ...")
        result = bench_onnx(path, tokenizer, profile, val_texts, labels, cfg.max_length, settings)
        candidates.append(check_budget(Candidate(
            name=name, precision=precision, model_path=str(path), accuracy=result.accuracy,
            latency=result.latency, size_mb=result.size_mb, settings=settings_extra), profile))
    stages["bench"] = time.monotonic() - t0
    _note_slower_quantized(candidates)

    min_accuracy = None
    search_log = None
    if search is not None:
        from edgetune.search import run_search

        t0 = time.monotonic()
        reference = next(c for c in candidates if c.name == "fp32").accuracy.accuracy \
            if any(c.name == "fp32" for c in candidates) else trained.metrics["accuracy"]
        min_accuracy = reference - search.max_accuracy_drop / 100.0
        pruned, search_log = run_search(trained.checkpoint, dataset, profile, work / "search",
                                        search, reference, cfg.max_length, settings)
        candidates += pruned
        stages["search"] = time.monotonic() - t0

    selection = choose(candidates, profile, min_accuracy)
    context = {
        "edgetune_version": __version__, "model": model, "data": data,
        "train": trained.to_json(), "pytorch_accuracy": trained.metrics["accuracy"],
        "export_check": check.to_json(), "stage_seconds": {k: round(v, 1) for k, v in stages.items()},
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    if search_log is not None:
        context["search"] = search_log.to_json()
        context["min_accuracy"] = min_accuracy
    for c in candidates:
        bundle = write_bundle(out / "candidates" / c.name, c.model_path, c.checkpoint or trained.checkpoint,
                              _candidate_manifest(c, dataset, cfg.max_length, profile, model,
                                                  trained.metrics["accuracy"], check),
                              overwrite=True)
        c.model_path = str(bundle.model_path)
    best = None
    if selection.winner is not None:
        w = selection.winner
        best = write_bundle(out / "best", w.model_path, w.checkpoint or trained.checkpoint,
                            _candidate_manifest(w, dataset, cfg.max_length, profile, model,
                                                trained.metrics["accuracy"], check),
                            overwrite=True).path
        context["best_bundle"] = str(best)
    elif (out / "best").exists():
        shutil.rmtree(out / "best")  # a stale winner from an earlier run would mislead
    _, report_md = write_report(out, candidates, selection, profile, context)
    result = TuneResult(out, candidates, selection, best, report_md, stages)
    if best is None:
        raise NoCandidateError(selection.reason + f"; report: {report_md}")
    return result


def default_modes(profile: Profile) -> list[str]:
    """The menu `tune` tries on a profile: CPU gets the INT8 family, CUDA gets FP16."""
    if profile.device == "cuda":
        return ["fp32", "optimized-fp32", "fp16", "dynamic-int8"]
    return ["fp32", "optimized-fp32", "dynamic-int8", "dynamic-int8-per-tensor",
            "static-int8-minmax", "static-int8-percentile", "int4"]


def _model_type(checkpoint: Path) -> str:
    return json.loads((checkpoint / "config.json").read_text()).get("model_type", "bert")


def _candidate_manifest(c: Candidate, dataset: TextDataset, max_length: int, profile: Profile,
                        source: str, pytorch_accuracy: float, check) -> dict:
    return _manifest(dataset.label_names, max_length, c.precision, profile, {
        "source": source, "candidate": c.name,
        "metrics": {"accuracy": c.accuracy.to_json(), "latency": c.latency.to_json(),
                    "size_mb": c.size_mb, "pytorch_accuracy": pytorch_accuracy},
        "export_check": check.to_json(), **c.settings})


SLOWER_REASONS = {
    "fp32": "ONNX Runtime already applies these fusions when it loads the plain model "
            "(ORT_ENABLE_ALL), so offline fusion buys nothing here; the gap is noise or kernel choice",
    "int8": "int8 kernels without VNNI (AVX2 u8s8 path) or (de)quantize nodes left between "
            "ops (QDQ static) cost more than the int8 matmuls save at this batch and length",
    "int4": "MatMulNBits unpacks 4-bit weights block by block; on a CPU at small batch that "
            "saves memory and size, not time",
    "fp16": "most CPUs have no fast fp16 matmul, so ONNX Runtime casts back and forth",
}


def _note_slower_quantized(candidates: list[Candidate]) -> None:
    """Never offer a compressed model that is slower than plain fp32 without saying so, and why."""
    fp32 = next((c for c in candidates if c.name == "fp32"), None)
    if fp32 is None:
        return
    for c in candidates:
        if c is not fp32 and c.latency.p90_ms > fp32.latency.p90_ms:
            ratio = c.latency.p90_ms / fp32.latency.p90_ms
            reason = SLOWER_REASONS.get(c.precision, "the compressed graph runs slower kernels here")
            c.notes.append(f"slower than fp32 ({ratio:.2f}x p90): {reason}")
