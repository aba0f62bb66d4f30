"""Entity-level scores of tagged sentences (BIO/IOB2), in plain numpy: the same code scores
PyTorch during training and the ONNX model itself, here or on an agent.

An entity is a `B-X` followed by any `I-X` of the same type; a stray `I-X` (after `O` or
another type) starts none. That is seqeval's strict IOB2 mode (`mode="strict",
scheme=IOB2`): a predicted entity counts only when its type and both ends match a gold one
(tests check against seqeval). Each sentence keeps its own counts (true positives, predicted,
gold), so two models are compared sentence by sentence (`paired_f1_test`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgetune.data.bio import OUTSIDE, spans

RANDOMIZATION_ROUNDS = 10_000
CHUNK_ROUNDS = 1000  # shuffles drawn at once (bounded memory for long validation sets)


@dataclass
class EntityCounts:
    """Per sentence: entities found in both (true positives), predicted, and gold."""

    matched: np.ndarray
    predicted: np.ndarray
    gold: np.ndarray

    @classmethod
    def of(cls, predicted: list[list[str]], gold: list[list[str]]) -> EntityCounts:
        rows = [(spans(p), spans(g)) for p, g in zip(predicted, gold, strict=True)]
        return cls(
            np.array([len(p & g) for p, g in rows], dtype=np.int64),
            np.array([len(p) for p, _ in rows], dtype=np.int64),
            np.array([len(g) for _, g in rows], dtype=np.int64),
        )

    def precision(self) -> float:
        return _ratio(self.matched.sum(), self.predicted.sum())

    def recall(self) -> float:
        return _ratio(self.matched.sum(), self.gold.sum())

    def f1(self) -> float:
        return f1_of(self.matched.sum(), self.predicted.sum(), self.gold.sum())

    def exact(self) -> np.ndarray:
        """Per sentence: every entity found and none extra."""
        return (self.matched == self.predicted) & (self.matched == self.gold)

    def to_rows(self) -> list[list[int]]:
        return np.stack([self.matched, self.predicted, self.gold], axis=1).tolist()

    @classmethod
    def from_rows(cls, rows: list[list[int]]) -> EntityCounts:
        array = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
        return cls(array[:, 0], array[:, 1], array[:, 2])


def _ratio(part: float, whole: float) -> float:
    return float(part / whole) if whole else 0.0


def f1_of(matched, predicted, gold):
    """F1 from summed counts (numpy arrays of them too); 0 where nothing was predicted or gold."""
    total = np.asarray(predicted + gold, dtype=np.float64)
    return np.divide(2.0 * matched, total, out=np.zeros_like(total), where=total > 0)[()]


@dataclass
class F1Test:
    """Paired approximate-randomization test of two models' entity F1 on the same sentences."""

    first_f1: float
    second_f1: float
    p_value: float
    rounds: int = RANDOMIZATION_ROUNDS
    name = "randomization test"

    def to_json(self) -> dict:
        return {
            "first_f1": self.first_f1,
            "second_f1": self.second_f1,
            "p_value": self.p_value,
            "test": (
                f"paired approximate randomization over sentences ({self.rounds} rounds): "
                "entity F1 is not a mean over sentences, so McNemar does not apply"
            ),
        }


def paired_f1_test(first: EntityCounts, second: EntityCounts, seed: int = 0) -> F1Test:
    """Swap each sentence's counts between the two models with probability 1/2, many times;
    p is the share of shuffles whose |F1 difference| reaches the observed one ((r + 1) /
    (R + 1), so never 0). Why not McNemar on exact sentences: it would ignore partial credit,
    and F1's pooled counts are what the metric is."""
    if len(first.matched) != len(second.matched):
        raise ValueError("the F1 test needs both models' counts on the same sentences")
    a = np.stack([first.matched, first.predicted, first.gold])
    b = np.stack([second.matched, second.predicted, second.gold])
    observed = abs(float(f1_of(*a.sum(1)) - f1_of(*b.sum(1))))
    delta = (b - a).T.astype(np.float64)  # what a sentence adds to the first when swapped
    rng, reached = np.random.default_rng(seed), 0
    for start in range(0, RANDOMIZATION_ROUNDS, CHUNK_ROUNDS):
        rounds = min(CHUNK_ROUNDS, RANDOMIZATION_ROUNDS - start)
        swap = (rng.random((rounds, a.shape[1])) < 0.5).astype(np.float64)
        first_totals = a.sum(1)[None, :] + swap @ delta
        second_totals = (a.sum(1) + b.sum(1))[None, :] - first_totals
        shuffled = np.abs(f1_of(*first_totals.T) - f1_of(*second_totals.T))
        reached += int(np.sum(shuffled >= observed - 1e-12))
    p = (reached + 1) / (RANDOMIZATION_ROUNDS + 1)
    return F1Test(float(f1_of(*a.sum(1))), float(f1_of(*b.sum(1))), float(p))


def entities_with_offsets(
    words: list[tuple[int, int]], tags: list[str], text: str
) -> list[dict[str, object]]:
    """The entities of one text: type, character start and end (end exclusive) in `text`, the
    covered text, and the words' indices."""
    return [
        {
            "type": kind,
            "start": words[first][0],
            "end": words[last - 1][1],
            "text": text[words[first][0] : words[last - 1][1]],
            "words": [first, last],
        }
        for kind, first, last in sorted(spans(tags), key=lambda s: s[1])
    ]


def word_tags(
    predictions: np.ndarray, positions: list[list[int]], names: list[str], words: list[int]
) -> list[list[str]]:
    """Per sentence, the tag predicted for each word: the prediction at the word's first
    sub-token (`positions[row][word]`, -1 where the word was truncated away: `O`)."""
    return [
        [names[int(row[p])] if p >= 0 else OUTSIDE for p in spots] + [OUTSIDE] * (n - len(spots))
        for row, spots, n in zip(predictions, positions, words, strict=True)
    ]


def first_positions(word_ids: list[int | None]) -> list[int]:
    """For each word (in order), the position of its first sub-token (-1 for a word the
    tokenizer gave none, such as a lone control character: its tag is then `O`, and the words
    after it keep theirs)."""
    found: dict[int, int] = {}
    for position, word in enumerate(word_ids):
        if word is not None and word not in found:
            found[word] = position
    return [found.get(w, -1) for w in range(max(found) + 1)] if found else []


def f1_by_type(predicted: list[list[str]], gold: list[list[str]]) -> dict[str, dict]:
    """Per entity type of the gold tags: strict-span F1 and how many gold entities (`gold`),
    so a candidate that loses one type (the rarest, often) shows where the pooled F1 hides
    it."""
    found = {}
    for kind in sorted({k for tags in gold for k, _, _ in spans(tags)}):
        p = [{s for s in spans(t) if s[0] == kind} for t in predicted]
        g = [{s for s in spans(t) if s[0] == kind} for t in gold]
        matched = sum(len(a & b) for a, b in zip(p, g))
        gold_count = sum(map(len, g))
        found[kind] = {
            "f1": float(f1_of(matched, sum(map(len, p)), gold_count)),
            "gold": gold_count,
        }
    return found


def tagging_metrics(
    predicted: list[list[str]], gold: list[list[str]], by_type: dict | None = None
) -> dict[str, float]:
    """Entity precision/recall/F1 (strict spans), macro F1 over entity types, and token
    accuracy. `accuracy` is the headline every job reads: here, entity F1. `by_type`: the
    same tags' `f1_by_type`, where the caller has it already."""
    counts = EntityCounts.of(predicted, gold)
    by_type = f1_by_type(predicted, gold) if by_type is None else by_type
    per_kind = [kind["f1"] for kind in by_type.values()]
    flat_p = [t for tags in predicted for t in tags]
    flat_g = [t for tags in gold for t in tags]
    token_accuracy = float(np.mean([a == b for a, b in zip(flat_p, flat_g)])) if flat_g else 0.0
    return {
        "accuracy": float(counts.f1()),
        "entity_f1": float(counts.f1()),
        "precision": counts.precision(),
        "recall": counts.recall(),
        "macro_f1": float(np.mean(per_kind)) if per_kind else 0.0,
        "token_accuracy": token_accuracy,
    }


def token_logit_metrics(logits: np.ndarray, labels: np.ndarray, names: list[str]) -> dict:
    """`tagging_metrics` from per-token logits and aligned labels (-100: not a word's first
    sub-token), as training evaluates."""
    predictions = np.asarray(logits).argmax(-1)
    labels = np.asarray(labels)
    predicted, gold = [], []
    for row, tags in zip(predictions, labels, strict=True):
        keep = tags != -100
        predicted.append([names[int(i)] for i in row[: len(tags)][keep]])
        gold.append([names[int(i)] for i in tags[keep]])
    return tagging_metrics(predicted, gold)
