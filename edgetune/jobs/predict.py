"""`edgetune predict`: a bundle on texts or a file of texts, streaming, torch-free."""

from __future__ import annotations

import csv
import itertools
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgetune.config import PredictConfig
from edgetune.console import make_progress
from edgetune.deploy.bundle import load_bundle
from edgetune.deploy.runtime import read_rows
from edgetune.errors import InputError
from edgetune.fsutil import make_readable
from edgetune.modality import for_bundle


@dataclass
class PredictResult:
    predictions: list[dict]  # for --text only (a file's go to `out`)
    rows: int
    accuracy: float | None  # when the file has a label column
    out: Path | None


# What a file bundle takes from the command line: its PredictConfig field and its flag.
FILE_INPUTS = {"images": ("images", "--image"), "audio": ("audio", "--audio")}


def _predict_files(config: PredictConfig, predictor) -> PredictResult:
    field, flag = FILE_INPUTS[predictor.takes]
    files = getattr(config, field)
    others = [f for f, _ in FILE_INPUTS.values() if f != field and getattr(config, f)]
    if not files or config.texts or config.input or others:
        raise InputError(f"{config.bundle} classifies {field}: give {flag} PATH (repeatable)")
    missing = [p for p in files if not Path(p).is_file()]
    if missing:
        raise InputError(f"{flag} {missing[0]}: no such file")
    batch = config.batch_size or 32
    predictions = [
        p for i in range(0, len(files), batch) for p in predictor.predict(files[i : i + batch])
    ]
    return PredictResult(predictions, len(predictions), None, None)


def _line_count(path: Path) -> int:
    """Rows for the progress bar (lines, less a CSV header): one fast pass over the bytes."""
    with path.open("rb") as handle:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    return max(1, lines - (path.suffix.lower() != ".jsonl"))


def _given_texts(config: PredictConfig, pairs: bool) -> list:
    """--text, or for a sentence-pair bundle --text with --text-pair, one for one."""
    if not pairs:
        if config.text_pairs:
            raise InputError("--text-pair: this bundle classifies single texts; leave it out")
        return config.texts
    if len(config.text_pairs) != len(config.texts):
        raise InputError(
            f"this bundle classifies sentence pairs: give one --text-pair per --text "
            f"({len(config.texts)} --text, {len(config.text_pairs)} --text-pair)"
        )
    return [[a, b] for a, b in zip(config.texts, config.text_pairs)]


def predict(config: PredictConfig) -> PredictResult:
    bundle = load_bundle(config.bundle)
    predictor = for_bundle(bundle).predictor(bundle, config.threads)
    if predictor.takes in FILE_INPUTS:
        return _predict_files(config, predictor)
    for field, flag in FILE_INPUTS.values():
        if getattr(config, field):
            raise InputError(
                f"{flag}: {config.bundle} is a {bundle.manifest.task} bundle; give --text"
            )
    batch = config.batch_size or predictor.bundle.manifest.profile.batch_size
    if config.texts:
        return PredictResult(
            predictor.predict(_given_texts(config, predictor.pairs)), len(config.texts), None, None
        )
    if config.input is None:
        raise InputError("give --text (repeatable) or --input FILE")
    if config.text_pairs:
        raise InputError(
            "--text-pair goes with --text; a file's pairs come from its columns (--text-column a,b)"
        )
    rows, text_columns, label_column = read_rows(
        Path(config.input), config.text_column, predictor.pairs
    )
    out = Path(config.out) if config.out else Path(config.input).with_suffix(".predictions.jsonl")
    if out.suffix not in (".csv", ".jsonl"):
        raise InputError(f"--out {out}: use a .csv or .jsonl file")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    count = right = labelled = 0
    progress = make_progress()
    task = progress.add_task("predict", total=_line_count(Path(config.input)), status="")
    try:
        with os.fdopen(fd, "w", newline="") as handle, progress:
            writer = csv.writer(handle) if out.suffix == ".csv" else None
            names = ["text", "text_pair"][: len(text_columns)]
            if writer:
                writer.writerow([*names, *predictor.csv_header()])
            pending: list[dict] = []
            for row in itertools.chain(rows, [None]):  # None: flush the last batch
                if row is not None:
                    pending.append(row)
                if pending and (row is None or len(pending) == batch):
                    items = [[str(r.get(c) or "") for c in text_columns] for r in pending]
                    texts = [item if predictor.pairs else item[0] for item in items]
                    for source, item, result in zip(pending, items, predictor.predict(texts)):
                        count += 1
                        labelled_row = label_column and source.get(label_column) not in (None, "")
                        if labelled_row and "label" in result:
                            labelled += 1
                            right += str(source[label_column]) == result["label"]
                        if writer:
                            writer.writerow([*item, *predictor.csv_values(result)])
                        else:
                            handle.write(json.dumps({**dict(zip(names, item)), **result}) + "\n")
                    progress.update(task, completed=count)
                    pending = []
            make_readable(handle.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return PredictResult([], count, right / labelled if labelled else None, out)
