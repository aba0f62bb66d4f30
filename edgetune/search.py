"""Compression search: pruning configurations x precision modes, measured on the profile.

Recovery training is the expensive part and latency does not depend on the weights, so:
1. probe every pruning configuration's latency on an *untrained* pruned copy (export + the
   precision modes + bench, no training);
2. drop the configurations that cannot meet the budget in any mode;
3. train (distil) the feasible ones, least pruned (most parameters, most promising) first,
   measure accuracy on the ONNX models, and stop when the time budget runs out; a
   configuration that prunes at least as much on every axis as one that already broke the
   accuracy bound is skipped.
Every probe and every measured candidate is cached under a hash of (source model, config,
mode, profile, training settings), so a re-run or `--resume` repeats nothing finished.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from edgetune.bench import LatencySettings
from edgetune.data import TextDataset
from edgetune.fsutil import write_json_atomic
from edgetune.profiles import Profile
from edgetune.progress import console
from edgetune.prune import PruneConfig
from edgetune.quantize import MODES, QuantContext, build_variants
from edgetune.select import Candidate, check_budget
from edgetune.train import TrainConfig

SEARCH_MODES = ["optimized-fp32", "dynamic-int8"]


@dataclass
class SearchConfig:
    prune_configs: list[PruneConfig]
    modes: list[str] = field(default_factory=lambda: list(SEARCH_MODES))
    budget_minutes: float = 30.0
    max_accuracy_drop: float = 1.5  # accuracy points vs the fine-tuned fp32 ONNX model
    recovery: TrainConfig = field(default_factory=TrainConfig)
    importance: str = "taylor"


def default_prune_configs(num_layers: int) -> list[PruneConfig]:
    """A small grid: fewer layers, fewer heads, narrower FFN, and their combinations."""
    keep = sorted({max(1, round(num_layers * f)) for f in (2 / 3, 1 / 2, 1 / 3)}, reverse=True)
    keep = [k for k in keep if k < num_layers]
    configs = [PruneConfig(layers=k) for k in keep]
    configs += [PruneConfig(heads=0.5), PruneConfig(ffn=0.5)]
    configs += [PruneConfig(layers=k, ffn=0.5) for k in keep]
    configs += [PruneConfig(layers=keep[-1], heads=0.5, ffn=0.5)] if keep else []
    return configs


class Cache:
    """JSON records in a folder, keyed by a hash of what produced them."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(*parts: object) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def get(self, key: str) -> dict | None:
        path = self.folder / f"{key}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, key: str, record: dict) -> None:
        write_json_atomic(self.folder / f"{key}.json", record)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:20]


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


def run_search(teacher_checkpoint: Path, dataset: TextDataset, profile: Profile, work: Path,
               search: SearchConfig, reference_accuracy: float, max_length: int,
               settings: LatencySettings | None = None) -> tuple[list[Candidate], SearchLog]:
    """Pruned candidates measured on the profile (see the module docstring for the order)."""
    from edgetune.export import export_onnx, export_validated, load_checkpoint
    from edgetune.pipeline import bench_onnx
    from edgetune.recover import distill_student, make_student, scoring_batches

    log = SearchLog()
    cache = Cache(work / "cache")
    teacher, tokenizer = load_checkpoint(teacher_checkpoint)
    source = file_digest(teacher_checkpoint / "model.safetensors")
    profile_key = profile.model_dump()
    deadline = time.monotonic() + search.budget_minutes * 60.0
    ctx = QuantContext(model_type=teacher.config.model_type)

    # 1. latency probes on untrained pruned copies
    feasible: list[tuple[PruneConfig, int]] = []
    for cfg in search.prune_configs:
        key = Cache.key("probe", source, cfg.to_json(), search.modes, profile_key)
        record = cache.get(key)
        if record is None:
            probe_dir = work / "probes" / cfg.name
            pruned = make_student(teacher, cfg, importance="magnitude")
            onnx_path = export_onnx(pruned.model.eval(), tokenizer, probe_dir / "model.onnx")
            built = build_variants(onnx_path, probe_dir, search.modes, ctx)
            latency = {m: bench_onnx(p, tokenizer, profile, None, None, max_length, settings).latency.p90_ms
                       for m, (p, _) in built.items()}
            record = {"p90_ms": latency, "params": pruned.params_after}
            cache.put(key, record)
        else:
            log.from_cache += 1
        log.probes[cfg.name] = record["p90_ms"]
        best_mode, best_p90 = min(record["p90_ms"].items(), key=lambda kv: kv[1])
        if best_p90 <= profile.latency_budget_ms:
            feasible.append((cfg, record["params"]))
            log.say(f"probe {cfg.name}: p90 {best_p90:.2f} ms ({best_mode}) - feasible")
        else:
            log.say(f"probe {cfg.name}: p90 {best_p90:.2f} ms ({best_mode}) > budget "
                    f"{profile.latency_budget_ms:g} ms - not trained")

    # 2-3. train the feasible ones, least pruned first
    feasible.sort(key=lambda item: -item[1])
    min_accuracy = reference_accuracy - search.max_accuracy_drop / 100.0
    broke_bound: list[PruneConfig] = []
    num_layers = teacher.config.num_hidden_layers
    candidates: list[Candidate] = []
    labels = np.asarray(dataset.validation["label"])
    texts = list(dataset.validation["text"])
    batches = scoring_batches(tokenizer, dataset, max_length)
    for cfg, _ in feasible:
        worse_than = next((b for b in broke_bound if cfg.prunes_at_least(b, num_layers)), None)
        if worse_than is not None:
            log.say(f"skip {cfg.name}: prunes at least as much as {worse_than.name}, which broke "
                    "the accuracy bound")
            continue
        key = Cache.key("trained", source, cfg.to_json(), search.modes, profile_key,
                        asdict(search.recovery), search.importance, max_length)
        record = cache.get(key)
        if record is None:
            minutes_left = (deadline - time.monotonic()) / 60.0
            if minutes_left < 0.5:
                log.say(f"search budget spent: {cfg.name} and later configurations not trained")
                break
            recovery = replace(search.recovery, max_train_minutes=min(
                search.recovery.max_train_minutes or minutes_left, minutes_left))
            pruned = make_student(teacher, cfg, batches, search.importance)
            trained = distill_student(pruned, tokenizer, teacher, dataset, work / "students" / cfg.name,
                                      recovery)
            student, _ = load_checkpoint(trained.checkpoint)
            onnx_path, _ = export_validated(student, tokenizer, work / "students" / cfg.name / "model.onnx",
                                            texts, max_length)
            built = build_variants(onnx_path, work / "students" / cfg.name / "onnx", search.modes, ctx)
            record = {"candidates": []}
            for mode, (path, extra) in built.items():
                result = bench_onnx(path, tokenizer, profile, texts, labels, max_length, settings)
                c = Candidate(name=f"{cfg.name}+{mode}", precision=MODES[mode].precision,
                              model_path=str(path), accuracy=result.accuracy, latency=result.latency,
                              size_mb=result.size_mb, checkpoint=str(trained.checkpoint),
                              settings={**extra, "pruning": {**pruned.to_json(), "distilled": True,
                                                             "train": trained.to_json()}})
                record["candidates"].append(c.to_json())
            cache.put(key, record)
            log.trained += 1
        else:
            log.from_cache += 1
        found = [check_budget(Candidate.from_json(c), profile) for c in record["candidates"]]
        candidates += found
        best = max(c.accuracy.accuracy for c in found)
        log.say(f"{cfg.name}: best ONNX accuracy {best:.4f} "
                f"({'within' if best >= min_accuracy else 'outside'} the bound {min_accuracy:.4f})")
        if best < min_accuracy:
            broke_bound.append(cfg)
    return candidates, log
