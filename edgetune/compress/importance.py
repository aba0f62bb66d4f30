"""Importance criteria: small objects that score every layer, head and FFN neuron.

Handed to the pruning passes (as Torch-Pruning hands criteria to its pruner), so a new
criterion is a new class here, not a new branch in the surgery. Higher score = keep.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from edgetune.compress.families import blocks, family_of, get
from edgetune.errors import InputError


@dataclass
class Scores:
    layers: torch.Tensor  # [L]
    heads: list[torch.Tensor]  # per layer: [H_i] (layers may already differ)
    ffn: torch.Tensor  # [L, I]


class Importance:
    """|weight|: needs no data."""

    name = "magnitude"
    needs_batches = False

    def prepare(self, model: nn.Module, batches: list | None) -> None:
        """Anything to compute before `score` (Taylor: one backward pass per batch)."""

    def score(self, p: torch.Tensor) -> torch.Tensor:
        return p.detach().abs()


class TaylorImportance(Importance):
    """|gradient x weight| (first-order Taylor) on a few labelled batches."""

    name = "taylor"
    needs_batches = True

    def prepare(self, model: nn.Module, batches: list | None) -> None:
        if not batches:
            raise ValueError("taylor importance needs batches with labels")
        model.zero_grad()
        model.train(False)
        accepted = inspect.signature(model.forward).parameters  # DistilBERT takes no token_type_ids
        for batch in batches:
            model(**{k: v for k, v in batch.items() if k in accepted}).loss.backward()

    def score(self, p: torch.Tensor) -> torch.Tensor:
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        return (p.detach() * grad).abs()


CRITERIA: dict[str, type[Importance]] = {"magnitude": Importance, "taylor": TaylorImportance}


def importance_named(name: str | Importance) -> Importance:
    if isinstance(name, Importance):
        return name
    if name not in CRITERIA:
        raise InputError(f"unknown importance '{name}': use {', '.join(CRITERIA)}")
    return CRITERIA[name]()


def compute_scores(
    model: nn.Module,
    batches: list[dict[str, torch.Tensor]] | None = None,
    importance: str | Importance = "taylor",
) -> Scores:
    """Importance of each layer, head and FFN neuron (higher = keep)."""
    criterion = importance_named(importance)
    family = family_of(model, "pruning")
    criterion.prepare(model, batches)
    head_scores, ffn_scores, layer_scores = [], [], []
    for layer in blocks(model, family):
        qkv = [get(layer, path) for path in (family.query, family.key, family.value)]
        per_row = sum(criterion.score(lin.weight).sum(dim=1) for lin in qkv)  # [H*d]
        per_col = criterion.score(get(layer, family.attention_out).weight).sum(dim=0)  # [H*d]
        n_heads, size = get(layer, family.heads), get(layer, family.head_size)
        head_scores.append((per_row + per_col).view(n_heads, size).sum(dim=1))
        inter, output = get(layer, family.ffn_in), get(layer, family.ffn_out)
        ffn_scores.append(
            criterion.score(inter.weight).sum(dim=1) + criterion.score(output.weight).sum(dim=0)
        )
        layer_scores.append(sum(criterion.score(p).sum() for p in layer.parameters()))
    model.zero_grad()
    return Scores(torch.stack(layer_scores), head_scores, torch.stack(ffn_scores))
