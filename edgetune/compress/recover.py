"""Prune a fine-tuned checkpoint and recover its accuracy by distillation from the original.

The fine-tuned (unpruned) model is the teacher; a pruned copy is the student, trained with the
same `Trainer` loop as fine-tuning (early stopping, LR schedule, budget) on a loss that mixes
the labels with the teacher's softened logits.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edgetune.compress.importance import Importance, importance_named
from edgetune.compress.passes import PassContext, Step
from edgetune.compress.pruning import PruneConfig, count_parameters, run_torch_steps
from edgetune.train.distill import DistillConfig
from edgetune.train.loop import TrainConfig, TrainResult, fine_tune


@dataclass
class PrunedModel:
    model: torch.nn.Module
    config: PruneConfig
    params_before: int
    params_after: int
    steps: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        extra = [s["pass"] for s in self.steps if s["pass"] not in STRUCTURED]
        if extra and self.config.is_dense:  # e.g. channel-prune alone
            return "+".join(extra)
        return "+".join([self.config.name, *extra]) if extra else self.config.name

    def chose(self, pass_name: str, key: str):
        """What pass `pass_name` recorded under `key` (e.g. the kept layers), or None."""
        return next((s["chose"][key] for s in self.steps if s["pass"] == pass_name), None)

    def to_json(self) -> dict:
        return {
            "prune": self.config.to_json(),
            "name": self.name,
            "steps": self.steps,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "params_kept": round(self.params_after / self.params_before, 4),
        }


STRUCTURED = ("layer-drop", "head-prune", "ffn-prune", "hidden-prune")


def scoring_batches(
    preprocessor,
    model,
    dataset,
    config: TrainConfig,
    batches: int = 8,
    batch_size: int = 16,
    seed: int = 0,
) -> list[dict[str, torch.Tensor]]:
    """A few seeded training rows with labels, for gradient x weight importance: encoded and
    collated by the dataset's modality exactly as training batches are."""
    train = dataset.train
    sample = train.shuffle(seed=seed).select(range(min(len(train), batches * batch_size)))
    task = dataset.modality.train_task(preprocessor, model, config)
    rows = task.encode(sample, training=False)
    collate = task.collator()
    return [
        dict(collate([rows[i] for i in range(start, min(start + batch_size, len(rows)))]))
        for start in range(0, len(rows), batch_size)
    ]


def make_student(
    teacher: torch.nn.Module,
    config: PruneConfig,
    batches=None,
    importance: str | Importance = "taylor",
    extra_steps: list[Step] = (),
) -> PrunedModel:
    """A pruned deep copy of `teacher` (the teacher is left untouched): the structured passes
    `config` names, then any `extra_steps` (torch passes from the registry)."""
    student = copy.deepcopy(teacher)
    before = count_parameters(student)
    ctx = PassContext(
        model_type=teacher.config.model_type,
        importance=importance_named(importance),
        scoring_batches=batches,
    )
    done = run_torch_steps(student, [*config.steps(), *extra_steps], ctx)
    return PrunedModel(student, config, before, count_parameters(student), done)


def distillation_kind(model: torch.nn.Module, asked: str) -> str:
    """`asked`, except logits-only for a model with no encoder family (a CNN: its hidden states
    are feature maps per stage, with no layer map to follow)."""
    from edgetune.compress.families import FAMILIES

    return asked if model.config.model_type in FAMILIES else "logits"


def distill_student(
    pruned: PrunedModel,
    tokenizer,
    teacher,
    dataset,  # adopted by its modality
    work_dir: str | Path,
    train_config: TrainConfig,
    distill: DistillConfig | None = None,
    use_teacher: bool = True,
    resume: bool = False,
    kind: str = "layerwise",
    target_accuracy: float | None = None,
) -> TrainResult:
    """Recover the pruned student with the fine-tuning loop (+ distillation from `teacher`:
    `kind` layerwise, each student layer matched to the teacher layer it was kept from, or
    logits only)."""
    kind = distillation_kind(pruned.model, kind)
    distill = distill or DistillConfig.named(
        kind,
        layer_map=pruned.chose("layer-drop", "kept_layers"),
        hidden_index=pruned.chose("hidden-prune", "kept_channels"),
    )
    return fine_tune(
        "pruned-student",
        dataset,
        work_dir,
        train_config,
        resume=resume,
        model=pruned.model,
        tokenizer=tokenizer,
        teacher=teacher if use_teacher else None,
        distill=distill,
        target_accuracy=target_accuracy,
    )
