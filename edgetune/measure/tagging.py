"""Token classification scored on the ONNX model itself: the validation sentences as `Words`,
cut into windows where longer than the model reads (`data/windows.py`), batched and padded as
`predict` and `serve` run them, each word's tag read at its first sub-token, entities scored
strictly (`measure/entities.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from edgetune.data.encoding import sentences, word_ids
from edgetune.data.windows import Windowed, windowed
from edgetune.measure.bench import AccuracyResult, EvalSet
from edgetune.measure.entities import (
    EntityCounts,
    f1_by_type,
    first_positions,
    tagging_metrics,
    word_tags,
)

BOOTSTRAP_SAMPLES = 1000


@dataclass
class TaggedEvalSet(EvalSet):
    """`texts` are the rows the model reads (`Words`: sentences, or windows of the longer
    ones); `labels` each sentence's gold tag ids (an object array); `windows` maps rows back
    to sentences (`of_sentences` builds all three)."""

    label_names: list[str] = field(default_factory=list)
    windows: Windowed | None = None

    @classmethod
    def of_sentences(
        cls, tokenizer, sentences: list, labels: np.ndarray, max_length: int, label_names: list
    ) -> TaggedEvalSet:
        rows = windowed(tokenizer, sentences, max_length)
        return cls(tokenizer, rows.rows, labels, max_length, None, label_names, rows)

    @classmethod
    def of_split(cls, tokenizer, split, label_names: list, max_length: int) -> TaggedEvalSet:
        """A tagged split (`tokens` and `tags` columns) as the model reads it."""
        labels = np.empty(len(split), dtype=object)
        labels[:] = [list(tags) for tags in split["tags"]]
        return cls.of_sentences(tokenizer, sentences(split), labels, max_length, label_names)

    @cached_property
    def first_positions(self) -> list:
        """Each word's first sub-token position per sentence: the same for every candidate,
        so tokenized once."""
        return [
            first_positions(ids) for ids in word_ids(self.tokenizer, self.texts, self.max_length)
        ]

    def tags(self, predictions: np.ndarray) -> tuple[list[list[str]], list[list[str]]]:
        """Each sentence's predicted tags (from the rows' argmax predictions, windows
        stitched) and its gold tags."""
        words = [len(t) for t in self.texts]
        predicted = word_tags(
            np.asarray(predictions), self.first_positions, self.label_names, words
        )
        if self.windows is not None:
            predicted = self.windows.stitch(predicted)
        gold = [[self.label_names[int(i)] for i in row] for row in self.labels]
        return predicted, gold

    def metrics(self, predictions: np.ndarray) -> dict[str, float]:
        """`tagging_metrics` of every word of every sentence."""
        return tagging_metrics(*self.tags(predictions))

    def score(self, predictions: np.ndarray, classes: int, machine: dict) -> AccuracyResult:
        predicted, gold = self.tags(predictions)
        by_type = f1_by_type(predicted, gold)
        metrics = tagging_metrics(predicted, gold, by_type)
        counts = EntityCounts.of(predicted, gold)
        return AccuracyResult(
            metrics["entity_f1"],
            metrics["macro_f1"],
            len(gold),
            f1_interval(counts),
            "".join("1" if e else "0" for e in counts.exact()),
            machine,
            metric="entity F1",
            details={
                **{k: metrics[k] for k in ("precision", "recall", "token_accuracy")},
                "by_type": by_type,
            },
            entity_counts=counts.to_rows(),
        )


def f1_interval(counts: EntityCounts, seed: int = 0) -> list[float]:
    """95 % percentile-bootstrap interval of entity F1, resampling sentences."""
    rows = np.stack([counts.matched, counts.predicted, counts.gold], axis=1).astype(np.float64)
    if len(rows) == 0:
        return [0.0, 0.0]
    picks = np.random.default_rng(seed).integers(0, len(rows), (BOOTSTRAP_SAMPLES, len(rows)))
    sums = np.stack([np.bincount(p, minlength=len(rows)) for p in picks]) @ rows
    total = sums[:, 1] + sums[:, 2]
    f1 = np.divide(2 * sums[:, 0], total, out=np.zeros_like(total), where=total > 0)
    low, high = np.percentile(f1, [2.5, 97.5])
    return [float(low), float(high)]
