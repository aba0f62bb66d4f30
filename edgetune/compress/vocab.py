"""`vocab-trim`: keep only the word embeddings of the tokens a task's text uses (size, not speed).

A BERT-sized vocabulary is most of a small encoder's bytes (MiniLM: 30,522 x 384 of its 22.7M
parameters), and one task's text uses a small share of it. The pass keeps the embedding rows of
the ids the training texts produce (`PassContext.vocabulary`, with the special and unknown
tokens), plus the vocabulary's first `reserve` ids, and puts a lookup table in front of the
embedding Gather: original id -> kept row; any other id -> the kept row whose embedding is
nearest by cosine (`unseen = "nearest"`, the default) or the unknown token's row ("unknown").

The tokenizer is left as it is: segmentation does not change (a WordPiece or BPE vocabulary cut
down would split unseen words differently), the bundle's tokenizer files stay those of the
model, and graph and tokenizer agree by construction. A text whose tokens are all kept gets the
same embeddings, so the same outputs. The table costs 4 bytes an id (122 KB for 30,522).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import helper, numpy_helper
from pydantic import Field

from edgetune.compress.passes import OnnxPass, PassConfig, PassContext
from edgetune.errors import InputError

IDS_INPUT = "input_ids"


@dataclass(frozen=True)
class VocabularyUse:
    """The token ids a task's training texts use (special tokens included), and the unknown
    token's id, which every other id is mapped to."""

    ids: tuple[int, ...]
    unknown_id: int


class VocabTrimConfig(PassConfig):
    unseen: Literal["nearest", "unknown"] = Field(
        "nearest",
        description="where a token the training text never used goes: the kept token whose "
        "embedding is nearest (cosine), or the unknown token",
    )
    reserve: int = Field(
        0,
        ge=0,
        description="also keep the vocabulary's first N ids (BPE and SentencePiece "
        "vocabularies list their frequent tokens first)",
    )


class VocabTrim(OnnxPass):
    name = "vocab-trim"
    Config = VocabTrimConfig
    speeds_up = False
    description = "word embeddings of the tokens the training text uses, a lookup table in front"

    def run(self, source: Path, target: Path, config: VocabTrimConfig, ctx: PassContext) -> dict:
        if ctx.vocabulary is None:
            raise InputError(
                "vocab-trim needs the token ids the training texts use: it suits text models, "
                "and `tune` gives it them from the training rows"
            )
        model = onnx.load(str(source))
        lookup, ids_at, weights = _word_embedding_lookup(model.graph)
        table = numpy_helper.to_array(weights)
        vocabulary = table.shape[0]
        kept = _kept_ids(ctx.vocabulary, config.reserve, vocabulary)
        unknown = int(np.searchsorted(kept, ctx.vocabulary.unknown_id))
        rows = np.full(vocabulary, unknown, np.int32)
        if config.unseen == "nearest":
            rows = _nearest_kept(table, kept)
        rows[kept] = np.arange(len(kept), dtype=np.int32)
        weights.CopyFrom(numpy_helper.from_array(table[kept], weights.name))
        ids = lookup.input[ids_at]
        remap = f"{weights.name}.kept_rows"
        cast = _id_type(model.graph, ids)
        model.graph.initializer.append(numpy_helper.from_array(rows.astype(cast), remap))
        lookup.input[ids_at] = f"{ids}.trimmed"
        position = list(model.graph.node).index(lookup)
        model.graph.node.insert(
            position, helper.make_node("Gather", [remap, ids], [f"{ids}.trimmed"], "vocab_trim")
        )
        onnx.save(model, str(target))
        return {
            "vocabulary": {
                "size": vocabulary,
                "kept": len(kept),
                "reserve": config.reserve,
                "unseen": config.unseen,
                "unknown_id": ctx.vocabulary.unknown_id,
            }
        }


def _nearest_kept(table: np.ndarray, kept: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """For every id, the index among `kept` of the row with the most similar embedding (cosine):
    a dropped word lands on a kept one close in meaning instead of on the unknown token."""
    unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    candidates = unit[kept].T
    nearest = np.empty(len(table), np.int32)
    for start in range(0, len(table), chunk):
        nearest[start : start + chunk] = np.argmax(unit[start : start + chunk] @ candidates, axis=1)
    return nearest


def _kept_ids(use: VocabularyUse, reserve: int, vocabulary: int) -> np.ndarray:
    ids = np.asarray(sorted({*use.ids, use.unknown_id, *range(min(reserve, vocabulary))}))
    if ids.size and (ids[0] < 0 or ids[-1] >= vocabulary):
        raise InputError(
            f"vocab-trim: token ids up to {ids[-1]} but the model's vocabulary has {vocabulary}: "
            "the tokenizer does not belong to this model"
        )
    return ids


# op -> (index of its ids input, index of its embedding table input)
LOOKUPS = {"Gather": (1, 0), "EmbedLayerNormalization": (0, 2)}


def _word_embedding_lookup(
    graph: onnx.GraphProto,
) -> tuple[onnx.NodeProto, int, onnx.TensorProto]:
    """The node that looks `input_ids` (or a cast of them) up in a 2-D initializer (a Gather, or
    ORT's fused EmbedLayerNormalization), its ids input's index, and the table; refused when
    there is none, or when another node shares the table."""
    initializers = {t.name: t for t in graph.initializer}
    casts = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Cast"}

    def looks_up_ids(node: onnx.NodeProto) -> bool:
        ids, table = LOOKUPS[node.op_type]
        return (
            len(node.input) > max(ids, table)
            and node.input[table] in initializers
            and len(initializers[node.input[table]].dims) == 2
            and IDS_INPUT in (node.input[ids], casts.get(node.input[ids]))
        )

    found = [node for node in graph.node if node.op_type in LOOKUPS and looks_up_ids(node)]
    if len(found) != 1:
        raise InputError(
            f"vocab-trim: found {len(found)} word-embedding lookups of '{IDS_INPUT}' in the graph, "
            "expected one; run it before quantization"
        )
    ids, table = LOOKUPS[found[0].op_type]
    name = found[0].input[table]
    if sum(name in n.input for n in graph.node) > 1:
        raise InputError(f"vocab-trim: the embedding table '{name}' is shared (tied weights)")
    return found[0], ids, initializers[name]


def _id_type(graph: onnx.GraphProto, name: str) -> type:
    """The integer type of the ids the table is indexed by (a graph input or a Cast output)."""
    for value in graph.input:
        if value.name == name:
            return helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
    cast = next(n for n in graph.node if n.op_type == "Cast" and n.output[0] == name)
    return helper.tensor_dtype_to_np_dtype(next(a.i for a in cast.attribute if a.name == "to"))
