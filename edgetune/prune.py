"""Structured pruning of transformer encoders: whole layers, attention heads, FFN neurons.

Structured, so that the dense kernels really get smaller and ONNX Runtime really gets faster
(unlike unstructured sparsity). What to remove is chosen by an importance score: weight
magnitude, or gradient x weight (first-order Taylor) on a few batches of real data. The
surgery keeps the model a plain transformers model: dropped layers shrink
`config.num_hidden_layers`, heads go through transformers' `prune_heads` (recorded in
`config.pruned_heads`), and FFN neurons are removed uniformly per layer so that
`config.intermediate_size` still describes every layer; the result saves, reloads and exports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn
from transformers.pytorch_utils import prune_linear_layer

from edgetune.errors import InputError

Importance = Literal["taylor", "magnitude"]


@dataclass(frozen=True)
class PruneConfig:
    """How much to remove: keep `layers` layers; remove `heads`/`ffn` fractions per layer."""

    layers: int | None = None
    heads: float = 0.0
    ffn: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.heads < 1.0 or not 0.0 <= self.ffn < 1.0:
            raise InputError(f"--heads and --ffn are fractions in [0, 1): got {self.heads}, {self.ffn}")
        if self.layers is not None and self.layers < 1:
            raise InputError(f"--layers keeps at least 1 layer: got {self.layers}")

    @property
    def name(self) -> str:
        parts = [f"L{self.layers}" if self.layers else "", f"H{self.heads:g}" if self.heads else "",
                 f"F{self.ffn:g}" if self.ffn else ""]
        return "-".join(p for p in parts if p) or "dense"

    @classmethod
    def parse(cls, name: str) -> PruneConfig:
        """The inverse of `name`: `L4`, `H0.5`, `F0.5`, joined by `-` (e.g. `L3-H0.25-F0.5`)."""
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
                else:
                    raise ValueError(part)
        except (ValueError, IndexError):
            raise InputError(f"pruning config '{name}': use L<layers>, H<fraction>, F<fraction> "
                             "joined by '-', e.g. L4-F0.5") from None
        return cls(**fields)

    def prunes_at_least(self, other: PruneConfig, num_layers: int) -> bool:
        """True when this config removes at least as much as `other` on every axis (fewer or
        equal layers, at least the head and FFN fractions): it cannot be more accurate."""
        return ((self.layers or num_layers) <= (other.layers or num_layers)
                and self.heads >= other.heads and self.ffn >= other.ffn)

    @property
    def is_dense(self) -> bool:
        return not self.layers and not self.heads and not self.ffn

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Scores:
    layers: torch.Tensor  # [L]
    heads: list[torch.Tensor]  # per layer: [H_i] (layers may already differ)
    ffn: torch.Tensor  # [L, I]


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks of a BERT-like encoder (`base_model.encoder.layer`)."""
    encoder = getattr(model.base_model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not isinstance(layers, nn.ModuleList) or not hasattr(layers[0], "attention"):
        raise InputError(f"pruning supports BERT-like encoders; {model.config.model_type} is not one")
    return layers


def _head_slices(layer: nn.Module) -> tuple[list[nn.Linear], nn.Linear, int, int]:
    attn = layer.attention
    return ([attn.self.query, attn.self.key, attn.self.value], attn.output.dense,
            attn.self.num_attention_heads, attn.self.attention_head_size)


def compute_scores(model: nn.Module, batches: list[dict[str, torch.Tensor]] | None = None,
                   method: Importance = "taylor") -> Scores:
    """Importance of each layer, head and FFN neuron (higher = keep)."""
    layers = encoder_layers(model)
    if method == "taylor":
        if not batches:
            raise ValueError("taylor importance needs batches with labels")
        model.zero_grad()
        model.train(False)
        for batch in batches:
            model(**batch).loss.backward()

    def score(p: torch.Tensor) -> torch.Tensor:
        if method == "taylor":
            grad = p.grad if p.grad is not None else torch.zeros_like(p)
            return (p.detach() * grad).abs()
        return p.detach().abs()

    head_scores, ffn_scores, layer_scores = [], [], []
    for layer in layers:
        qkv, out, n_heads, size = _head_slices(layer)
        per_row = sum(score(lin.weight).sum(dim=1) for lin in qkv)  # [H*d]
        per_col = score(out.weight).sum(dim=0)  # [H*d]
        head_scores.append((per_row + per_col).view(n_heads, size).sum(dim=1))
        inter, output = layer.intermediate.dense, layer.output.dense
        ffn_scores.append(score(inter.weight).sum(dim=1) + score(output.weight).sum(dim=0))
        layer_scores.append(sum(score(p).sum() for p in layer.parameters()))
    model.zero_grad()
    return Scores(torch.stack(layer_scores), head_scores, torch.stack(ffn_scores))


def prune_model(model: nn.Module, config: PruneConfig, scores: Scores) -> nn.Module:
    """Prune `model` in place as `config` says, keeping the highest-scoring parts."""
    layers = encoder_layers(model)
    if config.layers and config.layers < len(layers):
        keep = sorted(torch.topk(scores.layers, config.layers).indices.tolist())
        model.base_model.encoder.layer = nn.ModuleList([layers[i] for i in keep])
        model.config.num_hidden_layers = len(keep)
        scores = Scores(scores.layers[keep], [scores.heads[i] for i in keep], scores.ffn[keep])
        layers = encoder_layers(model)
    if config.heads:
        to_prune = {}
        for i, layer in enumerate(layers):
            n_heads = layer.attention.self.num_attention_heads
            remove = min(n_heads - 1, round(config.heads * n_heads))
            if remove:
                to_prune[i] = torch.topk(scores.heads[i], remove, largest=False).indices.tolist()
        model.prune_heads(to_prune)
    if config.ffn:
        width = layers[0].intermediate.dense.out_features
        keep_n = max(1, round(width * (1.0 - config.ffn)))
        for i, layer in enumerate(layers):
            index = torch.topk(scores.ffn[i], keep_n).indices.sort().values
            layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, index, dim=0)
            layer.output.dense = prune_linear_layer(layer.output.dense, index, dim=1)
        model.config.intermediate_size = keep_n
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def magnitude_sparsify(model: nn.Module, sparsity: float) -> int:
    """Zero the smallest weights of every Linear in the encoder (unstructured).

    This only helps *file size after compression*: dense ONNX Runtime kernels multiply the
    zeros all the same, so it does not make inference faster. Returns the number zeroed.
    """
    zeroed = 0
    for layer in encoder_layers(model):
        for module in layer.modules():
            if isinstance(module, nn.Linear):
                w = module.weight.data
                k = int(w.numel() * sparsity)
                if k:
                    threshold = w.abs().flatten().kthvalue(k).values
                    mask = w.abs() <= threshold
                    zeroed += int(mask.sum())
                    w[mask] = 0.0
    return zeroed
