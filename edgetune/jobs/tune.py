"""`edgetune tune`: data -> fine-tune -> export + check -> passes -> bench -> choose -> bundle.

Each candidate goes through the one `CandidateBuilder`; the pruning search (optional) adds
its candidates through the same builder. The resolved recipe is written first, so a run
stopped at any point can be repeated with `--config OUT/recipe.toml`.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgetune._version import __version__
from edgetune.compress.modes import Mode, default_modes, resolve_modes, unfused
from edgetune.compress.passes import PassContext
from edgetune.config import RECIPE_NAME, TuneConfig, write_recipe
from edgetune.console import console
from edgetune.defaults import default_data, default_model
from edgetune.deploy.bundle import write_bundle
from edgetune.deploy.manifest import candidate_manifest
from edgetune.deploy.report import write_report
from edgetune.errors import EdgetuneError, InputError, NoCandidate
from edgetune.exporter.onnx import load_checkpoint
from edgetune.fsutil import check_output_dir, run_lock
from edgetune.jobs.common import VALIDATION_SAMPLE, accuracy_agents, measuring_agents
from edgetune.jobs.inputs import RunInputs, check_image_profile, image_settings
from edgetune.measure.latency import LatencySettings
from edgetune.measure.session import check_providers
from edgetune.profiles import Profile, available_profiles, load_profile
from edgetune.search.budget import relative_budget
from edgetune.search.candidates import CandidateBuilder
from edgetune.search.notes import note_slower_than_fp32
from edgetune.search.record import Candidate
from edgetune.search.select import Selection, choose
from edgetune.train.distributed import is_main_process
from edgetune.train.sources import check_model_source, check_trainable, is_image_model


@dataclass
class TuneResult:
    out_dir: Path
    candidates: list[Candidate]
    selection: Selection
    best_bundle: Path | None
    report_md: Path
    recipe: Path
    profile: Profile
    stage_seconds: dict[str, float] = field(default_factory=dict)


def resolve(config: TuneConfig) -> TuneConfig:
    """Fill in the demo model and data where not given, and make local paths absolute, so
    the written recipe stands alone wherever it is run from."""
    model, data = config.model or default_model(), config.data or default_data()
    if model is None or data is None:
        missing = "--model" if model is None else "--data"
        raise InputError(
            f"{missing} not given and the demo defaults are not installed "
            "(pip install 'edgetune[demo]')"
        )
    local = {
        k: str(Path(v).resolve())
        for k, v in (("model", model), ("data", data), ("profile", config.profile))
        if Path(v).exists() and not (k == "profile" and v in available_profiles())
    }
    return config.model_copy(update={"model": model, "data": data, **local})


def tune(config: TuneConfig, settings: LatencySettings | None = None) -> TuneResult | None:
    """Raises `NoCandidate` (carrying the `TuneResult`) when nothing meets the budget.
    Checks the profile, the output folder, the model and the data before any training, and
    holds the run folder's lock until it returns. Under `torchrun`/`accelerate launch` the
    other processes only take part in training and return None."""
    config = resolve(config)
    profile = load_profile(config.profile, config.latency_budget_ms)
    if not is_main_process():  # under torchrun/accelerate: train data-parallel, write nothing
        return _train_only(config, profile)
    check_providers(profile)  # before hours of training, not after
    out = Path(config.out)
    if not config.resume:
        check_output_dir(out, config.overwrite)
    modes = resolve_modes(config.modes) or default_modes(profile.device, profile.precisions)
    if not modes:
        raise InputError(
            f"profile '{profile.name}' allows no mode (its precisions: {profile.precisions})"
        )
    resolve_modes(config.search.modes)
    if config.search.enabled and config.search.prune_configs:
        from edgetune.compress.pruning import PruneConfig

        [PruneConfig.parse(name) for name in config.search.prune_configs]  # bad names fail now
    if config.loadtest:
        from edgetune.jobs.serve import server_stack

        server_stack()  # `--loadtest` without the serve extra: say so before training
    if settings is None:
        settings = LatencySettings(
            rounds=config.latency_rounds,
            max_rounds=config.max_rounds,
            min_seconds=profile.measure_seconds,
            target=measuring_agents(config, profile),  # wrong agents are said before training
        )
    accuracy_agents(config, settings.target)  # refused now, not after training
    with run_lock(out, config.force_unlock, take_stale=config.resume):
        return _tune(config, profile, modes, out, settings)


def _tune(
    config: TuneConfig,
    profile: Profile,
    modes: list[Mode],
    out: Path,
    settings: LatencySettings,
) -> TuneResult:
    from edgetune.train.loop import fine_tune, finished_training

    cfg = train_settings(config, profile)
    stages: dict[str, float] = {}
    started = t0 = time.monotonic()
    images = is_image_model(config.model)
    if not (config.resume and finished_training(out / "work", cfg)):
        check_model_source(config.model, images)
    modes = _modes_for_family(config, modes, check_trainable(config.model, images))  # resumed too
    if images:
        check_image_profile(config.model, profile)  # before training
    inputs = RunInputs.load(config, cfg.seed)
    dataset = inputs.dataset
    console.log(
        f"data: {len(dataset.train)} train / {len(dataset.validation)} validation, "
        f"{dataset.num_labels} labels {dataset.label_names[:8]}"
    )
    for reason, count in dataset.dropped.items():
        console.log(f"data: left out {count} row(s): {reason}")
    work = out / "work"
    if config.overwrite and not config.resume and out.exists():
        shutil.rmtree(work, ignore_errors=True)
    recipe = write_recipe(config, out / RECIPE_NAME)
    stages["data"] = time.monotonic() - t0

    t0 = time.monotonic()
    trained = (finished_training(work, cfg) if config.resume else None) or fine_tune(
        config.model, dataset, work, cfg, resume=config.resume
    )
    stages["fine_tune"] = time.monotonic() - t0
    if (work / "lr_find.png").is_file():  # the range test's curve, beside the report
        shutil.copy2(work / "lr_find.png", out / "lr_find.png")
    val_texts = inputs.validation_texts()
    if inputs.kind == "text":  # what `export` checks on and `serve` times batches with
        (trained.checkpoint / VALIDATION_SAMPLE).write_text(json.dumps(val_texts[:128]))
    console.log(
        f"fine-tuned: PyTorch validation accuracy {trained.metrics['accuracy']:.4f} "
        f"({trained.steps} steps, stopped by {trained.stopped_by})"
    )

    t0 = time.monotonic()
    torch_model, tokenizer = load_checkpoint(trained.checkpoint, trust_factory=config.model)
    channels, max_length = 3, cfg.max_length
    if inputs.kind == "image":  # the processor at the profile's size; max_length = the image side
        tokenizer, channels, max_length = image_settings(torch_model, tokenizer, profile)
    ctx = PassContext(model_type=torch_model.config.model_type)
    if any(m.needs_calibration for m in modes):
        ctx.calibration = inputs.calibration(
            tokenizer, cfg.max_length, config.calibration_samples, cfg.seed, channels
        )
    builder = CandidateBuilder(
        profile,
        tokenizer,
        ctx,
        settings,
        config.opset,
        config.atol,
        inputs.latency_feed(tokenizer, profile, channels),
        skip_inapplicable=config.modes is None,
        accuracy_on=accuracy_agents(config, settings.target),
    )
    evaluation = inputs.evaluation(tokenizer, max_length, channels)
    candidates, check = builder.from_model(
        torch_model, work / "onnx", modes, evaluation, checkpoint=str(trained.checkpoint)
    )
    del torch_model
    stages["compress_and_accuracy"] = time.monotonic() - t0

    relative = None
    if config.relative_budget is not None and config.search.enabled:  # the search needs it now
        profile, base = relative_budget(builder, candidates, evaluation, config.relative_budget)
        relative = (base, config.relative_budget)
    min_accuracy = search_log = None
    if config.search.enabled:
        from edgetune.search.executor import make_executor
        from edgetune.search.pruning import default_budget_minutes, run_search

        t0 = time.monotonic()
        fp32 = next((c for c in candidates if c.name == "fp32"), None)
        reference = fp32.accuracy.accuracy if fp32 else trained.metrics["accuracy"]
        min_accuracy = reference - config.search.max_accuracy_drop / 100.0
        recovery = cfg.model_copy(
            update={
                "max_train_minutes": config.search.recovery_minutes,
                "learning_rate": config.search.recovery_lr or cfg.learning_rate,
            }
        )
        executor = make_executor(
            config.search.executor,
            config.search.ray_address,
            profile.name,
            getattr(settings.target, "size", 1),  # agents measure probes at once
        )
        search = config.search.model_copy(
            update={
                "budget_minutes": config.search.budget_minutes
                or default_budget_minutes((t0 - started) / 60)
            }
        )
        pruned, search_log = run_search(
            trained.checkpoint,
            dataset,
            builder,
            work / "search",
            search,
            recovery,
            reference,
            executor,
            evaluation,
            relative,
        )
        candidates += pruned
        stages["search"] = time.monotonic() - t0

    t0 = time.monotonic()
    builder.measure(candidates, evaluation)  # all of them side by side, the search's too
    if config.relative_budget is not None:  # the budget follows the same rounds as the rest
        profile, _ = relative_budget(builder, candidates, None, config.relative_budget)
    stages["latency"] = time.monotonic() - t0
    note_slower_than_fp32(candidates)
    selection = choose(candidates, profile, min_accuracy, config.objective)
    context = {
        "edgetune_version": __version__,
        "model": config.model,
        "data": config.data,
        "dropped_rows": dataset.dropped,
        "recipe": str(recipe),
        "train": trained.to_json(),
        "pytorch_accuracy": trained.metrics["accuracy"],
        "export_check": check.to_json(),
        "stage_seconds": {k: round(v, 1) for k, v in stages.items()},
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    if search_log is not None:
        context["search"] = search_log.to_json()
        context["min_accuracy"] = min_accuracy

    task = inputs.task

    def manifest(c: Candidate):
        metrics = {
            "accuracy": c.accuracy.to_json(),
            "latency": c.latency.to_json(),
            "size_mb": c.size_mb,
            "pytorch_accuracy": trained.metrics["accuracy"],
        }
        return candidate_manifest(
            dataset.label_names,
            max_length,
            c.precision,
            profile,
            c.settings,
            source=config.model,
            candidate=c.name,
            metrics=metrics,
            export_check=check.to_json(),
            task=task,
        )

    for c in candidates:
        bundle = write_bundle(
            out / "candidates" / c.name,
            c.model_path,
            c.checkpoint or trained.checkpoint,
            manifest(c),
            overwrite=True,
        )
        c.model_path = str(bundle.model_path)
    best = None
    if selection.winner is not None:
        w = selection.winner
        best = write_bundle(
            out / "best",
            w.model_path,
            w.checkpoint or trained.checkpoint,
            manifest(w),
            overwrite=True,
        ).path
        context["best_bundle"] = str(best)
    elif (out / "best").exists():
        shutil.rmtree(out / "best")  # a stale winner from an earlier run would mislead
    if config.loadtest and best is not None and inputs.kind == "text":
        from edgetune.jobs.loadtest import load_test_bundle

        t0 = time.monotonic()
        try:
            context["loadtest"] = load_test_bundle(best, out / "loadtest", val_texts)
        except EdgetuneError as exc:  # the bundle and the report still matter more
            context["loadtest_failed"] = str(exc)
            console.log(f"load test failed: {exc}")
        stages["loadtest"] = time.monotonic() - t0
    _, report_md = write_report(out, candidates, selection, profile, context)
    result = TuneResult(out, candidates, selection, best, report_md, recipe, profile, stages)
    if best is None:
        raise NoCandidate(selection.reason + f"; report: {report_md}", result)
    return result


SEARCH_TRAIN_MINUTES = 20.0  # fine-tuning's cap with --prune-search: the whole run ~ an hour


def _modes_for_family(config: TuneConfig, modes: list[Mode], model_type: str) -> list[Mode]:
    """Before training: a family the asked-for steps cannot handle is refused now, and the
    default menu leaves out the graph-fusion modes for a family ONNX Runtime has no recipe for."""
    from edgetune.compress.families import FAMILIES
    from edgetune.compress.onnx_passes import has_fusion_recipe, ort_model_type

    if config.search.enabled and model_type not in FAMILIES:
        raise InputError(
            f"prune search: the {model_type} family is not supported for structured "
            f"pruning (supported: {', '.join(sorted(FAMILIES))})"
        )
    fused = [m for m in modes if any(s.pass_name == "ort-fusion" for s in m.steps)]
    if not fused or has_fusion_recipe(model_type):
        return modes
    if config.modes:
        ort_model_type(model_type)  # asked for by name: the one-line refusal
    kept = [unfused(m, model_type) if m in fused else m for m in modes]
    kept = [m for m in kept if m.steps or m.name == "fp32"]  # optimized-fp32 unfused is fp32
    console.log(
        f"modes: ONNX Runtime has no fusion recipe for the {model_type} family: "
        f"{', '.join(m.name for m in fused)} built without graph fusion"
        + (
            " (optimized-fp32 left out: it would be fp32)"
            if any(m.name == "optimized-fp32" for m in fused)
            else ""
        )
    )
    return kept


def train_settings(config: TuneConfig, profile: Profile):
    """The fine-tuning settings: the profile's sequence length where unset, and with
    `--prune-search` and no `--max-train-minutes`, a 20-minute cap, so that fine-tuning, the
    search (the rest of the hour) and the bundles fit in about an hour (the schedule is fitted
    to the cap)."""
    cfg = config.train.for_length(profile.sequence_length)
    if profile.image_size and cfg.image_size is None:
        cfg = cfg.model_copy(update={"image_size": profile.image_size})
    if config.search.enabled and cfg.max_train_minutes is None:
        cfg = cfg.model_copy(update={"max_train_minutes": SEARCH_TRAIN_MINUTES})
    return cfg


def _train_only(config: TuneConfig, profile: Profile) -> None:
    """A non-main process of a data-parallel run: the same data and training, no writes."""
    from edgetune.train.loop import fine_tune, finished_training

    cfg = train_settings(config, profile)
    work = Path(config.out) / "work"
    if config.resume and finished_training(work, cfg):
        return
    fine_tune(
        config.model, RunInputs.load(config, cfg.seed).dataset, work, cfg, resume=config.resume
    )
