"""Compression search: pruning configurations x precision modes, measured on the profile.

Recovery training is the expensive part and latency does not depend on the weights, so:
1. probe every pruning configuration's latency on an *untrained* pruned copy (export + the
   precision modes + bench, no training);
2. drop the configurations that cannot meet the budget in any mode;
3. train (distil) the feasible ones, most promising first (see `training_order`),
   measure accuracy on the ONNX models, and stop when the time budget runs out; a
   configuration that prunes at least as much on every axis as one that already broke the
   accuracy bound is skipped.
Every probe and every trained candidate is cached under a hash of (source model, config,
mode, profile, training settings), so a re-run or `--resume` repeats nothing finished. The
students' latency is measured at the end of the run, side by side with every other candidate.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

from edgetune.compress.modes import resolve_modes
from edgetune.compress.pruning import PruneConfig, count_parameters
from edgetune.compress.recover import distill_student, make_student, scoring_batches
from edgetune.console import console
from edgetune.exporter.onnx import load_checkpoint
from edgetune.measure.bench import HOST_WORK, EvalSet
from edgetune.measure.latency import judge
from edgetune.search.budget import fraction_of
from edgetune.search.cache import Cache, ProbeRecord, TrainedRecord, file_digest
from edgetune.search.candidates import CandidateBuilder
from edgetune.search.executor import Known, LocalExecutor, RayExecutor
from edgetune.search.record import Candidate
from edgetune.search.select import within_counted_budget
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


def training_order(
    feasible: list[tuple[PruneConfig, int, bool]], num_layers: int
) -> list[tuple[PruneConfig, int]]:
    """Which feasible configurations are distilled first: those whose probe met the budget
    outright before the marginal ones (which may miss it in the final rounds), then the deeper
    ones (a kept layer is worth more accuracy than its parameters in FFN width or heads: on
    SST-2, L4-F0.75 and L4-H0.5-F0.5 recover to the teacher, L3-F0.5 with as many parameters
    does not), then the larger ones."""
    ordered = sorted(
        feasible, key=lambda item: (not item[2], -(item[0].layers or num_layers), -item[1])
    )
    return [(cfg, params) for cfg, params, _ in ordered]


FIRST_IN_LINE_SHARE = 0.5  # the least share of the minutes left a student trained in turn gets


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
    least half: it is the most promising left (`training_order`), and a split among many rivals
    gave each SST-2 student 5 minutes, too few for any to recover (benchmarks/RESULTS.md); what
    it does not use (it stops at the target) goes to the next."""
    rivals = [c for c in later if not (skip_rule and c.prunes_at_least(cfg, num_layers))]
    share = weight[cfg.name] / (weight[cfg.name] + sum(weight[c.name] for c in rivals))
    return max(share, FIRST_IN_LINE_SHARE) if skip_rule else share


@dataclass
class SearchLog:
    lines: list[str] = field(default_factory=list)
    probes: dict[str, dict[str, float]] = field(default_factory=dict)
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
    target_accuracy: float


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
) -> tuple[list[Candidate], SearchLog]:
    """Pruned candidates measured on the profile (see the module docstring for the order);
    `evaluation`: what the dense candidates were measured on (the modality's validation rows);
    `relative`: a budget that is a fraction of this unpruned candidate's p90 (see probe_latency)."""
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
    probe_key = {
        cfg.name: Cache.key(
            "probe", source, cfg.to_json(), modes_key, profile_key, *relative_key, *where
        )
        for cfg in configs
    }
    mixed = len(where[0]) > 1 if where else False  # agents of different machines

    def on(record: dict) -> str:
        return f" on {record.get('machine') or '?'}" if mixed else ""

    todo = [cfg for cfg in configs if cache.get(probe_key[cfg.name], ProbeRecord) is None]
    log.from_cache += len(configs) - len(todo)
    for cfg, record in executor.map(
        partial(probe_latency, teacher_ref, builder, modes, work, relative), todo, "measure"
    ):
        cache.put(probe_key[cfg.name], record)
    probed: list[tuple[PruneConfig, int, bool]] = []
    for cfg in configs:
        record = cache.get(probe_key[cfg.name], ProbeRecord)
        log.probes[cfg.name] = record["p90_ms"]
        if not record["p90_ms"]:
            broken = "; ".join(next(iter(record.get("over_counted", {}).values()), []))
            log.say(f"probe {cfg.name}: over the profile's counted budget ({broken}) - not trained")
            continue
        best_mode, best_p90 = min(record["p90_ms"].items(), key=lambda kv: kv[1])
        if any(v != "missed" for v in record["verdict"].values()):  # met or marginal
            probed.append((cfg, record["params"], "met" in record["verdict"].values()))
            log.say(
                f"probe {cfg.name}: p90 {best_p90:.2f} ms ({best_mode}{on(record)}) - feasible"
                + (f" (budget {record['budget_ms']:g} ms in its rounds)" if relative else "")
            )
        else:
            log.say(
                f"probe {cfg.name}: p90 {best_p90:.2f} ms ({best_mode}{on(record)}) > budget "
                f"{record.get('budget_ms', profile.latency_budget_ms):g} ms - not trained"
            )

    # 2-3. train the feasible ones, most promising first
    feasible = training_order(probed, num_layers)
    log.say("training order: " + ", ".join(cfg.name for cfg, _ in feasible))
    # Recovery minutes follow how much was pruned: weight = pruned fraction (at least 0.1), split
    # as `recovery_share` says; the minutes a student does not use (it stops once it reaches
    # the bound plus a margin) go to the next.
    params = count_parameters(teacher)
    weight = {cfg.name: max(0.1, 1.0 - kept / params) for cfg, kept in feasible}
    min_accuracy = search.min_accuracy(reference_accuracy)
    job = Student(
        teacher_ref,
        dataset,
        builder,
        modes,
        evaluation,
        scoring_batches(builder.processor, teacher, dataset, recovery),
        search,
        min_accuracy + search.stop_margin / 100,
    )
    key_of = {
        cfg.name: Cache.key(
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
        for cfg, _ in feasible
    }

    broke_bound: list[PruneConfig] = []

    def plan(index: int, cfg: PruneConfig, in_turn: bool):
        """The cached record, a skip, a student's task with its minutes, or None: budget spent.
        In turn, the minutes left are the deadline's; planned up front (side by side), each
        task's minutes come off the deadline as if they ran one after another."""
        nonlocal deadline
        if (record := cache.get(key_of[cfg.name], TrainedRecord)) is not None:
            log.from_cache += 1
            return Known(record)
        worse_than = next((b for b in broke_bound if cfg.prunes_at_least(b, num_layers)), None)
        if worse_than is not None:
            log.say(
                f"skip {cfg.name}: prunes at least as much as {worse_than.name}, which broke "
                "the accuracy bound"
            )
            return Known(None)
        minutes_left = (deadline - time.monotonic()) / 60.0
        if minutes_left < 0.5:
            log.say(f"search budget spent: {cfg.name} and later configurations not trained")
            return None
        later = [c for c, _ in feasible[index + 1 :]]
        share = recovery_share(cfg, later, weight, num_layers, skip_rule=in_turn)
        budget = min(recovery.max_train_minutes or minutes_left, minutes_left * share)
        log.say(
            f"{cfg.name}: recovery budget {budget:.1f} min ({100 * share:.0f} % of the "
            f"{minutes_left:.1f} left); stops early at accuracy {job.target_accuracy:.4f}"
        )
        if not in_turn:
            deadline -= budget * 60.0
        folder = work / "students" / f"{cfg.name}-{key_of[cfg.name][:8]}"  # resumable
        return cfg, folder, recovery.model_copy(update={"max_train_minutes": budget})

    log.say(f"{executor.name}: {executor.policy}")
    candidates: list[Candidate] = []
    trained = executor.schedule([cfg for cfg, _ in feasible], plan, partial(train_student, job))
    for cfg, record, fresh in trained:
        if record is None:  # skipped
            continue
        if fresh:
            cache.put(key_of[cfg.name], record)
            log.trained += 1
        found = [Candidate.from_json(c) for c in record["candidates"]]
        candidates += found
        best = max(c.accuracy.accuracy for c in found)
        log.say(
            f"{cfg.name}: best ONNX accuracy {best:.4f} "
            f"({'within' if best >= min_accuracy else 'outside'} the bound {min_accuracy:.4f})"
        )
        if best < min_accuracy:
            broke_bound.append(cfg)
    return candidates, log
