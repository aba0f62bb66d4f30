"""Load tagged sentences (token classification: named entities, PII, tags) as train/validation.

Sources: CoNLL-style files (one token per line, whitespace-separated columns, the token first
and the tag last unless told otherwise, a blank line between sentences, `-DOCSTART-` lines
skipped) and JSON/JSONL records with a list of tokens and a list of BIO tags; a single file is
split by a seeded hold-out, a folder gives `train.*` and `validation.*` (or dev/valid/test).
Every split has the columns `tokens` (list of str) and `tags` (list of tag ids); tag names are
`O` first, then the others sorted. A sentence whose tags break BIO is left out and counted;
a line with the wrong number of columns stops the load with its file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from edgetune.console import console
from edgetune.data.bio import OUTSIDE, bio_error
from edgetune.data.hub_splits import VALIDATION_STEMS
from edgetune.errors import InputError

CONLL_SUFFIXES = (".conll", ".iob", ".iob2", ".bio")
JSON_SUFFIXES = (".json", ".jsonl")
TOKEN_KEYS = ("tokens", "words")
TAG_KEYS = ("tags", "ner_tags", "labels", "label")
DOCSTART = "-DOCSTART-"


@dataclass
class Sentence:
    tokens: list[str]
    tags: list[str]
    where: str  # file:line of its first token, for messages


@dataclass
class TaggedDataset:
    """Two splits with `tokens` and `tags` (ids) columns, and the tag names (index = id)."""

    train: datasets.Dataset
    validation: datasets.Dataset
    label_names: list[str]
    source: str
    dropped: dict[str, int] = field(default_factory=dict)
    modality: object = field(default=None, repr=False, compare=False)
    is_pair = False

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def looks_tagged(source: str | Path | None) -> bool:
    """A CoNLL file, a folder with a CoNLL `train` file, or JSON/JSONL records holding token and
    tag lists (the first record is read)."""
    if source is None:
        return False
    path = Path(source)
    if path.is_dir():
        files = _split_files(path)
        return "train" in files
    return path.is_file() and (
        path.suffix.lower() in CONLL_SUFFIXES or _json_keys(path) is not None
    )


def load_tagged_dataset(
    source: str | Path,
    token_column: str | None = None,
    tag_column: str | None = None,
    validation_fraction: float = 0.1,
    seed: int = 42,
    drop_unseen_labels: bool = False,
) -> TaggedDataset:
    """Tagged sentences from `source`. `token_column`/`tag_column`: for CoNLL files, 1-based
    column numbers (default first and last); for JSON, the field names (default detected)."""
    path = Path(source)
    files = _split_files(path) if path.is_dir() else {"train": path}
    if "train" not in files:
        raise InputError(
            f"{source}: no tagged data (CoNLL {'/'.join(CONLL_SUFFIXES)} or JSON/JSONL with "
            "token and tag lists, or a folder with train.* and validation.*)"
        )
    dropped: dict[str, int] = {}
    splits = {
        name: _checked(_read(p, token_column, tag_column), name, dropped)
        for name, p in files.items()
    }
    if "validation" not in splits:
        splits = _hold_out(splits["train"], validation_fraction, seed, str(source))
    known = {t for s in splits["train"] for t in s.tags}
    unseen = sorted({t for s in splits["validation"] for t in s.tags} - known)
    if unseen and not drop_unseen_labels:
        raise InputError(
            f"{source}: validation tags {unseen} never occur in the training sentences, so no "
            "model can learn them; fix the data or pass --drop-unseen-labels"
        )
    if unseen:
        kept = [s for s in splits["validation"] if set(s.tags) <= known]
        dropped["validation tag not in train"] = len(splits["validation"]) - len(kept)
        splits["validation"] = kept
    names = [OUTSIDE, *sorted(known - {OUTSIDE})]
    ids = {name: i for i, name in enumerate(names)}
    encoded = {name: _encoded(rows, ids) for name, rows in splits.items()}
    return TaggedDataset(encoded["train"], encoded["validation"], names, str(source), dropped)


def _split_files(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in (*CONLL_SUFFIXES, *JSON_SUFFIXES) or not p.is_file():
            continue
        if p.suffix.lower() in JSON_SUFFIXES and _json_keys(p) is None:
            continue
        stem = p.stem.lower()
        if stem == "train":
            found.setdefault("train", p)
        elif stem in VALIDATION_STEMS:
            found.setdefault("validation", p)
    return found if "train" in found else {}


def _read(path: Path, token_column: str | None, tag_column: str | None) -> list[Sentence]:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() in JSON_SUFFIXES:
        return _read_json(path, token_column, tag_column)
    return _read_conll(path, _column(token_column, 1), _column(tag_column, -1))


def _column(value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise InputError(
            f"column '{value}': CoNLL columns are given by number (1 = the first)"
        ) from None
    if number < 1:
        raise InputError(f"column {number}: CoNLL columns are numbered from 1")
    return number


def _read_conll(path: Path, token_at: int, tag_at: int) -> list[Sentence]:
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    width, start = None, 0
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate([*lines, ""], start=1):
        fields = line.split()
        if not fields or fields[0] == DOCSTART:
            if tokens:
                sentences.append(Sentence(tokens, tags, f"{path}:{start}"))
            tokens, tags = [], []
            continue
        width = width or len(fields)
        if len(fields) != width:
            raise InputError(
                f"{path}:{number}: {len(fields)} columns where the file's lines have {width}; "
                "a token with a space in it, or a missing tag? One token per line"
            )
        if max(token_at, abs(tag_at)) > width or width < 2:
            raise InputError(
                f"{path}:{number}: {width} column(s); a CoNLL line needs a token and a tag "
                "(set the columns with --text-column/--label-column)"
            )
        start = start if tokens else number
        tokens.append(fields[token_at - 1])
        tags.append(fields[tag_at - 1] if tag_at > 0 else fields[tag_at])
    if not sentences:
        raise InputError(f"{path}: no tagged sentences (one 'token tag' per line)")
    return sentences


def _json_keys(path: Path) -> tuple[str, str] | None:
    """The token and tag fields of a JSON/JSONL file's first record, if it has list ones."""
    if path.suffix.lower() not in JSON_SUFFIXES:
        return None
    try:
        first = _json_records(path, limit=1)
    except InputError:
        return None
    if not first or not isinstance(first[0], dict):
        return None
    lists = [k for k, v in first[0].items() if isinstance(v, list)]
    token = next((k for k in TOKEN_KEYS if k in lists), None)
    tag = next((k for k in TAG_KEYS if k in lists), None)
    return (token, tag) if token and tag else None


def _json_records(path: Path, limit: int | None = None) -> list:
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
            return json.loads(text)[:limit]
        lines = [line for line in text.splitlines() if line.strip()][:limit]
        return [json.loads(line) for line in lines]
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON/JSONL ({exc.msg} at line {exc.lineno})") from None


def _read_json(path: Path, token_key: str | None, tag_key: str | None) -> list[Sentence]:
    detected = _json_keys(path) or (None, None)
    token_key, tag_key = token_key or detected[0], tag_key or detected[1]
    if not token_key or not tag_key:
        raise InputError(
            f"{path}: no token and tag lists found (fields {'/'.join(TOKEN_KEYS)} and "
            f"{'/'.join(TAG_KEYS)}); set --text-column/--label-column"
        )
    sentences = []
    for number, record in enumerate(_json_records(path), start=1):
        tokens, tags = record.get(token_key), record.get(tag_key)
        where = f"{path}: record {number}"
        if not isinstance(tokens, list) or not isinstance(tags, list):
            raise InputError(f"{where}: '{token_key}' and '{tag_key}' must both be lists")
        if len(tokens) != len(tags):
            raise InputError(f"{where}: {len(tokens)} tokens but {len(tags)} tags")
        if not all(isinstance(t, str) for t in tags):
            raise InputError(f"{where}: tags must be BIO strings (O, B-PER, I-PER, ...)")
        if tokens:
            sentences.append(Sentence([str(t) for t in tokens], tags, where))
    return sentences


def _checked(sentences: list[Sentence], split: str, dropped: dict[str, int]) -> list[Sentence]:
    """Sentences whose tags are BIO; the others left out and counted, the first one named."""
    kept, broken = [], []
    for s in sentences:
        (broken if bio_error(s.tags) else kept).append(s)
    if not kept:
        first = broken[0]
        raise InputError(
            f"{first.where}: {bio_error(first.tags)}; no {split} sentence has BIO tags "
            "(O, B-<type>, I-<type>; an entity starts with B-)"
        )
    if broken:
        first = broken[0]
        dropped[f"tags break BIO ({split})"] = len(broken)
        console.log(
            f"left out {len(broken)} {split} sentence(s) whose tags break BIO; first: "
            f"{first.where}: {bio_error(first.tags)}"
        )
    return kept


def _hold_out(
    sentences: list[Sentence], fraction: float, seed: int, source: str
) -> dict[str, list[Sentence]]:
    import numpy as np

    held = max(1, round(len(sentences) * fraction))
    if len(sentences) - held < 1:
        raise InputError(f"{source}: too few sentences ({len(sentences)}) to hold some out")
    order = np.random.default_rng(seed).permutation(len(sentences))
    return {
        "train": [sentences[i] for i in sorted(order[held:])],
        "validation": [sentences[i] for i in sorted(order[:held])],
    }


def _encoded(sentences: list[Sentence], ids: dict[str, int]) -> datasets.Dataset:
    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "tags": datasets.Sequence(datasets.Value("int64")),
        }
    )
    return datasets.Dataset.from_dict(
        {
            "tokens": [s.tokens for s in sentences],
            "tags": [[ids[t] for t in s.tags] for s in sentences],
        },
        features=features,
    )
