"""`tune` as named stages over one run state: each stage reads what the earlier ones left in
`RunState` and adds its own part; `run_stages` times them (`stage_seconds` in the report).

data -> fine_tune -> compress_and_accuracy -> repair_quantization (static INT8 that lost more
than the bound: a mixed-precision variant) -> search (with --prune-search) -> trim_vocabulary
(text candidates over the size limit: a variant with the used tokens' embeddings) -> latency ->
choose -> session_tuning (the winner's ONNX Runtime settings, with --tune-session) -> bundles
-> loadtest (with --loadtest, for modalities served over HTTP).
"""

from __future__ import annotations

import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from edgetune._version import __version__
from edgetune.compress.modes import Mode, resolve_modes
from edgetune.compress.passes import PassContext
from edgetune.config import RECIPE_NAME, TuneConfig, write_recipe
from edgetune.console import console
from edgetune.deploy.bundle import write_bundle
from edgetune.deploy.manifest import candidate_manifest
from edgetune.errors import EdgetuneError, InputError
from edgetune.exporter.onnx import load_checkpoint
from edgetune.jobs.common import accuracy_agents
from edgetune.measure.bench import EvalSet
from edgetune.measure.front_end import time_front_end
from edgetune.measure.latency import LatencySettings
from edgetune.measure.tuning import SessionTuning, measure_settings, tune_session
from edgetune.modality import Modality, Prepared
from edgetune.profiles import Profile
from edgetune.search.budget import relative_budget
from edgetune.search.candidates import CandidateBuilder
from edgetune.search.notes import note_slower_than_fp32
from edgetune.search.record import Candidate
from edgetune.search.select import Selection, choose, count_agreement, within_counted_budget


@dataclass
class RunState:
    """Everything one `tune` run knows, filled in stage by stage."""

    config: TuneConfig
    profile: Profile  # a relative budget replaces it with the measured one
    modes: list[Mode]
    out: Path
    modality: Modality
    train: object  # TrainConfig
    settings: LatencySettings  # how long and where (here, or the profile's agents)
    started: float = field(default_factory=time.monotonic)
    stages: dict[str, float] = field(default_factory=dict)
    dataset: object = None
    recipe: Path | None = None
    trained: object = None  # TrainResult
    prepared: Prepared | None = None
    builder: CandidateBuilder | None = None
    evaluation: EvalSet | None = None
    candidates: list[Candidate] = field(default_factory=list)
    check: object = None  # the fp32 export's ExportCheck
    relative: tuple[Candidate, float] | None = None
    min_accuracy: float | None = None
    search_log: object = None
    selection: Selection | None = None
    over_counted: dict[str, list[str]] = field(default_factory=dict)  # untimed: what each broke
    front_end: dict | None = None  # the work before the model, timed here (`measure/front_end`)
    context: dict = field(default_factory=dict)
    tuning: SessionTuning | None = None  # the winner's session settings (--tune-session)
    best: Path | None = None

    @property
    def work(self) -> Path:
        return self.out / "work"


def load_data(state: RunState) -> None:
    config = state.config
    dataset = state.modality.load_data(config, state.train.seed, config.model)
    console.log(
        f"data: {len(dataset.train)} train / {len(dataset.validation)} validation, "
        f"{dataset.num_labels} labels {dataset.label_names[:8]}"
    )
    for reason, count in dataset.dropped.items():
        console.log(f"data: left out {count} row(s): {reason}")
    if config.overwrite and not config.resume and state.out.exists():
        shutil.rmtree(state.work, ignore_errors=True)
    state.dataset = dataset
    state.recipe = write_recipe(config, state.out / RECIPE_NAME)


def fine_tune_model(state: RunState) -> None:
    from edgetune.train.loop import fine_tune, finished_training

    config, work = state.config, state.work
    trained = (finished_training(work, state.train) if config.resume else None) or fine_tune(
        config.model, state.dataset, work, state.train, resume=config.resume
    )
    if (work / "lr_find.png").is_file():  # the range test's curve, beside the report
        shutil.copy2(work / "lr_find.png", state.out / "lr_find.png")
    state.modality.keep_sample(trained.checkpoint, state.dataset)  # what `export` checks on
    console.log(
        f"fine-tuned: PyTorch validation accuracy {trained.metrics['accuracy']:.4f} "
        f"({trained.steps} steps, stopped by {trained.stopped_by})"
    )
    state.trained = trained


def build_candidates(state: RunState) -> None:
    """The fine-tuned model exported and checked, every mode built, accuracy on each ONNX."""
    config, modality, dataset = state.config, state.modality, state.dataset
    model, processor = load_checkpoint(state.trained.checkpoint, trust_factory=config.model)
    prepared = modality.prepare(model, processor, state.profile, state.train.max_length)
    ctx = PassContext(model_type=model.config.model_type, range_cache=state.work / "ranges")
    searched = resolve_modes(config.search.modes) if config.search.enabled else []
    if any(m.needs_calibration for m in [*state.modes, *searched]):  # students' too
        samples, seed = config.calibration_samples, state.train.seed
        ctx.calibration = modality.calibration(dataset, prepared, samples, seed)
    state.builder = CandidateBuilder(
        state.profile,
        prepared.processor,
        ctx,
        state.settings,
        config.opset,
        config.atol,
        modality.latency_feed(dataset, prepared, state.profile),
        skip_inapplicable=config.modes is None,
        check_batches=modality.check_batches(dataset, prepared),
        accuracy_on=accuracy_agents(config, state.settings.target),
        max_length=prepared.input_size,
    )
    state.prepared = prepared
    state.evaluation = modality.evaluation(dataset, prepared)
    state.candidates, state.check = state.builder.from_model(
        model,
        state.work / "onnx",
        state.modes,
        state.evaluation,
        checkpoint=str(state.trained.checkpoint),
    )


SENSITIVITY_BATCHES = 4  # calibration batches the nodes are ranked on (32 rows at batch 8)


def repair_quantization(state: RunState) -> None:
    """Static INT8 candidates that lost more than the bound get a mixed-precision variant, their
    most sensitive nodes kept in fp32 (`search/mixed.py`), built and scored like the others."""
    from edgetune.compress.onnx_passes import prepare_for_static
    from edgetune.compress.sensitivity import rank_nodes
    from edgetune.search.mixed import loss_against, repair

    reference = next((c for c in state.candidates if c.name == "fp32" and c.accuracy), None)
    bound = state.config.search.max_accuracy_drop
    broken = [
        c
        for c in state.candidates
        if reference and c.accuracy and _static_mode(c) and loss_against(reference, c).breaks(bound)
    ]
    if not broken:
        return
    onnx_dir = state.work / "onnx"
    prepared = prepare_for_static(Path(reference.model_path), onnx_dir / "fp32.prepared.onnx")
    batches = state.builder.ctx.calibration[:SENSITIVITY_BATCHES]
    for c in broken:
        ranked = rank_nodes(prepared, Path(c.model_path), batches)
        c.stats["sensitivity"] = [n.to_json() for n in ranked[:10]]
        build = partial(_keep_fp32_variant, state, _static_mode(c), Path(reference.model_path))
        fixed = repair(c, reference, bound, ranked, build)
        console.log(f"{c.name}: {c.notes[-1]}")
        if fixed is not None:
            state.candidates.insert(state.candidates.index(c) + 1, fixed)
    prepared.unlink(missing_ok=True)


def _static_mode(c: Candidate) -> Mode | None:
    """The preset static INT8 mode `c` was built with (None: another kind of candidate)."""
    from edgetune.compress.modes import MODES

    mode = MODES.get(c.settings.get("mode", ""))
    return mode if mode and mode.steps and mode.steps[-1].pass_name == "static-int8" else None


def _keep_fp32_variant(
    state: RunState, mode: Mode, fp32: Path, nodes: list[str], k: int
) -> Candidate:
    from edgetune.compress.passes import Step

    last = mode.steps[-1]
    step = Step(last.pass_name, last.config.model_copy(update={"keep_fp32": tuple(nodes)}))
    variant = Mode(
        f"{mode.name}+keep-fp32-{k}",
        (*mode.steps[:-1], step),
        f"{mode.description}, its {k} most sensitive nodes in fp32",
    )
    built = state.builder.build(fp32, [variant], state.work / "onnx", state.evaluation)
    return built[0]


def search_pruned(state: RunState) -> None:
    """Pruned students (`--prune-search`), through the same builder as the dense menu."""
    from edgetune.search.executor import make_executor
    from edgetune.search.pruning import default_budget_minutes, run_search

    config, train = state.config, state.train
    if config.relative_budget is not None:  # the search's probes need the budget now
        state.profile, base = relative_budget(
            state.builder, state.candidates, state.evaluation, config.relative_budget
        )
        state.relative = (base, config.relative_budget)
    fp32 = next((c for c in state.candidates if c.name == "fp32"), None)
    reference = fp32.accuracy.accuracy if fp32 else state.trained.metrics["accuracy"]
    state.min_accuracy = config.search.min_accuracy(reference)
    recovery = train.model_copy(
        update={
            "max_train_minutes": config.search.recovery_minutes,
            "learning_rate": config.search.recovery_lr or train.learning_rate,
        }
    )
    elapsed = (time.monotonic() - state.started) / 60
    budget = config.search.budget_minutes or default_budget_minutes(elapsed)
    search = config.search.model_copy(update={"budget_minutes": budget})
    agents = getattr(state.settings.target, "size", 1)  # agents measure probes at once
    executor = make_executor(search.executor, search.ray_address, state.profile.name, agents)
    pruned, state.search_log = run_search(
        state.trained.checkpoint,
        state.dataset,
        state.builder,
        state.work / "search",
        search,
        recovery,
        reference,
        state.evaluation,
        executor,
        state.relative,
        reference_model=fp32,
        objective=config.objective,
    )
    state.candidates += pruned


def trim_vocabulary(state: RunState) -> None:
    """Text models: candidates over the size limit (or all, with `trim_vocab = "on"`) get a
    variant keeping the word embeddings of the tokens the training text uses (`search/trim.py`)."""
    from edgetune.search.trim import to_trim, trimmed_variant

    setting = state.config.trim_vocab
    targets = to_trim(state.candidates, state.profile, setting)
    if not targets:
        return
    use = state.modality.vocabulary(state.dataset, state.prepared)
    if use is None:
        why = "this model has no vocabulary to trim (or no unknown token to map others to)"
        if setting == "on":
            raise InputError(f"--trim-vocab on: {why}; leave it at auto or off")
        console.log(f"vocabulary trimming: {why}")
        return
    state.builder.ctx.vocabulary = use
    for c in targets:
        variant = trimmed_variant(c, state.builder, state.evaluation, state.config.vocab_reserve)
        kept = variant.settings["vocabulary"]
        console.log(
            f"{variant.name}: {kept['kept']} of {kept['size']} tokens kept, {variant.size_mb:.2f} "
            f"MB (was {c.size_mb:.2f}), ONNX accuracy {variant.accuracy.accuracy:.4f} "
            f"(was {c.accuracy.accuracy:.4f})"
        )
        state.candidates.insert(state.candidates.index(c) + 1, variant)


def measure_latency(state: RunState) -> None:
    """All candidates side by side, the search's too; a relative budget from the same rounds.
    Candidates over one of the profile's counted bounds are dropped first, untimed."""
    state.candidates, state.over_counted = within_counted_budget(state.candidates, state.profile)
    for name, broken in state.over_counted.items():
        console.log(f"{name}: over the profile's counted budget ({'; '.join(broken)}): not timed")
    if not state.candidates:
        raise InputError(
            f"every candidate is over the profile's counted budget (e.g. "
            f"{'; '.join(next(iter(state.over_counted.values())))}): raise the profile's bound "
            "or prune (--prune-search)"
        )
    state.builder.measure(state.candidates, state.evaluation)
    if state.settings.target is None:  # the front end runs here: not timed beside agents' times
        front_end = state.modality.front_end(state.dataset, state.prepared, state.profile)
        state.front_end = time_front_end(front_end) if front_end is not None else None
    if state.config.relative_budget is not None:
        state.profile, _ = relative_budget(
            state.builder, state.candidates, None, state.config.relative_budget
        )


def choose_model(state: RunState) -> None:
    config, trained = state.config, state.trained
    note_slower_than_fp32(state.candidates)
    state.selection = choose(state.candidates, state.profile, state.min_accuracy, config.objective)
    state.context = {
        "edgetune_version": __version__,
        "model": config.model,
        "data": config.data,
        "dropped_rows": state.dataset.dropped,
        "recipe": str(state.recipe),
        "train": trained.to_json(),
        "pytorch_accuracy": trained.metrics["accuracy"],
        "export_check": state.check.to_json(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    state.context["counted"] = {
        **count_agreement(state.candidates, state.profile),
        "over_budget": state.over_counted,
    }
    if state.front_end:
        state.context["front_end"] = state.front_end
    if state.search_log is not None:
        state.context["search"] = state.search_log.to_json()
        state.context["min_accuracy"] = state.min_accuracy


def tune_session_settings(state: RunState) -> None:
    """The chosen model's session settings, timed where its latency was (`measure/tuning.py`)."""
    winner, builder, evaluation = state.selection.winner, state.builder, state.evaluation
    subject = builder.subject(winner.name, Path(winner.model_path))
    texts = evaluation.texts if evaluation else None
    measured = measure_settings(subject, state.profile, texts, builder.settings)
    state.tuning = tune_session(state.profile, measured)
    console.log(f"session settings: {state.tuning.reason}")
    state.context["session_tuning"] = state.tuning.to_json()


def _manifest(state: RunState, c: Candidate, tuned: SessionTuning | None = None):
    trained = state.trained
    metrics = {
        "accuracy": c.accuracy.to_json(),
        "latency": c.latency.to_json(),
        "size_mb": c.size_mb,
        "pytorch_accuracy": trained.metrics["accuracy"],
    }
    return candidate_manifest(
        state.dataset.label_names,
        state.prepared.input_size,
        c.precision,
        state.profile,
        c.settings,
        source=state.config.model,
        candidate=c.name,
        metrics=metrics,
        export_check=state.check.to_json(),
        task=state.modality.task(state.dataset),
        session=tuned.chosen if tuned else None,
        session_tuning=tuned.summary() if tuned else None,
    )


def write_bundles(state: RunState) -> None:
    """A bundle per candidate, and the winner's as `best` (a stale `best` removed)."""
    out, fallback = state.out, state.trained.checkpoint
    for c in state.candidates:
        path = out / "candidates" / c.name
        bundle = write_bundle(
            path, c.model_path, c.checkpoint or fallback, _manifest(state, c), overwrite=True
        )
        c.model_path = str(bundle.model_path)
    winner = state.selection.winner
    if winner is not None:
        checkpoint = winner.checkpoint or fallback
        manifest = _manifest(state, winner, state.tuning)
        state.best = write_bundle(
            out / "best", winner.model_path, checkpoint, manifest, overwrite=True
        ).path
        state.context["best_bundle"] = str(state.best)
    elif (out / "best").exists():
        shutil.rmtree(out / "best")  # a stale winner from an earlier run would mislead


def load_test(state: RunState) -> None:
    from edgetune.jobs.loadtest import load_test_bundle

    inputs = state.modality.loadtest_inputs(state.dataset)
    try:
        state.context["loadtest"] = load_test_bundle(state.best, state.out / "loadtest", inputs)
    except EdgetuneError as exc:  # the bundle and the report still matter more
        state.context["loadtest_failed"] = str(exc)
        console.log(f"load test failed: {exc}")


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[RunState], None]
    when: Callable[[RunState], bool] = lambda state: True
    timed: bool = True  # in `stage_seconds`


STAGES = (
    Stage("data", load_data),
    Stage("fine_tune", fine_tune_model),
    Stage("compress_and_accuracy", build_candidates),
    Stage("repair_quantization", repair_quantization),
    Stage("search", search_pruned, lambda s: s.config.search.enabled),
    Stage("trim_vocabulary", trim_vocabulary, lambda s: s.config.trim_vocab != "off"),
    Stage("latency", measure_latency),
    Stage("choose", choose_model, timed=False),
    Stage(
        "session_tuning",
        tune_session_settings,
        lambda s: s.config.tune_session and s.selection.winner is not None,
    ),
    Stage("bundles", write_bundles, timed=False),
    Stage(
        "loadtest",
        load_test,
        lambda s: (
            bool(s.config.loadtest)
            and s.best is not None
            and s.modality.loadtest_inputs(s.dataset) is not None
        ),
    ),
)


def run_stages(state: RunState, stages: tuple[Stage, ...] = STAGES) -> RunState:
    for stage in stages:
        if not stage.when(state):
            continue
        t0 = time.monotonic()
        stage.run(state)
        if stage.timed:
            state.stages[stage.name] = time.monotonic() - t0
    return state
