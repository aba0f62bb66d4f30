"""Turn texts into the numpy batches an ONNX session takes (numpy, no torch tensors).

A text is a string, for sentence-pair tasks a [first, second] pair (`tokenize` sends pairs
to the tokenizer as two lists, so they get the model's separator and segment ids), or for token
classification `Words` (a sentence already split into words, tokenized so that each sub-token
knows its word)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # transformers' or data/tokenizer.py's JsonTokenizer: called the same way
    from transformers import PreTrainedTokenizerBase


class Words(tuple):
    """A sentence as its words (token classification): tokenized with `is_split_into_words`."""


def sentences(split) -> list[Words]:
    """A tagged split's `tokens` column, each sentence as its `Words`."""
    return [Words(tokens) for tokens in split["tokens"]]


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: Sequence, **kwargs):
    """`tokenizer(texts, **kwargs)`, with pairs given as (firsts, seconds) and `Words` as
    pre-split words."""
    texts = list(texts)
    if texts and isinstance(texts[0], Words):
        return tokenizer([list(t) for t in texts], is_split_into_words=True, **kwargs)
    if texts and not isinstance(texts[0], str):
        return tokenizer([t[0] for t in texts], [t[1] for t in texts], **kwargs)
    return tokenizer(texts, **kwargs)


def eval_batches(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence, max_length: int, batch_size: int = 32
) -> list[dict[str, np.ndarray]]:
    """Batches padded to their longest member, truncated at `max_length` (as in training)."""
    batches = []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        enc = tokenize(
            tokenizer,
            chunk,
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="np",
        )
        batches.append({k: v.astype(np.int64) for k, v in enc.items()})
    return batches


def latency_feed(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence, batch_size: int, sequence_length: int
) -> dict[str, np.ndarray]:
    """One batch at exactly the profile's batch size and sequence length, from real texts."""
    texts = list(texts) or ["hello world"]
    chunk = [texts[i % len(texts)] for i in range(batch_size)]
    enc = tokenize(
        tokenizer,
        chunk,
        padding="max_length",
        truncation=True,
        max_length=sequence_length,
        return_tensors="np",
    )
    return {k: v.astype(np.int64) for k, v in enc.items()}


def calibration_batches(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence,
    max_length: int,
    samples: int,
    seed: int,
    batch_size: int = 8,
) -> list[dict[str, np.ndarray]]:
    """A seeded sample of texts in small batches, all padded to `max_length`: ORT's histogram
    calibrators (Entropy, Percentile) need one shape, and small batches bound the memory."""
    rng = np.random.default_rng(seed)
    picked = [texts[i] for i in rng.permutation(len(texts))[:samples]]
    picked = [picked[i % len(picked)] for i in range(-(-len(picked) // batch_size) * batch_size)]
    # full batches only (repeating the first texts): histogram calibrators need one shape
    batches = []
    for start in range(0, len(picked), batch_size):
        enc = tokenize(
            tokenizer,
            picked[start : start + batch_size],
            padding="max_length",
            truncation=True,
            max_length=max_length,
            return_tensors="np",
        )
        batches.append({k: v.astype(np.int64) for k, v in enc.items()})
    return batches


def word_ids(tokenizer: PreTrainedTokenizerBase, sentences: Sequence[Words], max_length: int):
    """Per sentence, the word each token position comes from (None: special or padding), as
    `eval_batches` tokenizes: a word truncated away has no position."""
    encoded = tokenize(tokenizer, sentences, padding=True, truncation=True, max_length=max_length)
    return [encoded.word_ids(i) for i in range(len(sentences))]
