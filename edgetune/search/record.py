"""The `Candidate` record: config, artefact and measurements of one compressed model.

The one record that the builder writes and the search, the cache, the choice and the report
read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgetune.measure.bench import AccuracyResult
from edgetune.measure.latency import LatencyResult


@dataclass
class Candidate:
    name: str
    precision: str
    model_path: str
    accuracy: AccuracyResult | None  # None only for latency probes
    latency: LatencyResult | None  # None until measured side by side with the others
    size_mb: float
    settings: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    meets_latency: bool = False
    meets_size: bool = True
    within_accuracy_bound: bool = True
    checkpoint: str = ""  # the PyTorch checkpoint it was exported from (tokenizer, config)
    stats: dict = field(default_factory=dict)  # accuracy interval, paired tests (select.py)
    counts: dict = field(default_factory=dict)  # `measure.counts.GraphCounts`, profile shape

    @property
    def meets_budget(self) -> bool:
        return self.meets_latency and self.meets_size

    def to_json(self) -> dict:
        data = asdict(self)
        data["meets_budget"] = self.meets_budget
        return data

    @classmethod
    def from_json(cls, data: dict) -> Candidate:
        data = {k: v for k, v in data.items() if k != "meets_budget"}
        data["accuracy"] = AccuracyResult(**data["accuracy"]) if data["accuracy"] else None
        data["latency"] = LatencyResult(**data["latency"]) if data["latency"] else None
        return cls(**data)
