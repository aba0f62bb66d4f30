"""Compression search: pruning configurations x precision modes, measured on the profile.

Recovery training is the expensive part and latency does not depend on the weights, so:
1. probe every pruning configuration's latency on an *untrained* pruned copy (export + the
   precision modes + bench, no training);
2. drop the configurations that cannot meet the budget in any mode;
3. train (distil) the feasible ones, least pruned (most parameters, most promising) first,
   measure accuracy on the ONNX models, and stop when the time budget runs out; a
   configuration that prunes at least as much on every axis as one that already broke the
   accuracy bound is skipped.
Every probe and every trained candidate is cached under a hash of (source model, config,
mode, profile, training settings), so a re-run or `--resume` repeats nothing finished. The
students' latency is measured at the end of the run, side by side with every other candidate.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgetune.compress.modes import resolve_modes
from edgetune.compress.pruning import PruneConfig, count_parameters
from edgetune.compress.recover import distill_student, make_student, scoring_batches
from edgetune.config import SearchSettings
from edgetune.console import console
from edgetune.data.text import TextDataset
from edgetune.exporter.onnx import load_checkpoint
from edgetune.measure.bench import EvalSet
from edgetune.search.cache import Cache, file_digest
from edgetune.search.candidates import CandidateBuilder
from edgetune.search.record import Candidate
from edgetune.train.settings import TrainConfig


def default_prune_configs(num_layers: int) -> list[PruneConfig]:
    """A small grid: fewer layers, fewer heads, narrower FFN, and their combinations."""
    keep = sorted({max(1, round(num_layers * f)) for f in (2 / 3, 1 / 2, 1 / 3)}, reverse=True)
    keep = [k for k in keep if k < num_layers]
    configs = [PruneConfig(layers=k) for k in keep]
    configs += [PruneConfig(heads=0.5), PruneConfig(ffn=0.5)]
    configs += [PruneConfig(layers=k, ffn=0.5) for k in keep]
    configs += [PruneConfig(layers=keep[-1], heads=0.5, ffn=0.5)] if keep else []
    return configs


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


def run_search(teacher_checkpoint: Path, dataset: TextDataset, builder: CandidateBuilder,
               work: Path, search: SearchSettings, recovery: TrainConfig,
               reference_accuracy: float) -> tuple[list[Candidate], SearchLog]:
    """Pruned candidates measured on the profile (see the module docstring for the order)."""
    log = SearchLog()
    cache = Cache(work / "cache")
    teacher, tokenizer = load_checkpoint(teacher_checkpoint)
    num_layers = teacher.config.num_hidden_layers
    configs = ([PruneConfig.parse(n) for n in search.prune_configs] if search.prune_configs
               else default_prune_configs(num_layers))
    modes = resolve_modes(search.modes)
    modes_key = [m.to_json() for m in modes]
    source = file_digest(teacher_checkpoint / "model.safetensors")
    profile = builder.profile
    profile_key = profile.model_dump()
    deadline = time.monotonic() + search.budget_minutes * 60.0
    max_length = recovery.max_length

    # 1. latency probes on untrained pruned copies
    feasible: list[tuple[PruneConfig, int]] = []
    for cfg in configs:
        key = Cache.key("probe", source, cfg.to_json(), modes_key, profile_key)
        record = cache.get(key)
        if record is None:
            pruned = make_student(teacher, cfg, importance="magnitude")
            probes, _ = builder.from_model(pruned.model, work / "probes" / cfg.name, modes, None)
            builder.measure(probes, None)
            record = {"p90_ms": {m.name: c.latency.p90_ms for m, c in zip(modes, probes)},
                      "verdict": {m.name: c.latency.verdict for m, c in zip(modes, probes)},
                      "params": pruned.params_after}
            cache.put(key, record)
        else:
            log.from_cache += 1
        log.probes[cfg.name] = record["p90_ms"]
        best_mode, best_p90 = min(record["p90_ms"].items(), key=lambda kv: kv[1])
        if any(v != "missed" for v in record["verdict"].values()):  # met or marginal
            feasible.append((cfg, record["params"]))
            log.say(f"probe {cfg.name}: p90 {best_p90:.2f} ms ({best_mode}) - feasible")
        else:
            log.say(f"probe {cfg.name}: p90 {best_p90:.2f} ms ({best_mode}) > budget "
                    f"{profile.latency_budget_ms:g} ms - not trained")

    # 2-3. train the feasible ones, least pruned first
    feasible.sort(key=lambda item: -item[1])
    # Recovery minutes follow how much was pruned: share = pruned fraction (at least 0.1).
    params = count_parameters(teacher)
    weight = {cfg.name: max(0.1, 1.0 - kept / params) for cfg, kept in feasible}
    min_accuracy = reference_accuracy - search.max_accuracy_drop / 100.0
    broke_bound: list[PruneConfig] = []
    candidates: list[Candidate] = []
    evaluation = EvalSet(tokenizer, list(dataset.validation["text"]),
                         np.asarray(dataset.validation["label"]), max_length)
    batches = scoring_batches(tokenizer, dataset, max_length)
    for index, (cfg, _) in enumerate(feasible):
        worse_than = next((b for b in broke_bound if cfg.prunes_at_least(b, num_layers)), None)
        if worse_than is not None:
            log.say(f"skip {cfg.name}: prunes at least as much as {worse_than.name}, which broke "
                    "the accuracy bound")
            continue
        key = Cache.key("trained", source, cfg.to_json(), modes_key, profile_key,
                        recovery.model_dump(mode="json"), search.importance, max_length,
                        search.distillation)
        record = cache.get(key)
        if record is None:
            minutes_left = (deadline - time.monotonic()) / 60.0
            if minutes_left < 0.5:
                log.say(f"search budget spent: {cfg.name} and later configurations not trained")
                break
            share = weight[cfg.name] / sum(weight[c.name] for c, _ in feasible[index:])
            budget = min(recovery.max_train_minutes or minutes_left, minutes_left * share)
            log.say(f"{cfg.name}: recovery budget {budget:.1f} min ({100 * share:.0f} % of the "
                    f"{minutes_left:.1f} left); stops early at accuracy "
                    f"{min_accuracy + search.stop_margin / 100:.4f}")
            pruned = make_student(teacher, cfg, batches, search.importance)
            folder = work / "students" / f"{cfg.name}-{key[:8]}"  # resumable, never mixed up
            trained = distill_student(pruned, tokenizer, teacher, dataset, folder,
                                      recovery.model_copy(update={"max_train_minutes": budget}),
                                      resume=True, kind=search.distillation,
                                      target_accuracy=min_accuracy + search.stop_margin / 100)
            student, _ = load_checkpoint(trained.checkpoint)
            pruning = {**pruned.to_json(), "distilled": True, "train": trained.to_json()}
            found, _ = builder.from_model(student, folder / "onnx", modes, evaluation,
                                          prefix=f"{cfg.name}+", checkpoint=str(trained.checkpoint),
                                          extra={"pruning": pruning})
            record = {"candidates": [c.to_json() for c in found]}
            cache.put(key, record)
            log.trained += 1
        else:
            log.from_cache += 1
        found = [Candidate.from_json(c) for c in record["candidates"]]
        candidates += found
        best = max(c.accuracy.accuracy for c in found)
        log.say(f"{cfg.name}: best ONNX accuracy {best:.4f} "
                f"({'within' if best >= min_accuracy else 'outside'} the bound {min_accuracy:.4f})")
        if best < min_accuracy:
            broke_bound.append(cfg)
    return candidates, log
