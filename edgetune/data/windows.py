"""Texts longer than the model's window, tagged in overlapping windows of whole words.

A tagger reads at most `max_length` sub-tokens; a word past them would get no tag, so a long
text (a document to redact) is cut into windows of whole words that fit, each overlapping the
next by about a quarter of the window, and each word takes its tag from the window where it
sits furthest from an edge (the overlap is split at its middle). `predict`, `serve` and the
accuracy measured on the ONNX model all tag through `windowed`, so the score is what is served.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgetune.data.encoding import Words, tokenize

OVERLAP = 4  # windows overlap by 1/OVERLAP of the sub-tokens a window holds


@dataclass(frozen=True)
class Window:
    start: int  # the window's first word
    end: int  # one past its last word
    keep_from: int  # the words whose tags it gives: [keep_from, keep_to)
    keep_to: int


def word_windows(sub_tokens: Sequence[int], budget: int) -> list[Window]:
    """Windows over words whose sub-token counts are `sub_tokens`, each holding at most
    `budget` sub-tokens (a single longer word is a window of its own, cut by the tokenizer);
    every word is kept by exactly one window."""
    overlap = budget // OVERLAP
    spans: list[tuple[int, int]] = []
    start, count = 0, len(sub_tokens)
    while True:
        end, used = start, 0
        while end < count and (end == start or used + sub_tokens[end] <= budget):
            used += sub_tokens[end]
            end += 1
        spans.append((start, end))
        if end >= count:
            break
        start = _next_start(sub_tokens, start, end, overlap, budget)
    windows = []
    for i, (first, last) in enumerate(spans):
        keep_from = 0 if i == 0 else (first + spans[i - 1][1]) // 2
        keep_to = count if i == len(spans) - 1 else (spans[i + 1][0] + last) // 2
        windows.append(Window(first, last, keep_from, keep_to))
    return windows


def _next_start(sub_tokens: Sequence[int], start: int, end: int, overlap: int, budget: int) -> int:
    """Back from `end` by up to `overlap` sub-tokens (never to `start`), and no further back
    than lets the next window also take word `end`: each window moves on."""
    nxt, back = end, 0
    while nxt - 1 > start and back + sub_tokens[nxt - 1] <= overlap:
        nxt -= 1
        back += sub_tokens[nxt]
    while nxt < end and back + sub_tokens[end] > budget:
        back -= sub_tokens[nxt]
        nxt += 1
    return nxt


@dataclass(frozen=True)
class Windowed:
    """Sentences as the window rows a model reads, and how each sentence's tags come back."""

    rows: list[Words]
    pieces: list[list[tuple[int, int, int]]]  # per sentence: (row, from, to) within the row

    def stitch(self, row_tags: Sequence[Sequence]) -> list[list]:
        """Per sentence, its words' tags, each from the window that keeps it."""
        return [
            [t for row, a, b in sentence for t in row_tags[row][a:b]] for sentence in self.pieces
        ]


def windowed(tokenizer, sentences: Sequence[Sequence[str]], max_length: int) -> Windowed:
    """`sentences` (lists of words) as rows of at most `max_length` sub-tokens with the
    tokenizer's special tokens; a sentence that fits is one row (`word_windows` gives it one
    window)."""
    sentences = [Words(s) for s in sentences]
    counts = sub_token_counts(tokenizer, sentences) if sentences else []
    budget = max(1, max_length - _special_count(tokenizer))
    rows: list[Words] = []
    pieces: list[list[tuple[int, int, int]]] = []
    for words, per_word in zip(sentences, counts):
        parts = []
        for w in word_windows(per_word, budget):
            parts.append((len(rows), w.keep_from - w.start, w.keep_to - w.start))
            rows.append(Words(words[w.start : w.end]))
        pieces.append(parts)
    return Windowed(rows, pieces)


def sub_token_counts(tokenizer, sentences: Sequence[Words]) -> list[list[int]]:
    """How many sub-tokens each word of each sentence becomes (untruncated: with no warning
    that a sentence is longer than the model reads, since windows are how it is read)."""
    encoded = tokenize(tokenizer, sentences, padding=True, truncation=False, verbose=False)
    counts = []
    for i, words in enumerate(sentences):
        per_word = [0] * len(words)
        for word in encoded.word_ids(i):
            if word is not None:
                per_word[word] += 1
        counts.append(per_word)
    return counts


def _special_count(tokenizer) -> int:
    """The special tokens the tokenizer adds around one sentence ([CLS] ... [SEP]: 2)."""
    encoded = tokenize(tokenizer, [Words(["a"])], padding=False, truncation=False)
    return sum(1 for word in encoded.word_ids(0) if word is None)
