"""Compression search: pruning configurations x precision modes, measured on the profile.

Recovery training is the expensive part and latency does not depend on the weights, so:
1. probe every pruning configuration's latency on an *untrained* pruned copy (export + the
   precision modes + bench, no training);
2. drop the configurations that cannot meet the budget in any mode;
3. train (distil) the feasible ones in the order `search/frontier.py` gives from what the
   earlier ones showed (a bisection over probe cost; a broken bound closes what prunes more, a
   settled one what costs more; past the grid when the cheapest holds), measure accuracy on the
   ONNX models, and stop when the frontier is resolved or the time budget runs out. Students
   judge their progress on a fixed stratified subset of the validation rows (their final
   accuracy is on all of them) and reuse the first student's batch size and LR.
Every probe and every trained candidate is cached under a hash of (source model, config,
mode, profile, training settings), so a re-run or `--resume` repeats nothing finished. The
students' latency is measured at the end of the run, side by side with every other candidate.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

from pydantic import ValidationError

from edgetune.compress.modes import resolve_modes
from edgetune.compress.pruning import PruneConfig, count_parameters
from edgetune.compress.recover import distill_student, make_student, scoring_batches
from edgetune.console import console
from edgetune.data.labels import evaluation_subset
from edgetune.exporter.onnx import load_checkpoint
from edgetune.measure.bench import HOST_WORK, EvalSet
from edgetune.measure.latency import judge
from edgetune.search.budget import fraction_of
from edgetune.search.cache import Cache, ProbeRecord, TrainedRecord, file_digest
from edgetune.search.candidates import CandidateBuilder
from edgetune.search.executor import Known, LocalExecutor, RayExecutor
from edgetune.search.frontier import Frontier
from edgetune.search.qat import QAT_MODE, needs_qat, quantization_aware
from edgetune.search.record import Candidate
from edgetune.search.select import ALPHA, paired_test, within_counted_budget
from edgetune.search.settings import SearchSettings
from edgetune.train.settings import TrainConfig

RUN_MINUTES = 60.0  # with no --search-budget-minutes: the search takes the rest of an hour-long run
FINAL_MINUTES = 3.0  # kept for the final side-by-side measurement and the bundles


def default_budget_minutes(elapsed_minutes: float) -> float:
    """The search's minutes when none are given: what is left of the hour (at least 10)."""
    return max(10.0, RUN_MINUTES - FINAL_MINUTES - elapsed_minutes)


def default_prune_configs(num_layers: int) -> list[PruneConfig]:
    """A small grid: fewer layers, fewer heads, narrower FFN, and their combinations."""
    keep = sorted({max(1, round(num_layers * f)) for f in (2 / 3, 1 / 2, 1 / 3)}, reverse=True)
    keep = [k for k in keep if k < num_layers]
    configs = [PruneConfig(layers=k) for k in keep]
    configs += [PruneConfig(heads=0.5), PruneConfig(ffn=0.5)]
    configs += [PruneConfig(layers=k, ffn=0.5) for k in keep]
    # the deepest kept count made narrower (between L4-F0.5 and L3-F0.5 in latency on a 6-layer
    # encoder, at least as accurate as L4-F0.5 on SST-2: benchmarks/RESULTS.md), the shallowest
    # made narrower still; with one kept count (a 2-layer model) the two mixes coincide
    configs += (
        [
            PruneConfig(layers=keep[0], ffn=0.75),
            PruneConfig(layers=keep[0], heads=0.5, ffn=0.5),
            PruneConfig(layers=keep[-1], heads=0.5, ffn=0.5),
        ]
        if keep
        else []
    )
    return list({c.name: c for c in configs}.values())


def recovery_share(
    cfg: PruneConfig,
    later: list[PruneConfig],
    weight: dict[str, float],
    num_layers: int,
    skip_rule: bool = True,
) -> float:
    """`cfg`'s share of the minutes left, by weight, against the later configurations that are
    still trained if it breaks the bound (those pruning at least as much would be skipped;
    without `skip_rule`, as in parallel tasks, all of them). Trained in turn, a student gets at
    least its share among the students a bisection over it and its rivals trains (1 + the
    halvings: a half with one rival, a quarter with four to seven): a split by weight among
    many rivals gave each SST-2 student 5 minutes, too few for any to recover, while the
    frontier trains only a few of them (benchmarks/RESULTS.md); what a student does not use (it
    stops at the target) goes to the next."""
    rivals = [c for c in later if not (skip_rule and c.prunes_at_least(cfg, num_layers))]
    share = weight[cfg.name] / (weight[cfg.name] + sum(weight[c.name] for c in rivals))
    return max(share, 1 / (1 + math.ceil(math.log2(1 + len(rivals))))) if skip_rule else share


@dataclass
class SearchLog:
    lines: list[str] = field(default_factory=list)
    probes: dict[str, dict[str, float]] = field(default_factory=dict)
    frontier: list[dict] = field(default_factory=list)  # the order trained, with outcomes
    trained: int = 0
    from_cache: int = 0

    def say(self, line: str) -> None:
        self.lines.append(line)
        console.log(line)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Student:
    """What one student's recovery needs, picklable so a Ray task can take it."""

    teacher: object  # the loaded teacher here, or its checkpoint folder for a remote task
    dataset: object  # adopted by its modality
    builder: CandidateBuilder
    modes: list
    evaluation: EvalSet
    batches: object
    search: SearchSettings
    min_accuracy: float  # the accuracy bound

    @property
    def target_accuracy(self) -> float:
        """Where a student stops early: `stop_margin` points above the bound."""
        return self.min_accuracy + self.search.stop_margin / 100


def significantly_below(candidate: Candidate, reference: Candidate | None) -> bool:
    """`candidate` less accurate than `reference` by the paired test on the same rows."""
    if reference is None:
        return False
    test = paired_test(candidate, reference)
    drop = reference.accuracy.accuracy - candidate.accuracy.accuracy
    return bool(test and test.p_value < ALPHA and drop > 0)


def recovery_choices(record: dict, recovery: TrainConfig) -> dict:
    """The batch size and LR a trained student measured, for the settings `recovery` leaves to
    `auto`: its siblings reuse them (the range tests cost a student minutes, and the students
    of one teacher share the data, the loss and the architecture). Read from a cache record,
    so checked as any setting is; nothing when it does not fit."""
    settings = (record.get("candidates") or [{}])[0].get("settings")
    train = ((settings or {}).get("pruning") or {}).get("train") or {}
    found = {}
    sized = train.get("batch_size")
    if recovery.batch_size == "auto" and isinstance(sized, dict) and sized.get("chosen"):
        found["batch_size"] = sized["chosen"]
    if recovery.learning_rate == "auto" and train.get("learning_rate"):
        found["learning_rate"] = train["learning_rate"]
    try:
        checked = TrainConfig.model_validate({**recovery.model_dump(), **found})
    except (ValidationError, TypeError):
        return {}
    return {key: getattr(checked, key) for key in found}


def _teacher(teacher: object):
    return load_checkpoint(teacher)[0] if isinstance(teacher, (str, Path)) else teacher


def probe_latency(
    teacher: object,
    builder: CandidateBuilder,
    modes: list,
    work: Path,
    relative: tuple[Candidate, float] | None,
    cfg: PruneConfig,
) -> dict:
    """An untrained pruned copy of `cfg`, built in every mode, its latency on the profile.
    With a relative budget (`relative`: the unpruned reference and the fraction), the reference
    is timed in the same rounds and the budget is that fraction of its p90 there, so drift
    since the budget was set does not decide feasibility."""
    with HOST_WORK:  # built one at a time; the measurements may run at once on several agents
        pruned = make_student(_teacher(teacher), cfg, importance="magnitude")
        probes, _ = builder.from_model(pruned.model, work / "probes" / cfg.name, modes, None)
    probes, over = within_counted_budget(probes, builder.profile)  # over a bound: not timed
    if not probes:
        return {"p90_ms": {}, "verdict": {}, "params": pruned.params_after, "over_counted": over}
    reference = [replace(relative[0], name="unpruned reference")] if relative else []
    builder.measure([*probes, *reference], None)
    if relative:
        budget = fraction_of(reference[0].latency.p90_ms, relative[1])
        for probe in probes:
            judge(probe.latency, builder.profile, budget)
    return {
        "p90_ms": {c.name: c.latency.p90_ms for c in probes},
        "verdict": {c.name: c.latency.verdict for c in probes},
        "params": pruned.params_after,
        "machine": probes[0].latency.machine.get("id", ""),  # where: kept apart if agents differ
        "over_counted": over,
        **({"budget_ms": round(budget, 3)} if relative else {}),
    }


def train_student(job: Student, task: tuple[PruneConfig, Path, TrainConfig]) -> dict:
    """One student distilled (resumable in `folder`), built in every mode, accuracy measured."""
    cfg, folder, recovery = task
    teacher = _teacher(job.teacher)
    processor = job.builder.processor
    pruned = make_student(teacher, cfg, job.batches, job.search.importance)
    trained = distill_student(
        pruned,
        processor,
        teacher,
        job.dataset,
        folder,
        recovery,
        resume=True,
        kind=job.search.distillation,
        target_accuracy=job.target_accuracy,
    )
    student, _ = load_checkpoint(trained.checkpoint)
    pruning = {**pruned.to_json(), "distilled": True, "train": trained.to_json()}
    found, _ = job.builder.from_model(
        student,
        folder / "onnx",
        job.modes,
        job.evaluation,
        prefix=f"{cfg.name}+",
        checkpoint=str(trained.checkpoint),
        extra={"pruning": pruning},
    )
    if job.search.qat_share and needs_qat(found, job.min_accuracy):
        found += quantization_aware(job, pruned, student, teacher, folder, recovery, pruning)
    return {"candidates": [c.to_json() for c in found]}


def run_search(
    teacher_checkpoint: Path,
    dataset,
    builder: CandidateBuilder,
    work: Path,
    search: SearchSettings,
    recovery: TrainConfig,
    reference_accuracy: float,
    evaluation: EvalSet,
    executor: LocalExecutor | RayExecutor | None = None,
    relative: tuple[Candidate, float] | None = None,
    reference_model: Candidate | None = None,
    objective: str = "latency",
) -> tuple[list[Candidate], SearchLog]:
    """Pruned candidates measured on the profile (see the module docstring for the order);
    `evaluation`: what the dense candidates were measured on (the modality's validation rows);
    `relative`: a budget that is a fraction of this unpruned candidate's p90 (see probe_latency);
    `reference_model`: the fp32 candidate a student's accuracy is tested against (paired);
    `objective`: what the choice ranks by (the frontier's cost: probe p90, or parameters)."""
    log = SearchLog()
    executor = executor or LocalExecutor()
    cache = Cache(work / "cache")
    teacher, _ = load_checkpoint(teacher_checkpoint)
    teacher_ref = executor.shippable(teacher, str(teacher_checkpoint))
    num_layers = teacher.config.num_hidden_layers
    configs = (
        [PruneConfig.parse(n) for n in search.prune_configs]
        if search.prune_configs
        else default_prune_configs(num_layers)
    )
    modes = resolve_modes(search.modes)
    modes_key = [m.to_json() for m in modes]
    source = file_digest(teacher_checkpoint / "model.safetensors")
    profile = builder.profile
    # students do not depend on the budget; probes do, unless it is relative (then the fraction)
    trained_profile_key = profile.model_dump(exclude={"latency_budget_ms"})
    profile_key = trained_profile_key if relative else profile.model_dump()
    minutes = search.budget_minutes or default_budget_minutes(0.0)
    log.say(f"search budget {minutes:.1f} min")
    deadline = time.monotonic() + minutes * 60.0
    max_length = recovery.max_length

    # 1. latency probes on untrained pruned copies (on Ray: on nodes of the profile)
    relative_key = [file_digest(Path(relative[0].model_path)), relative[1]] if relative else []
    target = builder.settings.target if builder.settings else None
    # on agents: the kinds of machine they are (a live agent of the kind resumes a dead one's)
    where = [list(target.kinds)] if getattr(target, "kinds", None) else []

    def probe_key_of(cfg: PruneConfig) -> str:
        return Cache.key(
            "probe", source, cfg.to_json(), modes_key, profile_key, *relative_key, *where
        )

    mixed = len(where[0]) > 1 if where else False  # agents of different machines

    def on(record: dict) -> str:
        return f" on {record.get('machine') or '?'}" if mixed else ""

    def probe(batch: list[PruneConfig]) -> None:
        """Probe what is not cached yet; offer the feasible ones to the frontier."""
        keys = {cfg.name: probe_key_of(cfg) for cfg in batch}
        todo = [cfg for cfg in batch if cache.get(keys[cfg.name], ProbeRecord) is None]
        log.from_cache += len(batch) - len(todo)
        for cfg, record in executor.map(
            partial(probe_latency, teacher_ref, builder, modes, work, relative), todo, "measure"
        ):
            cache.put(keys[cfg.name], record)
        for cfg in batch:
            record = cache.get(keys[cfg.name], ProbeRecord)
            log.probes[cfg.name] = record["p90_ms"]
            frontier.saw(cfg)
            if not record["p90_ms"]:
                broken = "; ".join(next(iter(record.get("over_counted", {}).values()), []))
                log.say(
                    f"probe {cfg.name}: over the profile's counted budget ({broken}) - not trained"
                )
                continue
            best_mode, best_p90 = min(record["p90_ms"].items(), key=lambda kv: kv[1])
            if any(v != "missed" for v in record["verdict"].values()):  # met or marginal
                cost = record["params"] if objective == "size" else best_p90
                log.say(
                    f"probe {cfg.name}: p90 {best_p90:.2f} ms ({best_mode}{on(record)}) - feasible"
                    + (f" (budget {record['budget_ms']:g} ms in its rounds)" if relative else "")
                )
                if closed := frontier.offer(cfg, cost, record["params"]):
                    log.say(f"skip {cfg.name}: {closed}")
            else:
                log.say(
                    f"probe {cfg.name}: p90 {best_p90:.2f} ms ({best_mode}{on(record)}) > budget "
                    f"{record.get('budget_ms', profile.latency_budget_ms):g} ms - not trained"
                )

    # the default grid is searched (a hold closes dearer configurations, and the search goes past
    # the grid); configurations the user names are all trained unless a broken bound rules
    # them out; the accuracy objective wants the most accurate, so nothing closes on a hold
    frontier = Frontier(
        num_layers, close_dearer=objective != "accuracy" and not search.prune_configs
    )
    probe(configs)

    # 2-3. train the feasible ones in the frontier's order (search/frontier.py)
    params = count_parameters(teacher)
    min_accuracy = search.min_accuracy(reference_accuracy)
    job = Student(
        teacher_ref,
        dataset if search.eval_rows is None else evaluation_subset(dataset, search.eval_rows),
        builder,
        modes,
        evaluation,
        scoring_batches(builder.processor, teacher, dataset, recovery),
        search,
        min_accuracy,
    )

    def key_of(cfg: PruneConfig) -> str:
        return Cache.key(
            "trained",
            source,
            cfg.to_json(),
            modes_key,
            trained_profile_key,
            recovery.model_dump(mode="json"),
            search.importance,
            max_length,
            search.distillation,
        )

    def weight(cfg: PruneConfig) -> float:
        """Recovery minutes follow how much was pruned: the pruned share, at least 0.1."""
        return max(0.1, 1.0 - frontier.points[cfg.name].params / params)

    sibling: dict = {}  # what the first trained student measured: batch size and LR

    def plan(index: int, cfg: PruneConfig, in_turn: bool):
        """The cached record, a student's task with its minutes, or None: budget spent.
        In turn, the minutes left are the deadline's; planned up front (side by side), each
        task's minutes come off the deadline as if they ran one after another."""
        nonlocal deadline
        if (record := cache.get(key_of(cfg), TrainedRecord)) is not None:
            log.from_cache += 1
            return Known(record)
        minutes_left = (deadline - time.monotonic()) / 60.0
        if minutes_left < 0.5:
            log.say(f"search budget spent: {cfg.name} and later configurations not trained")
            return None
        later = frontier.remaining()
        weights = {c.name: weight(c) for c in [cfg, *later]}
        share = recovery_share(cfg, later, weights, num_layers, skip_rule=in_turn)
        budget = min(recovery.max_train_minutes or minutes_left, minutes_left * share)
        log.say(
            f"{cfg.name}: recovery budget {budget:.1f} min ({100 * share:.0f} % of the "
            f"{minutes_left:.1f} left); stops early at accuracy {job.target_accuracy:.4f}"
            + (f"; {sibling['from']}'s batch size and LR" if sibling else "")
        )
        if not in_turn:
            deadline -= budget * 60.0
        folder = work / "students" / f"{cfg.name}-{key_of(cfg)[:8]}"  # resumable
        update = {"max_train_minutes": budget, **sibling.get("settings", {})}
        return cfg, folder, recovery.model_copy(update=update)

    def may_extend(beyond: list[PruneConfig]) -> bool:
        if (deadline - time.monotonic()) / 60.0 < 1.0:
            return False
        log.say("beyond the grid: " + ", ".join(c.name for c in beyond))
        return True

    log.say(f"{executor.name}: {executor.policy}")
    candidates: list[Candidate] = []
    for cfg, record, fresh in executor.schedule(
        frontier.order(probe, may_extend, log.say), plan, partial(train_student, job)
    ):
        if record is None:  # skipped
            continue
        if fresh:
            cache.put(key_of(cfg), record)
            log.trained += 1
        found = [Candidate.from_json(c) for c in record["candidates"]]
        candidates += found
        for c in (c for c in found if c.name.endswith("+" + QAT_MODE)):
            log.say(
                f"{cfg.name}: its static INT8 broke the bound; quantization-aware recovery "
                f"({search.qat_share:.0%} more of its budget) gave {c.accuracy.accuracy:.4f}"
            )
        best = max(found, key=lambda c: c.accuracy.accuracy)
        held = best.accuracy.accuracy >= min_accuracy
        settled = held and not significantly_below(best, reference_model)
        log.say(
            f"{cfg.name}: best ONNX accuracy {best.accuracy.accuracy:.4f} "
            f"({'within' if held else 'outside'} the bound {min_accuracy:.4f}"
            + (", significantly below the reference" if held and not settled else "")
            + ")"
        )
        for name, why in frontier.record(cfg, held, settled).items():
            log.say(f"skip {name}: {why}")
        if not sibling and recovery_choices(record, recovery):
            sibling.update(settings=recovery_choices(record, recovery), **{"from": cfg.name})
    log.frontier = frontier.history
    return candidates, log
