"""One ONNX model on one profile: latency (always), accuracy of the ONNX model itself (when
labelled texts are given) and size on disk. `bench_onnx` is what every job calls."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgetune.data.encoding import eval_batches, latency_feed
from edgetune.measure.latency import (
    LatencyResult,
    LatencySettings,
    create_session,
    feed_for,
    measure_latency,
)
from edgetune.measure.metrics import classification_metrics
from edgetune.profiles import Profile

# Latency does not depend on the words, only on the padded shape: these fill a batch when
# no data is given.
FALLBACK_TEXTS = [
    "The service was quick and the staff were friendly.",
    "I would not recommend this to anyone; it broke after a day.",
    "Shares fell sharply after the company missed its earnings forecast.",
    "The match ended in a draw after extra time.",
]


@dataclass
class AccuracyResult:
    accuracy: float
    macro_f1: float
    examples: int

    def to_json(self) -> dict:
        return asdict(self)




def predict_logits(
    session: ort.InferenceSession, batches: list[dict[str, np.ndarray]]
) -> np.ndarray:
    """Run every batch through the session; the first output is the logits."""
    outputs = [session.run(None, feed_for(session, b))[0] for b in batches]
    return np.concatenate(outputs, axis=0).astype(np.float32)


def measure_accuracy(
    session: ort.InferenceSession, batches: list[dict[str, np.ndarray]], labels: np.ndarray
) -> AccuracyResult:
    """Accuracy and macro-F1 of the ONNX model itself."""
    metrics = classification_metrics(predict_logits(session, batches), labels)
    return AccuracyResult(metrics["accuracy"], metrics["macro_f1"], len(labels))


def model_size_mb(model_path: str | Path) -> float:
    """Size on disk, counting external-data files beside the model if any."""
    path = Path(model_path)
    total = path.stat().st_size
    for extra in path.parent.glob(path.name + "*.data"):
        total += extra.stat().st_size
    return total / 1e6




@dataclass
class EvalSet:
    """What accuracy is measured on: labelled texts and the tokenisation used in training."""

    tokenizer: object
    texts: list[str]
    labels: np.ndarray
    max_length: int


@dataclass
class BenchResult:
    model: str
    profile: str
    latency: LatencyResult
    size_mb: float
    accuracy: AccuracyResult | None = None
    manifest_metrics: dict | None = None

    def to_json(self) -> dict:
        return {"model": self.model, "profile": self.profile, "size_mb": self.size_mb,
                "latency": self.latency.to_json(),
                "accuracy": self.accuracy.to_json() if self.accuracy else None,
                "reported_in_bundle": self.manifest_metrics}


def bench_onnx(model_path: str | Path, tokenizer, profile: Profile, evaluation: EvalSet | None,
               settings: LatencySettings | None = None) -> BenchResult:
    """Latency on the profile (always) and accuracy on `evaluation` (when given)."""
    session = create_session(model_path, profile)
    texts = evaluation.texts if evaluation else FALLBACK_TEXTS
    feed = latency_feed(tokenizer, texts, profile.batch_size, profile.sequence_length)
    feed = {i.name: feed[i.name] for i in session.get_inputs()}
    accuracy = None
    if evaluation is not None:
        batches = eval_batches(evaluation.tokenizer, evaluation.texts, evaluation.max_length)
        accuracy = measure_accuracy(session, batches, evaluation.labels)
    del session
    latency = measure_latency(model_path, profile, feed, settings)
    return BenchResult(str(model_path), profile.name, latency, model_size_mb(model_path), accuracy)
