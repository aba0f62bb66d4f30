"""Structured pruning of transformer encoders: whole layers, attention heads, FFN neurons.

Structured, so that the dense kernels really get smaller and ONNX Runtime really gets faster
(unlike unstructured sparsity). Each kind is a `TorchPass`; which parts go is decided by an
importance criterion (`compress/importance.py`) scored once on the unpruned model. The
surgery keeps the model a plain transformers model: dropped layers shrink
`config.num_hidden_layers`, heads go through transformers' `prune_heads` (recorded in
`config.pruned_heads`), and FFN neurons are removed uniformly per layer so that
`config.intermediate_size` still describes every layer; the result saves, reloads and exports.
The parts are found through the model's family (`compress/families.py`).
`PruneConfig` (`L3-H0.5-F0.5`) is the short name for a chain of these passes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from pydantic import Field
from torch import nn
from transformers.pytorch_utils import prune_linear_layer

from edgetune.compress.families import blocks, family_of, get, put, set_blocks
from edgetune.compress.importance import Scores, compute_scores
from edgetune.compress.passes import PassConfig, PassContext, Step, TorchPass, get_pass
from edgetune.errors import InputError


def _scores(model: nn.Module, ctx: PassContext) -> Scores:
    """Scores of the model as it is now, computed once and kept up to date by each pass."""
    if ctx.scores is None:
        batches = ctx.scoring_batches if getattr(ctx.importance, "needs_batches", False) else None
        ctx.scores = compute_scores(model, batches, ctx.importance or "magnitude")
    return ctx.scores


class LayerDropConfig(PassConfig):
    keep: int = Field(ge=1, description="encoder layers kept (the most important)")


class LayerDrop(TorchPass):
    name = "layer-drop"
    Config = LayerDropConfig
    description = "remove whole encoder layers"

    def run(self, model, config: LayerDropConfig, ctx: PassContext) -> dict:
        family = family_of(model, self.name)
        layers = blocks(model, family)
        if config.keep >= len(layers):
            return {"kept_layers": list(range(len(layers)))}
        scores = _scores(model, ctx)
        keep = sorted(torch.topk(scores.layers, config.keep).indices.tolist())
        set_blocks(model, family, nn.ModuleList([layers[i] for i in keep]))
        ctx.scores = Scores(scores.layers[keep], [scores.heads[i] for i in keep], scores.ffn[keep])
        return {"kept_layers": keep}


class FractionConfig(PassConfig):
    fraction: float = Field(ge=0.0, lt=1.0, description="share removed in every layer")


class HeadPrune(TorchPass):
    name = "head-prune"
    Config = FractionConfig
    description = "remove the least important attention heads of every layer"

    def run(self, model, config: FractionConfig, ctx: PassContext) -> dict:
        family = family_of(model, self.name)
        scores = _scores(model, ctx)
        to_prune: dict[int, list[int]] = {}
        for i, layer in enumerate(blocks(model, family)):
            n_heads = get(layer, family.heads)
            remove = min(n_heads - 1, round(config.fraction * n_heads))
            if remove:
                to_prune[i] = torch.topk(scores.heads[i], remove, largest=False).indices.tolist()
        model.prune_heads(to_prune)
        ctx.scores = Scores(
            scores.layers,
            [
                h[[j for j in range(len(h)) if j not in to_prune.get(i, [])]]
                for i, h in enumerate(scores.heads)
            ],
            scores.ffn,
        )
        return {"pruned_heads": to_prune}


class FfnPrune(TorchPass):
    name = "ffn-prune"
    Config = FractionConfig
    description = "remove the least important FFN neurons, the same number in every layer"

    def run(self, model, config: FractionConfig, ctx: PassContext) -> dict:
        family = family_of(model, self.name)
        scores = _scores(model, ctx)
        layers = blocks(model, family)
        width = get(layers[0], family.ffn_in).out_features
        keep_n = max(1, round(width * (1.0 - config.fraction)))
        kept = []
        for i, layer in enumerate(layers):
            index = torch.topk(scores.ffn[i], keep_n).indices.sort().values
            put(layer, family.ffn_in, prune_linear_layer(get(layer, family.ffn_in), index, dim=0))
            put(layer, family.ffn_out, prune_linear_layer(get(layer, family.ffn_out), index, dim=1))
            kept.append(index)
        setattr(model.config, family.ffn_size_key, keep_n)
        ctx.scores = Scores(
            scores.layers, scores.heads, torch.stack([scores.ffn[i][k] for i, k in enumerate(kept)])
        )
        return {"intermediate_size": keep_n}


@dataclass(frozen=True)
class PruneConfig:
    """How much to remove: keep `layers` layers; remove `heads`/`ffn` fractions per layer and a
    `hidden` fraction of the residual stream's width."""

    layers: int | None = None
    heads: float = 0.0
    ffn: float = 0.0
    hidden: float = 0.0

    def __post_init__(self) -> None:
        if not all(0.0 <= share < 1.0 for share in (self.heads, self.ffn, self.hidden)):
            raise InputError(
                f"--heads, --ffn and --hidden are fractions in [0, 1): got {self.heads}, "
                f"{self.ffn}, {self.hidden}"
            )
        if self.layers is not None and self.layers < 1:
            raise InputError(f"--layers keeps at least 1 layer: got {self.layers}")

    @property
    def name(self) -> str:
        parts = [
            f"L{self.layers}" if self.layers else "",
            f"H{self.heads:g}" if self.heads else "",
            f"F{self.ffn:g}" if self.ffn else "",
            f"W{self.hidden:g}" if self.hidden else "",
        ]
        return "-".join(p for p in parts if p) or "dense"

    @classmethod
    def parse(cls, name: str) -> PruneConfig:
        """The inverse of `name`: `L4`, `H0.5`, `F0.5`, `W0.25` (hidden width), joined by `-`
        (e.g. `L3-H0.25-F0.5`)."""
        fields: dict = {}
        try:
            for part in filter(None, name.strip().split("-")):
                kind, value = part[0].upper(), part[1:]
                if kind == "L":
                    fields["layers"] = int(value)
                elif kind == "H":
                    fields["heads"] = float(value)
                elif kind == "F":
                    fields["ffn"] = float(value)
                elif kind == "W":
                    fields["hidden"] = float(value)
                else:
                    raise ValueError(part)
        except (ValueError, IndexError):
            raise InputError(
                f"pruning config '{name}': use L<layers>, H<fraction>, F<fraction>, "
                "W<fraction> joined by '-', e.g. L4-F0.5"
            ) from None
        return cls(**fields)

    def prunes_at_least(self, other: PruneConfig, num_layers: int) -> bool:
        """True when this config removes at least as much as `other` on every axis (fewer or
        equal layers, at least the head and FFN fractions): it cannot be more accurate."""
        return (
            (self.layers or num_layers) <= (other.layers or num_layers)
            and self.heads >= other.heads
            and self.ffn >= other.ffn
            and self.hidden >= other.hidden
        )

    @property
    def is_dense(self) -> bool:
        return not (self.layers or self.heads or self.ffn or self.hidden)

    def to_json(self) -> dict:
        return asdict(self)

    def steps(self) -> list[Step]:
        """The pass chain this name stands for: layers first, then heads, FFN, hidden width."""
        steps = [Step.of("layer-drop", keep=self.layers)] if self.layers else []
        steps += [Step.of("head-prune", fraction=self.heads)] if self.heads else []
        steps += [Step.of("ffn-prune", fraction=self.ffn)] if self.ffn else []
        return steps + ([Step.of("hidden-prune", fraction=self.hidden)] if self.hidden else [])


def run_torch_steps(model: nn.Module, steps: list[Step], ctx: PassContext) -> list[dict]:
    """Apply torch passes in order; returns each step with what it did."""
    done = []
    for step in steps:
        chosen = get_pass(step.pass_name).run(model, step.config, ctx)
        done.append({**step.to_json(), "chose": chosen})
    return done


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
