"""The candidate builder: export -> passes -> accuracy -> `Candidate`; then all candidates'
latency measured side by side -> budget verdicts.

The one path every candidate takes, whether `tune` builds the dense menu or the search builds
a pruned student's; probes (latency only, untrained weights) take it too, without accuracy.
Latency is measured last and for all candidates of a run at once, in interleaved rounds, so
that the machine's drift falls on all of them alike.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from edgetune.compress.modes import Mode, build_variants
from edgetune.compress.passes import PassContext
from edgetune.exporter.onnx import ExportCheck, export_onnx, export_validated
from edgetune.measure.bench import (
    HOST_WORK,
    EvalSet,
    Subject,
    evaluate_as_served,
    fixed_feed,
    measure_latencies,
    model_size_mb,
)
from edgetune.measure.counts import count_graph
from edgetune.measure.latency import LatencySettings
from edgetune.profiles import Profile
from edgetune.search.record import Candidate
from edgetune.search.select import check_budget


@dataclass
class CandidateBuilder:
    profile: Profile
    processor: object  # the modality's preprocessor (`Prepared.processor`)
    ctx: PassContext
    settings: LatencySettings | None = None
    opset: int | None = None
    atol: float | None = None
    feed: dict | None = None  # a model that takes no text (images): the fixed batch it is timed on
    skip_inapplicable: bool = False  # a default menu: modes with nothing to quantize left out
    check_batches: list[dict] | None = None  # the modality's inputs an export is checked on
    accuracy_on: object | None = None  # None: here; a `measure.fleet.Fleet`: on its agents
    max_length: int | None = None  # texts' truncation: none is timed longer (`fixed_feed`)

    def export(self, model, target: Path, checked: bool) -> tuple[Path, ExportCheck | None]:
        """Export to ONNX; checked against PyTorch on `check_batches` (not for a latency
        probe: its weights are untrained)."""
        if not checked or not self.check_batches:
            example = self.feed or (self.check_batches[0] if self.check_batches else None)
            return export_onnx(model.eval(), self.processor, target, example=example), None
        return export_validated(
            model, self.processor, target, [], 0, self.opset, self.atol, self.check_batches
        )

    def subject(self, name: str, path: Path) -> Subject:
        processor = None if self.feed is not None else self.processor
        return Subject(name, path, processor, self.feed, max_length=self.max_length)

    def count(self, subject: Subject) -> dict:
        """What the model costs by count at the profile's fixed shape (`measure/counts.py`)."""
        with HOST_WORK:
            feed = fixed_feed(subject, self.profile, None)
            return count_graph(subject.model_path, feed).to_json()

    def build(
        self,
        fp32: Path,
        modes: list[Mode],
        out_dir: Path,
        evaluation: EvalSet | None,
        prefix: str = "",
        checkpoint: str = "",
        extra: dict | None = None,
    ) -> list[Candidate]:
        """Every mode built from `fp32`, its accuracy measured on the ONNX model (given
        `evaluation`); latency comes later, from `measure`."""
        built = build_variants(fp32, out_dir, modes, self.ctx, self.skip_inapplicable)
        return [
            self.candidate(
                prefix + mode.name,
                mode.precision,
                built[mode.name][0],
                evaluation,
                {**built[mode.name][1], **(extra or {})},
                checkpoint,
                mode.batch_dependent,
            )
            for mode in modes
            if mode.name in built
        ]

    def candidate(
        self,
        name: str,
        precision: str,
        path: Path,
        evaluation: EvalSet | None,
        settings: dict,
        checkpoint: str = "",
        batch_dependent: bool = False,
    ) -> Candidate:
        """One built ONNX model as a candidate: its accuracy measured on it as served (given
        `evaluation`), its size and counted costs; latency comes later, from `measure`."""
        subject = self.subject(name, path)
        accuracy = (
            evaluate_as_served(subject, self.profile, evaluation, self.accuracy_on, batch_dependent)
            if evaluation
            else None
        )
        return Candidate(
            name=name,
            precision=precision,
            model_path=str(path),
            accuracy=accuracy,
            latency=None,
            size_mb=model_size_mb(path),
            settings=settings,
            checkpoint=checkpoint,
            counts=self.count(subject),
        )

    def from_model(
        self,
        model,
        out_dir: Path,
        modes: list[Mode],
        evaluation: EvalSet | None,
        prefix: str = "",
        checkpoint: str = "",
        extra: dict | None = None,
    ) -> tuple[list[Candidate], ExportCheck | None]:
        """Export a PyTorch model (checked given an `evaluation`: not a probe), then `build`."""
        fp32, check = self.export(model, out_dir / "model.fp32.onnx", evaluation is not None)
        return self.build(fp32, modes, out_dir, evaluation, prefix, checkpoint, extra), check

    def measure(self, candidates: list[Candidate], evaluation: EvalSet | None) -> list[Candidate]:
        """Latency of all `candidates` in the same interleaved rounds, then their verdicts."""
        subjects = [
            replace(
                self.subject(c.name, Path(c.model_path)), outranked_by=_outranking(c, candidates)
            )
            for c in candidates
        ]
        texts = evaluation.texts if evaluation else None
        max_length = evaluation.max_length if evaluation else self.profile.sequence_length
        latency = measure_latencies(
            subjects, self.profile, texts, max_length, self.settings, self.profile.latency_budget_ms
        )
        for c in candidates:
            c.latency = latency[c.name]
            check_budget(c, self.profile)
        return candidates


def _outranking(c: Candidate, candidates: list[Candidate]) -> tuple[str, ...]:
    """The candidates at least as accurate as `c` and no larger: once one of them meets the
    budget and is significantly faster, no objective chooses `c` (`measure.latency`)."""
    if c.accuracy is None:
        return ()
    return tuple(
        o.name
        for o in candidates
        if o is not c
        and o.accuracy is not None
        and o.accuracy.accuracy >= c.accuracy.accuracy
        and o.size_mb <= c.size_mb
    )
