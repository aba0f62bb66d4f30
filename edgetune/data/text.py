"""Load a text-classification dataset from a file, a folder or the hub, as train/validation.

Whatever the source, the result has two `datasets.Dataset` splits with the columns `text`
(str, or for a sentence pair a [first, second] list) and `label` (int id), and the label names
in id order. String labels map to ids in
sorted order; integer labels keep their numeric order.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from edgetune.data.columns import (
    LABEL_COLUMN_NAMES,
    TEXT_COLUMN_NAMES,
    detect_pair,
    split_text_columns,
)
from edgetune.data.filecheck import check_text_file
from edgetune.data.hub_splits import VALIDATION_STEMS, load_hub_splits
from edgetune.data.labels import labelled_splits
from edgetune.errors import InputError

FILE_BUILDERS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
}
TRAIN_STEMS = ("train",)


@dataclass
class TextDataset:
    """Two splits with `text` and `label` columns, and the label names (index = id)."""

    train: datasets.Dataset
    validation: datasets.Dataset
    label_names: list[str]
    source: str
    dropped: dict[str, int] = field(default_factory=dict)  # rows left out, by reason
    modality: object = field(default=None, repr=False, compare=False)  # set by its modality

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_pair(self) -> bool:
        """Sentence-pair data: each `text` is [first, second]."""
        return not isinstance(self.train.features["text"], datasets.Value)


def load_text_dataset(
    source: str | Path,
    text_column: str | None = None,
    label_column: str | None = None,
    validation_fraction: float = 0.1,
    seed: int = 42,
    drop_unseen_labels: bool = False,
) -> TextDataset:
    """Load `source` (file, folder of split files, folder of `<label>/*.txt`, or hub id).

    Rows with an empty text or label are left out and counted. A validation label that the
    training rows never have is an error (the model could not learn it), unless
    `drop_unseen_labels` leaves those rows out (counted too)."""
    raw_splits = _load_raw_splits(Path(source), str(source))
    first = next(iter(raw_splits.values()))
    text_cols = (
        split_text_columns(text_column)
        or detect_pair(first.column_names)
        or [_detect_text_column(first, str(source))]
    )
    label_col = label_column or _detect_label_column(first, text_cols, str(source))
    for split_name, split in raw_splits.items():
        for col in (*text_cols, label_col):
            if col not in split.column_names:
                raise InputError(
                    f"{source}: no column '{col}' in the {split_name} split "
                    f"(columns: {', '.join(split.column_names)}); "
                    "set --text-column/--label-column"
                )
    splits, dropped = {}, {}
    for name, split in raw_splits.items():
        splits[name] = _normalise(split, text_cols, label_col)
        if len(split) - len(splits[name]):
            dropped[f"empty text or label ({name})"] = len(split) - len(splits[name])
    train, validation, label_names = labelled_splits(
        splits, dropped, str(source), validation_fraction, seed, drop_unseen_labels
    )
    return TextDataset(train, validation, label_names, str(source), dropped)


def _load_raw_splits(path: Path, source: str) -> dict[str, datasets.Dataset]:
    if path.is_file():
        return {"train": _load_file(path)}
    if path.is_dir():
        split_files = _split_files(path)
        if split_files:
            return {name: _load_file(p) for name, p in split_files.items()}
        if any(d.is_dir() and any(d.glob("*.txt")) for d in path.iterdir()):
            return {"train": _load_label_folders(path)}
        raise InputError(
            f"{source}: folder holds neither train/validation files "
            f"({'/'.join(FILE_BUILDERS)}) nor <label>/*.txt folders"
        )
    if path.suffix.lower() in FILE_BUILDERS or source.startswith((".", "/", "~")):
        raise InputError(f"{source}: no such file or folder")
    return load_hub_splits(source)


def _split_files(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in FILE_BUILDERS:
            continue
        stem = p.stem.lower()
        if stem in TRAIN_STEMS:
            found.setdefault("train", p)
        elif stem in VALIDATION_STEMS:
            found.setdefault("validation", p)
    return found if "train" in found else {}


def _load_file(path: Path) -> datasets.Dataset:
    suffix = path.suffix.lower()
    if suffix not in FILE_BUILDERS:
        raise InputError(f"{path}: unsupported file type; use one of {', '.join(FILE_BUILDERS)}")
    with path.open("rb") as handle:  # the first 64 KiB say whether it is empty, not the file
        head = handle.read(65536)
    if not head.strip():
        raise InputError(f"{path}: the file is empty")
    if suffix in (".csv", ".tsv") and len(head.strip().splitlines()) < 2:
        raise InputError(f"{path}: the file has a header but no rows")
    if suffix in (".csv", ".tsv", ".json", ".jsonl"):
        check_text_file(path)
    kwargs: dict = {}
    if suffix == ".tsv":
        kwargs = {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    try:
        ds = datasets.load_dataset(
            FILE_BUILDERS[suffix], data_files=str(path), split="train", **kwargs
        )
    except Exception as exc:  # noqa: BLE001 - datasets raises many types for malformed files
        raise InputError(
            f"{path}: could not read it as {suffix[1:]} ({exc.__class__.__name__}: {exc})"
        ) from None
    if len(ds) == 0:
        raise InputError(f"{path}: the file has a header but no rows")
    return ds


def _load_label_folders(folder: Path) -> datasets.Dataset:
    texts: list[str] = []
    labels: list[str] = []
    for label_dir in sorted(d for d in folder.iterdir() if d.is_dir()):
        for txt in sorted(label_dir.glob("*.txt")):
            texts.append(txt.read_text(encoding="utf-8", errors="replace").strip())
            labels.append(label_dir.name)
    return datasets.Dataset.from_dict({"text": texts, "label": labels})


def _detect_text_column(ds: datasets.Dataset, source: str) -> str:
    columns = ds.column_names
    for name in columns:
        if name.lower() in TEXT_COLUMN_NAMES:
            return name
    sample = ds.select(range(min(len(ds), 200)))
    string_cols = [c for c in columns if all(isinstance(v, str) for v in sample[c])]
    if not string_cols:
        raise InputError(
            f"{source}: no text column found (columns: {', '.join(columns)}); set --text-column"
        )
    return max(string_cols, key=lambda c: sum(len(v) for v in sample[c]))


def _detect_label_column(ds: datasets.Dataset, text_cols: list[str], source: str) -> str:
    columns = [c for c in ds.column_names if c not in text_cols]
    for name in columns:
        if name.lower() in LABEL_COLUMN_NAMES:
            return name
    if len(columns) == 1:
        return columns[0]
    raise InputError(
        f"{source}: no label column found (columns: {', '.join(ds.column_names)}); "
        "set --label-column"
    )


def _normalise(ds: datasets.Dataset, text_cols: list[str], label_col: str) -> datasets.Dataset:
    """Columns `text` (a string, or [first, second] for a pair) and `label` (a string); rows
    with an empty text or label left out."""
    ds = ds.select_columns([*text_cols, label_col])
    feature = ds.features[label_col]
    if isinstance(feature, datasets.ClassLabel):  # hub datasets: keep their names
        names = feature.names
        ds = ds.cast_column(label_col, datasets.Value("int64"))
        ds = ds.map(lambda row: {label_col: names[row[label_col]] if row[label_col] >= 0 else None})

    def filled(value: object) -> bool:
        return value is not None and str(value).strip() != ""

    ds = ds.filter(lambda row: all(filled(row[c]) for c in (*text_cols, label_col)))
    pair = len(text_cols) == 2
    text_feature = datasets.Sequence(datasets.Value("string")) if pair else datasets.Value("string")
    features = datasets.Features({"text": text_feature, "label": datasets.Value("string")})
    if len(ds) == 0:  # map() on no rows drops every column; the class check reports it
        return datasets.Dataset.from_dict({"text": [], "label": []}, features=features)
    return ds.map(
        lambda row: {
            "text": [str(row[c]) for c in text_cols] if pair else str(row[text_cols[0]]),
            "label": _label_str(row[label_col]),
        },
        remove_columns=ds.column_names,
        features=features,
    )


def _label_str(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)
