"""`edgetune bench`: an ONNX file or a bundle, on a profile, with accuracy on data if given."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetune.config import BenchConfig
from edgetune.data.text import align_labels, load_text_dataset
from edgetune.deploy.bundle import Bundle, load_bundle
from edgetune.errors import InputError
from edgetune.jobs.common import check_is_onnx, load_tokenizer, pick_split
from edgetune.measure.bench import BenchResult, EvalSet, bench_onnx
from edgetune.measure.latency import LatencySettings
from edgetune.profiles import load_profile


def bench(config: BenchConfig) -> BenchResult:
    profile = load_profile(config.profile)
    path = Path(config.model)
    if not path.exists():
        raise InputError(f"'{config.model}' does not exist; give a model.onnx file or a bundle folder")
    bundle: Bundle | None = None
    try:
        bundle = load_bundle(path)
    except InputError:
        if path.is_dir():
            raise
    model_path = bundle.model_path if bundle else path
    max_length = bundle.max_length if bundle else profile.sequence_length
    check_is_onnx(model_path)
    tokenizer = load_tokenizer(config.tokenizer or (bundle.path if bundle else path.parent))
    evaluation = None
    if config.data is not None:
        dataset = load_text_dataset(config.data, config.text_column, config.label_column,
                                    config.validation_fraction, config.seed)
        if bundle:  # the data's label ids, renumbered to the model's order by name
            dataset = align_labels(dataset, bundle.label_names)
        split = pick_split(dataset, config.split)
        evaluation = EvalSet(tokenizer, list(split["text"]), np.asarray(split["label"]), max_length)
    settings = LatencySettings(min_runs=config.min_runs, min_seconds=config.min_seconds)
    result = bench_onnx(model_path, tokenizer, profile, evaluation, settings)
    result.manifest_metrics = bundle.manifest.metrics if bundle else None
    return result
