"""ONNX models on one profile: accuracy of each ONNX model itself (per example, so that two
models can be compared on the same rows), size on disk, and latency measured side by side
(`measure/latency.py`). `bench_models` is what every job calls."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgetune.data.encoding import eval_batches, latency_feed
from edgetune.hardware import fingerprint
from edgetune.measure import metrics
from edgetune.measure.entities import EntityCounts, F1Test, paired_f1_test
from edgetune.measure.front_end import FrontEnd
from edgetune.measure.latency import LatencyResult, LatencySettings, System, measure_interleaved
from edgetune.measure.session import SessionSettings, check_providers, create_session, feed_for
from edgetune.measure.stats import PairedTest, mcnemar_exact, wilson_interval
from edgetune.profiles import Profile

# Latency does not depend on the words, only on the padded shape: these fill a batch when
# no data is given.
FALLBACK_TEXTS = [
    "The service was quick and the staff were friendly.",
    "I would not recommend this to anyone; it broke after a day.",
    "Shares fell sharply after the company missed its earnings forecast.",
    "The match ended in a draw after extra time.",
]
# Work done here for measurements that run at once on several agents (the search's probes):
# fast tokenizers and torch's ONNX export are not safe to share between threads.
HOST_WORK = threading.RLock()


@dataclass(frozen=True)
class Scoring:
    """How a task's headline score is named, compared and bounded, in words for the report."""

    metric: str
    test: str  # short name of the paired test
    test_words: str
    interval: str


SCORINGS = {
    "accuracy": Scoring(
        "accuracy", "McNemar", "exact McNemar test on the same validation rows", "Wilson 95 %"
    ),
    "entity F1": Scoring(
        "entity F1",
        "randomization",
        "paired approximate randomization over the same validation sentences",
        "percentile bootstrap over sentences, 95 %",
    ),
}


@dataclass
class AccuracyResult:
    accuracy: float
    macro_f1: float
    examples: int
    ci: list[float] = field(default_factory=list)  # 95 % Wilson interval of the accuracy
    correct: str = ""  # per validation row, "1" right / "0" wrong: for paired tests
    machine: dict = field(default_factory=dict)  # where the model ran (hardware.fingerprint)
    served_as: str = ""  # how the rows were batched and padded (`served_as`)
    # a batch-dependent model (dynamic INT8) measured again in serve's largest batches:
    # {"served_as", "accuracy", "p_value" (paired against the rows above)}
    under_load: dict | None = None
    # what `accuracy` is: "accuracy" (rows right), or for tagging "entity F1" (`details` then
    # holds token accuracy, precision and recall; `entity_counts` the per-sentence counts)
    metric: str = "accuracy"
    details: dict = field(default_factory=dict)
    entity_counts: list[list[int]] | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def scoring(self) -> Scoring:
        return SCORINGS[self.metric]

    def correct_mask(self) -> np.ndarray:
        return np.frombuffer(self.correct.encode(), dtype=np.uint8) == ord("1")

    def paired_with(self, other: AccuracyResult) -> PairedTest | F1Test | None:
        """This model against `other` on the same rows: exact McNemar on rows right, or for
        entity F1 the paired randomization test over sentences (None: rows not comparable)."""
        if not self.correct or len(self.correct) != len(other.correct):
            return None
        if self.entity_counts is not None and other.entity_counts is not None:
            return paired_f1_test(
                EntityCounts.from_rows(self.entity_counts),
                EntityCounts.from_rows(other.entity_counts),
            )
        return mcnemar_exact(self.correct_mask(), other.correct_mask())


def predict_logits(
    session: ort.InferenceSession, batches: list[dict[str, np.ndarray]]
) -> np.ndarray:
    """Run every batch through the session; the first output is the logits. Per-token logits
    (batch, positions, labels) of batches padded to different lengths are padded (with zeros)
    to the longest, so rows keep their positions."""
    return stack_logits([session.run(None, feed_for(session, b))[0] for b in batches])


def stack_logits(outputs: list[np.ndarray]) -> np.ndarray:
    """Batches' logits as one array; per-token ones padded with zeros to the longest batch."""
    if outputs and outputs[0].ndim == 3:
        longest = max(o.shape[1] for o in outputs)
        outputs = [np.pad(o, ((0, 0), (0, longest - o.shape[1]), (0, 0))) for o in outputs]
    return np.concatenate(outputs, axis=0).astype(np.float32)


def measure_on(evaluation: EvalSet, session: ort.InferenceSession, batches: list[dict]):
    """`evaluation.score` of the session's predictions on `batches`, run here."""
    logits = predict_logits(session, batches)
    return evaluation.score(logits.argmax(-1), logits.shape[-1], fingerprint())


def scored(
    predictions: np.ndarray, classes: int, labels: np.ndarray, machine: dict
) -> AccuracyResult:
    """One scoring for predictions made here or by an agent: accuracy, macro-F1, interval,
    the per-row outcome, and the machine the model ran on."""
    right = np.asarray(predictions) == np.asarray(labels)
    interval = wilson_interval(int(right.sum()), len(labels))
    return AccuracyResult(
        metrics.accuracy(predictions, labels),
        metrics.macro_f1(predictions, labels, classes),
        len(labels),
        [interval.low, interval.high],
        "".join("1" if r else "0" for r in right),
        machine,
    )


def model_size_mb(model_path: str | Path) -> float:
    """Size on disk, counting external-data files beside the model if any."""
    path = Path(model_path)
    total = path.stat().st_size
    for extra in path.parent.glob(path.name + "*.data"):
        total += extra.stat().st_size
    return total / 1e6


@dataclass
class EvalSet:
    """What accuracy is measured on: labelled texts and the tokenisation used in training, or
    (a model that takes no text) labelled batches of arrays."""

    tokenizer: object
    texts: list[str]
    labels: np.ndarray
    max_length: int
    batches: list[dict[str, np.ndarray]] | None = None

    def score(self, predictions: np.ndarray, classes: int, machine: dict) -> AccuracyResult:
        """The model's argmax predictions (one per row) scored against the labels."""
        return scored(predictions, classes, self.labels, machine)


@dataclass
class Subject:
    """One model to bench, under a name, with the tokenizer that feeds it and the session
    settings it runs with (a bundle's recorded ones)."""

    name: str
    model_path: Path
    tokenizer: object  # None: `feed` (inputs made from the graph) is what it is timed on
    feed: dict[str, np.ndarray] | None = None
    session: SessionSettings | None = None
    outranked_by: tuple[str, ...] = ()  # see `measure.latency.System`
    max_length: int | None = None  # a bundle's: no served input is longer, so none timed is
    front_end: FrontEnd | None = None  # work before the model, timed apart (`measure/front_end`)


@dataclass
class BenchResult:
    model: str
    profile: str
    latency: LatencyResult | None
    size_mb: float
    accuracy: AccuracyResult | None = None
    manifest_metrics: dict | None = None
    front_end: dict | None = None  # `measure.front_end.time_front_end`, where timed

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "profile": self.profile,
            "size_mb": self.size_mb,
            "latency": self.latency.to_json() if self.latency else None,
            "accuracy": self.accuracy.to_json() if self.accuracy else None,
            "reported_in_bundle": self.manifest_metrics,
            **({"front_end": self.front_end} if self.front_end else {}),
        }


# The largest batch `serve` merges requests into when the profile does not set one (the top of
# deploy/batch_choice.py's sizes): a batch-dependent model's accuracy under load is taken there.
LOAD_BATCH = 32


def served_as(batch_size: int) -> str:
    return f"batches of {batch_size}, each padded to its longest row (as predict and serve run)"


def evaluate(
    subject: Subject,
    profile: Profile,
    evaluation: EvalSet,
    on: object | None = None,
    batch_size: int | None = None,
) -> AccuracyResult:
    """Accuracy of the ONNX model as the profile serves it: rows in batches of the profile's
    batch size (or `batch_size`), each padded to its longest row, as `predict` and `serve` pad.
    Run here, or (`on`: a `measure.fleet.Fleet`) on an agent, which sends back the predictions:
    the batches and the scoring are the same either way. A model given fixed batches (arrays)
    is measured on those."""
    size = batch_size or profile.batch_size
    batches, how = evaluation.batches, served_as(size)
    if batches is None:
        with HOST_WORK:
            batches = eval_batches(
                subject.tokenizer, evaluation.texts, evaluation.max_length, batch_size=size
            )
    elif batches:
        how = f"batches of {len(next(iter(batches[0].values())))} (fixed-size inputs)"
    if on is not None:
        predictions, classes, machine = on.predict(subject.model_path, batches, profile)
        result = evaluation.score(predictions, classes, machine)
    else:
        session = create_session(subject.model_path, profile, subject.session)
        result = measure_on(evaluation, session, batches)
    return replace(result, served_as=how)


def evaluate_as_served(
    subject: Subject,
    profile: Profile,
    evaluation: EvalSet,
    on: object | None = None,
    batch_dependent: bool = False,
) -> AccuracyResult:
    """`evaluate`; for a model whose rows depend on their batch (dynamic INT8), also in the
    batches `serve` merges requests into under load, paired against the first measurement:
    the accuracy a user gets is then a range, and the report shows both ends when they differ."""
    result = evaluate(subject, profile, evaluation, on)
    load_batch = profile.serve_max_batch or LOAD_BATCH
    if not batch_dependent or evaluation.batches is not None or load_batch == profile.batch_size:
        return result
    loaded = evaluate(subject, profile, evaluation, on, batch_size=load_batch)
    paired = result.paired_with(loaded)
    result.under_load = {
        "served_as": loaded.served_as,
        "accuracy": loaded.accuracy,
        "p_value": paired.p_value,
    }
    return result


def traffic_batches(
    tokenizer, texts: list[str], batch_size: int, max_length: int, count: int
) -> list[dict[str, np.ndarray]]:
    """Batches of the data's own texts, padded to their longest member only (dynamic shapes):
    `count` batches taken evenly through a seeded shuffle of the texts."""
    if not texts:
        return []
    order = np.random.default_rng(0).permutation(len(texts))
    picked = [texts[i] for i in order[: count * batch_size]]
    picked += [picked[i % len(picked)] for i in range(-len(picked) % batch_size)]
    return eval_batches(tokenizer, picked, max_length, batch_size=batch_size)


def fixed_feed(subject: Subject, profile: Profile, texts: list[str] | None) -> dict:
    """The batch a subject is timed on at the profile's fixed shape: its own feed (inputs made
    from the graph, or arrays), else texts (or built-in ones) padded to the profile's length,
    or to the bundle's own when shorter (a bundle truncates what it is sent to that)."""
    if subject.tokenizer is None:
        return subject.feed
    length = min(profile.sequence_length, subject.max_length or profile.sequence_length)
    return latency_feed(subject.tokenizer, texts or FALLBACK_TEXTS, profile.batch_size, length)


def measure_latencies(
    subjects: list[Subject],
    profile: Profile,
    texts: list[str] | None,
    max_length: int,
    settings: LatencySettings | None = None,
    budget_ms: float | None = None,
) -> dict[str, LatencyResult]:
    """Every subject timed in the same interleaved rounds, at the profile's fixed shape and
    (given texts) at the texts' own lengths."""
    settings = settings or LatencySettings()
    if settings.target is None:
        check_providers(profile)  # one clear error here, before any worker starts
    with HOST_WORK:
        systems = [_system(s, profile, texts, max_length, settings) for s in subjects]
    if settings.target is not None:  # on the device, by its agent
        return settings.target.measure_interleaved(systems, profile, settings, budget_ms)
    return measure_interleaved(systems, profile, settings, budget_ms)


def _system(
    s: Subject, profile: Profile, texts: list[str] | None, max_length: int, settings
) -> System:
    """What a subject is timed on: the inputs its graph declares, at the profile's shape, with
    its session settings."""
    fixed = fixed_feed(s, profile, texts)
    traffic = (
        traffic_batches(
            s.tokenizer, texts or [], profile.batch_size, max_length, settings.traffic_batches
        )
        if s.tokenizer is not None
        else []
    )
    return System(s.name, s.model_path, fixed, traffic, s.session, s.outranked_by)


def bench_models(
    subjects: list[Subject],
    profile: Profile,
    evaluation: EvalSet | None,
    settings: LatencySettings | None = None,
) -> dict[str, BenchResult]:
    """Accuracy of each (given `evaluation`), then latency of all side by side."""
    return {r.model: r for r in bench_copies(subjects, profile, evaluation, settings)[0]}


def bench_copies(
    subjects: list[Subject],
    profile: Profile,
    evaluation: EvalSet | None,
    settings: LatencySettings | None = None,
    copies: int = 1,
    accuracy_on: object | None = None,
) -> list[list[BenchResult]]:
    """Like `bench_models`, with every subject timed `copies` times, each copy in a worker
    process of its own, all in the same interleaved rounds: an A/A check of the measurement
    (copies of one file see the same drift, so they should agree within their intervals).
    One list per copy, in `subjects` order; accuracy is measured once per subject (here, or
    by an agent: `accuracy_on`, see `evaluate`)."""
    texts = evaluation.texts if evaluation else None
    max_length = evaluation.max_length if evaluation else profile.sequence_length
    accuracy = {
        s.name: evaluate(s, profile, evaluation, accuracy_on) if evaluation else None
        for s in subjects
    }
    named = [
        [replace(s, name=s.name if copies == 1 else f"{s.name} #{k + 1}") for s in subjects]
        for k in range(copies)
    ]
    latency = measure_latencies(
        [c for row in named for c in row],
        profile,
        texts,
        max_length,
        settings,
        profile.latency_budget_ms,
    )
    return [
        [
            BenchResult(
                s.name, profile.name, latency[c.name], model_size_mb(s.model_path), accuracy[s.name]
            )
            for s, c in zip(subjects, row)
        ]
        for row in named
    ]
