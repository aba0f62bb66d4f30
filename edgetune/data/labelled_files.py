"""Labelled files (images, audio clips) from folders or a table, for every file modality.

Sources: a folder of `<label>/<files>` (a validation split held out later), a folder with
`train/` and `validation/` (or `val/`, `test/`) folders of those, or a CSV/TSV of path,label
(paths relative to the table). A `FileKind` says which suffixes count, how a file is checked
(unreadable files are left out and counted, as empty rows are for text) and the column the
paths go to.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgetune.data.columns import LABEL_COLUMN_NAMES
from edgetune.data.hub_splits import VALIDATION_STEMS
from edgetune.errors import InputError

TABLE_SUFFIXES = (".csv", ".tsv")


@dataclass(frozen=True)
class FileKind:
    noun: str  # "image", "audio file"
    pattern: str  # in messages: "*.jpg|png"
    suffixes: tuple[str, ...]
    column: str  # the column the paths go to
    column_names: tuple[str, ...]  # a table's path column, by name
    flag: str  # the flag that names it
    readable: Callable[[list[Path]], tuple[list[Path], int]]  # kept paths, count of the others

    def files_in(self, folder: Path) -> list[Path]:
        return sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in self.suffixes
        )

    def looks_like(self, source: str | Path) -> bool:
        """A folder of label folders holding such files, a train/ folder of those, or a table
        with a path column."""
        path = Path(source)
        if path.is_file() and path.suffix.lower() in TABLE_SUFFIXES:
            return any(c.strip().lower() in self.column_names for c in _header(path))
        if not path.is_dir():
            return False
        roots = [path / "train"] if (path / "train").is_dir() else [path]
        return any(self.files_in(d) for root in roots for d in root.iterdir() if d.is_dir())


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        return next(csv.reader(handle, delimiter="\t" if path.suffix == ".tsv" else ","), [])


def labelled_paths(
    kind: FileKind, rows: list[tuple[Path, str]], where: str, dropped: dict[str, int]
) -> dict[str, list]:
    """The readable rows as columns {kind.column: [path], "label": [label]}."""
    paths = [p for p, _ in rows]
    good, bad = kind.readable(paths)
    if bad:
        dropped[f"unreadable {kind.noun} ({where})"] = bad
    keep = set(good)
    kept = [(str(p), label) for p, label in rows if p in keep]
    if not kept:
        raise InputError(f"{where}: no readable {kind.noun}")
    return {kind.column: [p for p, _ in kept], "label": [label for _, label in kept]}


def label_folders(kind: FileKind, root: Path, where: str, dropped: dict[str, int]) -> dict:
    rows = [
        (f, label_dir.name)
        for label_dir in sorted(d for d in root.iterdir() if d.is_dir())
        for f in kind.files_in(label_dir)
    ]
    if not rows:
        raise InputError(f"{where}: no <label>/{kind.pattern} {kind.noun} folders in {root}")
    return labelled_paths(kind, rows, where, dropped)


def load_folders(kind: FileKind, path: Path, src: str, dropped: dict[str, int]) -> dict:
    """{"train": columns[, "validation": columns]} from a folder."""
    if (path / "train").is_dir():
        splits = {"train": label_folders(kind, path / "train", f"{src} (train)", dropped)}
        held = next((path / n for n in VALIDATION_STEMS if (path / n).is_dir()), None)
        if held is not None:
            splits["validation"] = label_folders(kind, held, f"{src} ({held.name})", dropped)
        return splits
    if not any(d.is_dir() and kind.files_in(d) for d in path.iterdir()):
        raise InputError(
            f"{src}: folder holds no <label>/{kind.pattern} folders (nor train/ and "
            "validation/ folders of them)"
        )
    return {"train": label_folders(kind, path, src, dropped)}


def column(columns: list[str], given: str | None, known: tuple[str, ...], flag: str, where: str):
    """The column `given`, or the first whose name is `known`; one line naming the flag."""
    if given:
        if given not in columns:
            raise InputError(
                f"{where}: no column '{given}' (columns: {', '.join(columns)}); set {flag}"
            )
        return given
    found = next((c for c in columns if c.strip().lower() in known), None)
    if found is None:
        raise InputError(
            f"{where}: no {flag[2:].replace('-', ' ')} found (columns: "
            f"{', '.join(columns)}); set {flag}"
        )
    return found


def load_table(
    kind: FileKind,
    path: Path,
    path_column: str | None,
    label_column: str | None,
    dropped: dict[str, int],
) -> dict:
    """Columns from a CSV/TSV of path,label (paths relative to the table)."""
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        rows = list(
            csv.DictReader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        )
    if not rows:
        raise InputError(f"{path}: the file has a header but no rows")
    columns = list(rows[0])
    path_col = column(columns, path_column, kind.column_names, kind.flag, str(path))
    label_col = column(columns, label_column, LABEL_COLUMN_NAMES, "--label-column", str(path))
    paths = [(path.parent / r[path_col]).resolve() for r in rows]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(
            f"{path}: {len(missing)} {kind.noun} path(s) do not exist (first: {missing[0]}); "
            "paths are read relative to the file's folder"
        )
    labelled = [(p, str(r[label_col])) for p, r in zip(paths, rows, strict=True)]
    return labelled_paths(kind, labelled, str(path), dropped)
