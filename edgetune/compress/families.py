"""Where each encoder family (text and ViT-like image encoders) keeps the parts structured
pruning cuts.

The pruning passes and the importance scores reach layers, attention projections and FFN
layers only through a `Family`, so a new encoder family is one entry here (and a tiny-model
test). A family missing here, or a step a family cannot take (DeBERTa-v2 has no head pruning
in transformers; MPNet's position bias is shared across layers), is refused with one line
naming the family and the step.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from edgetune.errors import InputError


@dataclass(frozen=True)
class Family:
    layers: str  # the ModuleList of blocks, under `model.base_model`
    query: str  # under a block: the attention projections...
    key: str
    value: str
    attention_out: str
    ffn_in: str  # ...and the FFN's two linear layers
    ffn_out: str
    heads: str  # the block's head count and head size (attributes)
    head_size: str
    num_layers_key: str = "num_hidden_layers"  # the config keys that describe the shapes
    ffn_size_key: str = "intermediate_size"
    no_head_pruning: str = ""  # why heads cannot be pruned in this family, if they cannot


_BERT = Family(
    "encoder.layer",
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
    "attention.self.num_attention_heads",
    "attention.self.attention_head_size",
)

# ViT and DeiT blocks: the same attribute paths (patch embeddings instead of token embeddings).
_VIT = Family(
    "encoder.layer",
    "attention.attention.query",
    "attention.attention.key",
    "attention.attention.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
    "attention.attention.num_attention_heads",
    "attention.attention.attention_head_size",
)

# wav2vec2 and HuBERT encoders (audio): the transformer blocks after the convolutional front
# end. Heads are not pruned: transformers records no pruned heads for them, so a checkpoint with
# fewer heads in some layers could not be loaded again.
_WAV2VEC2 = Family(
    "encoder.layers",
    "attention.q_proj",
    "attention.k_proj",
    "attention.v_proj",
    "attention.out_proj",
    "feed_forward.intermediate_dense",
    "feed_forward.output_dense",
    "attention.num_heads",
    "attention.head_dim",
    no_head_pruning="transformers keeps no record of pruned heads for it, so the pruned "
    "checkpoint could not be loaded again",
)

FAMILIES: dict[str, Family] = {
    "wav2vec2": _WAV2VEC2,
    "hubert": _WAV2VEC2,
    "vit": _VIT,
    "deit": _VIT,
    "bert": _BERT,
    "roberta": _BERT,
    "xlm-roberta": _BERT,
    "electra": _BERT,
    "camembert": _BERT,
    "distilbert": Family(
        "transformer.layer",
        "attention.q_lin",
        "attention.k_lin",
        "attention.v_lin",
        "attention.out_lin",
        "ffn.lin1",
        "ffn.lin2",
        "attention.n_heads",
        "attention.attention_head_size",
        "n_layers",
        "hidden_dim",
    ),
    "deberta-v2": Family(
        "encoder.layer",
        "attention.self.query_proj",
        "attention.self.key_proj",
        "attention.self.value_proj",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
        "attention.self.num_attention_heads",
        "attention.self.attention_head_size",
        no_head_pruning="transformers has no head pruning for its disentangled attention",
    ),
    "mpnet": Family(
        "encoder.layer",
        "attention.attn.q",
        "attention.attn.k",
        "attention.attn.v",
        "attention.attn.o",
        "intermediate.dense",
        "output.dense",
        "attention.attn.num_attention_heads",
        "attention.attn.attention_head_size",
        no_head_pruning="its relative position bias is shared by all layers, one value per head",
    ),
}


def family_of(model: nn.Module, step: str) -> Family:
    """The model's family, or a one-line refusal naming the family and the step."""
    model_type = model.config.model_type
    family = FAMILIES.get(model_type)
    if family is None:
        raise InputError(
            f"{step}: the {model_type} family is not supported for structured pruning "
            f"(supported: {', '.join(sorted(FAMILIES))})"
        )
    if step == "head-prune" and family.no_head_pruning:
        raise InputError(
            f"head-prune: the {model_type} family has no head pruning ({family.no_head_pruning}); "
            "prune layers (L) or FFN neurons (F) instead"
        )
    return family


def get(obj: object, path: str):
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


def put(obj: object, path: str, value: object) -> None:
    *parents, last = path.split(".")
    setattr(get(obj, ".".join(parents)) if parents else obj, last, value)


def blocks(model: nn.Module, family: Family) -> nn.ModuleList:
    return get(model.base_model, family.layers)


def set_blocks(model: nn.Module, family: Family, kept: nn.ModuleList) -> None:
    put(model.base_model, family.layers, kept)
    setattr(model.config, family.num_layers_key, len(kept))
