"""`edgetune bench`: ONNX files or bundles on a profile, timed side by side, with accuracy on
data if given; with several models, each one's p50/p90 ratio to the first, with its interval."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgetune.config import BenchConfig
from edgetune.data.arrays import is_array_data, load_array_data
from edgetune.data.tokenizer import load_tokenizer
from edgetune.deploy.bundle import Bundle
from edgetune.errors import InputError
from edgetune.jobs.common import accuracy_agents, measuring_agents, open_model
from edgetune.measure.bench import BenchResult, EvalSet, Subject, bench_copies
from edgetune.measure.front_end import time_front_end
from edgetune.measure.latency import LatencySettings
from edgetune.measure.stats import ratio_interval
from edgetune.measure.synthetic import (
    graph_input_specs,
    graph_inputs,
    parse_shapes,
    synthetic_feed,
)
from edgetune.measure.tuning import SessionTuning, measure_settings, tune_session
from edgetune.modality import BenchData, for_bundle
from edgetune.modality.text import TextModality
from edgetune.profiles import Profile, load_profile

TEXT_INPUTS = {"input_ids", "attention_mask", "token_type_ids"}


@dataclass
class BenchReport:
    results: list[BenchResult]  # one per model, its first copy
    ratios: list[dict] = field(default_factory=list)  # model i vs the first (i >= 1)
    repeats: list[list[BenchResult]] = field(default_factory=list)  # per copy (--repeat)
    repeat_ratios: list[dict] = field(default_factory=list)  # copy k of a model vs its first
    session_tuning: SessionTuning | None = None  # --tune-session: the first model's
    # --allow-mixed-targets: the same bench on each other kind of machine, never blended
    other_machines: list[BenchReport] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "results": [r.to_json() for r in self.results],
            "ratios": self.ratios,
            "repeats": [[r.latency.to_json() for r in rep] for rep in self.repeats],
            "repeat_ratios": self.repeat_ratios,
            "session_tuning": self.session_tuning.to_json() if self.session_tuning else None,
            **(
                {"other_machines": [o.to_json() for o in self.other_machines]}
                if self.other_machines
                else {}
            ),
        }


def _bench_data(config: BenchConfig) -> BenchData:
    return BenchData(
        config.data,
        config.split,
        config.text_column,
        config.label_column,
        config.validation_fraction,
        config.seed,
    )


def _open(model: str, config: BenchConfig, profile: Profile) -> tuple[Subject, Bundle | None, int]:
    """A bundle as its modality times it; a bare ONNX file from the data's arrays, a tokenizer
    beside it (or named), or inputs made from its signature."""
    bundle, model_path = open_model(model)
    path = Path(model)
    max_length = bundle.max_length if bundle else profile.sequence_length
    if is_array_data(config.data):  # the data's own rows are what it is timed on
        arrays = load_array_data(config.data, graph_input_specs(model_path), config.labels)
        return Subject(model, model_path, None, arrays.feed(profile.batch_size)), bundle, max_length
    if bundle:
        subject = for_bundle(bundle).bench_subject(model, bundle, _bench_data(config), profile)
        return subject, bundle, max_length
    inputs = graph_inputs(model_path)
    if set(inputs) <= TEXT_INPUTS:
        try:
            tokenizer = load_tokenizer(config.tokenizer or path.parent)
            return Subject(model, model_path, tokenizer), bundle, max_length
        except InputError:
            if config.tokenizer or config.data:
                raise  # a tokenizer was expected: say it is missing
    if config.data is not None:
        raise InputError(
            f"{model}: this graph takes {', '.join(inputs)}, not text; give --data as "
            ".npz arrays named after its inputs (with labels), or bench it without --data"
        )
    if config.tokenizer is not None:
        raise InputError(
            f"{model}: --tokenizer is for text models; this graph takes "
            f"{', '.join(inputs)} (inputs are made from the graph: see --shape)"
        )
    feed = synthetic_feed(model_path, profile, parse_shapes(config.shapes))
    return Subject(model, model_path, None, feed), bundle, max_length


def _array_evaluation(subject: Subject, config: BenchConfig, profile: Profile) -> EvalSet | None:
    """Accuracy on the arrays' rows, given labels; without them the arrays only feed timing."""
    arrays = load_array_data(config.data, graph_input_specs(subject.model_path), config.labels)
    if arrays.labels is None:
        return None
    return EvalSet(
        None, [], arrays.labels, profile.sequence_length, arrays.batches(profile.batch_size)
    )


def _ratios(a: BenchResult, b: BenchResult, quantiles: tuple[int, ...]) -> dict:
    """B's percentiles over A's, from the rounds they shared, each with its interval."""
    return {
        f"p{q}_ratio": ratio_interval(a.latency.round_times, b.latency.round_times, q).to_json()
        for q in quantiles
    }


def bench(config: BenchConfig) -> BenchReport:
    profile = load_profile(config.profile)
    # a bundle runs with the session settings it records (tuned where it runs)
    opened = [
        (replace(s, session=b.manifest.session) if b else s, b, length)
        for s, b, length in (_open(m, config, profile) for m in config.models)
    ]
    if len({s.name for s, _, _ in opened}) < len(opened):
        raise InputError("the same model is given twice; use --repeat to measure one model again")
    first_subject, first_bundle, max_length = opened[0]
    evaluation = None
    if config.labels is not None and not is_array_data(config.data):
        raise InputError(
            "--labels goes with --data X.npz/.npy (arrays); text data has its label column"
        )
    if is_array_data(config.data):
        evaluation = _array_evaluation(first_subject, config, profile)
    elif config.data is not None and first_bundle:
        modality = for_bundle(first_bundle)
        evaluation = modality.bench_evaluation(first_bundle, first_subject, _bench_data(config))
    elif config.data is not None:  # a bare text ONNX file with its tokenizer
        split = TextModality.split_of(_bench_data(config), None)
        texts, labels = list(split["text"]), np.asarray(split["label"])
        evaluation = EvalSet(first_subject.tokenizer, texts, labels, max_length)
    seconds = profile.measure_seconds if config.min_seconds is None else config.min_seconds
    agents = measuring_agents(config, profile)
    on_agents = accuracy_agents(config, agents)
    if on_agents is not None and evaluation is None:
        raise InputError("--accuracy-on target: give labelled --data (accuracy needs labels)")
    reports = []
    for part in agents.by_kind() if agents is not None else [None]:  # one kind of machine each
        settings = LatencySettings(
            min_runs=config.min_runs, min_seconds=seconds, rounds=config.rounds, target=part
        )
        on = part if on_agents is not None else None
        reports.append(
            _measured(opened, profile, evaluation, settings, config.repeat, on, config.tune_session)
        )
    reports[0].other_machines = reports[1:]
    return reports[0]


def _measured(
    opened: list[tuple[Subject, Bundle | None, int]],
    profile: Profile,
    evaluation: EvalSet | None,
    settings: LatencySettings,
    repeat: int,
    accuracy_on: object | None,
    tune: bool = False,
) -> BenchReport:
    """Every model on one machine (here, or one kind of agent), with the ratios to the first;
    `tune`: the first model's session settings tuned there too."""
    subjects = [s for s, _, _ in opened]
    repeats = bench_copies(subjects, profile, evaluation, settings, repeat, accuracy_on)
    results = repeats[0]
    for result, (subject, bundle, _) in zip(results, opened):
        result.manifest_metrics = bundle.manifest.metrics if bundle else None
        if subject.front_end is not None and settings.target is None:  # here, where it ran
            result.front_end = time_front_end(subject.front_end)
    ratios = [
        {"model": r.model, "vs": results[0].model, **_ratios(results[0], r, (50, 90))}
        for r in results[1:]
    ]
    same_file = [
        {"model": r.model, "repeat": k + 1, "vs_repeat": 1, **_ratios(first, r, (50,))}
        for k, row in enumerate(repeats[1:], start=1)
        for first, r in zip(results, row)
    ]
    tuning = None
    if tune:
        texts = evaluation.texts if evaluation else None
        tuning = tune_session(profile, measure_settings(subjects[0], profile, texts, settings))
    return BenchReport(results, ratios, repeats, same_file, tuning)
