"""`hidden-prune`: a narrower residual stream (the hidden size) for BERT-layout text encoders.

Every block reads and writes the residual stream, so its width is shared by the token, position
and segment embeddings, every LayerNorm, the input of each attention and FFN projection, the
output of the attention and FFN output projections, and the head (pooler, classifier). The pass
keeps the channels whose LayerNorm gains, summed over every LayerNorm, are largest (each
LayerNorm scales a channel on its way into a block or the head, so a small gain everywhere is a
channel little read) and slices every tensor that holds the stream.

transformers derives an attention head's size from `hidden_size / num_attention_heads` when it
loads a model, so each head narrows in step (to the new hidden size over the head count): per
head, the dimensions with the largest query x key and value x output weight norms are kept, and
the queries are scaled by sqrt(new / old head size) so that the attention logits keep their scale
under the new 1/sqrt(head size). The result is a plain transformers model with a smaller
`hidden_size`: it saves, reloads and exports like any other. Families whose attention or
embeddings are laid out otherwise (DistilBERT, ELECTRA's factorized embeddings, DeBERTa-v2,
MPNet, ViT) are refused with one line.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn
from transformers.pytorch_utils import prune_linear_layer

from edgetune.compress.families import blocks, family_of, get, put
from edgetune.compress.passes import PassConfig, PassContext, TorchPass
from edgetune.errors import InputError

SUPPORTED = ("bert", "roberta", "xlm-roberta", "camembert")


class HiddenPruneConfig(PassConfig):
    fraction: float = Field(
        ge=0.0,
        lt=1.0,
        description="share of the hidden size removed (rounded to a multiple of the head count)",
    )


class HiddenPrune(TorchPass):
    name = "hidden-prune"
    Config = HiddenPruneConfig
    description = "narrow the residual stream (hidden size) and each attention head with it"

    def run(self, model, config: HiddenPruneConfig, ctx: PassContext) -> dict:
        family = family_of(model, self.name)
        if model.config.model_type not in SUPPORTED:
            raise InputError(
                f"hidden-prune: the {model.config.model_type} family is not supported (its "
                f"attention or embeddings are laid out otherwise; supported: "
                f"{', '.join(SUPPORTED)}); prune layers, heads or FFN instead"
            )
        width = model.config.hidden_size
        heads = model.config.num_attention_heads
        new_width = max(heads, round(width * (1.0 - config.fraction) / heads) * heads)
        if new_width >= width:
            return {"hidden_size": width, "kept_channels": list(range(width))}
        channels = _kept_channels(model, new_width)
        head_size, new_head_size = width // heads, new_width // heads
        handled: set[int] = set()
        for layer in blocks(model, family):
            dims = _kept_head_dims(layer, family, head_size, new_head_size)
            for path in (family.query, family.key, family.value):
                projection = prune_linear_layer(get(layer, path), dims, dim=0)
                put(layer, path, prune_linear_layer(projection, channels, dim=1))
            _scale_queries(get(layer, family.query), math.sqrt(new_head_size / head_size))
            out = prune_linear_layer(get(layer, family.attention_out), dims, dim=1)
            put(layer, family.attention_out, prune_linear_layer(out, channels, dim=0))
            put(layer, family.ffn_in, prune_linear_layer(get(layer, family.ffn_in), channels, 1))
            put(layer, family.ffn_out, prune_linear_layer(get(layer, family.ffn_out), channels, 0))
            attention = get(layer, family.heads.rsplit(".", 1)[0])
            attention.attention_head_size = new_head_size
            attention.all_head_size = len(dims)
            handled |= {id(get(layer, p)) for p in _projections(family)}
        _slice_the_rest(model, width, channels, handled)
        model.config.hidden_size = new_width
        return {"hidden_size": new_width, "kept_channels": channels.tolist()}


def _projections(family) -> tuple[str, ...]:
    return (
        family.query,
        family.key,
        family.value,
        family.attention_out,
        family.ffn_in,
        family.ffn_out,
    )


def _kept_channels(model: nn.Module, keep: int) -> torch.Tensor:
    width = model.config.hidden_size
    gains = sum(
        m.weight.detach().abs()
        for m in model.modules()
        if isinstance(m, nn.LayerNorm) and m.normalized_shape == (width,)
    )
    return torch.topk(gains, keep).indices.sort().values


def _kept_head_dims(layer, family, head_size: int, keep: int) -> torch.Tensor:
    """Per head (in the layer's current order), the `keep` dimensions with the largest
    |query| x |key| + |value| x |output| row norms; indices into the projections' outputs."""

    def norm(path: str, dim: int) -> torch.Tensor:
        return get(layer, path).weight.detach().norm(dim=dim)

    score = norm(family.query, 1) * norm(family.key, 1)
    score = score + norm(family.value, 1) * norm(family.attention_out, 0)
    kept = []
    for start in range(0, score.numel(), head_size):
        top = torch.topk(score[start : start + head_size], keep).indices.sort().values
        kept.append(top + start)
    return torch.cat(kept)


def _scale_queries(query: nn.Linear, factor: float) -> None:
    with torch.no_grad():
        query.weight.mul_(factor)
        if query.bias is not None:
            query.bias.mul_(factor)


def _slice_the_rest(model: nn.Module, width: int, channels: torch.Tensor, handled: set) -> None:
    """Embeddings, LayerNorms and the head: every module that holds the stream's width."""
    for name, module in list(model.named_modules()):
        if id(module) in handled:
            continue
        if isinstance(module, nn.Embedding) and module.embedding_dim == width:
            narrow = nn.Embedding(module.num_embeddings, len(channels), module.padding_idx)
            narrow.weight.data = module.weight.data[:, channels].clone()
            put(model, name, narrow)
        elif isinstance(module, nn.LayerNorm) and module.normalized_shape == (width,):
            narrow = nn.LayerNorm(len(channels), eps=module.eps)
            narrow.weight.data = module.weight.data[channels].clone()
            narrow.bias.data = module.bias.data[channels].clone()
            put(model, name, narrow)
        elif isinstance(module, nn.Linear):
            narrow = module
            if module.in_features == width:
                narrow = prune_linear_layer(narrow, channels, dim=1)
            if module.out_features == width:
                narrow = prune_linear_layer(narrow, channels, dim=0)
            if narrow is not module:
                put(model, name, narrow)
