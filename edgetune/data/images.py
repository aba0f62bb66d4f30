"""Load an image-classification dataset as train/validation splits of `image` and `label`.

Sources: a folder of `<label>/*.jpg|png` (a validation split held out), a folder with
`train/` and `validation/` (or `val/`, `test/`) folders of those, a CSV/TSV of path,label
(paths relative to the file), or a hub dataset with an image column. The `image` column is a
`datasets.Image` feature (decoded to PIL on access) whatever the source; unreadable files are
left out and counted, as empty rows are for text.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from edgetune.data.columns import LABEL_COLUMN_NAMES
from edgetune.data.hub_splits import VALIDATION_STEMS, load_hub_splits
from edgetune.data.labels import labelled_splits
from edgetune.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif")
IMAGE_COLUMN_NAMES = (
    "image",
    "img",
    "path",
    "file",
    "filename",
    "image_path",
    "filepath",
    "pixels",
)
TABLE_SUFFIXES = (".csv", ".tsv")


@dataclass
class ImageDataset:
    """Two splits with `image` (PIL on access) and `label` columns, and the label names."""

    train: datasets.Dataset
    validation: datasets.Dataset
    label_names: list[str]
    source: str
    dropped: dict[str, int] = field(default_factory=dict)
    is_pair = False
    modality: object = field(default=None, repr=False, compare=False)  # set by its modality

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def looks_like_images(source: str | Path) -> bool:
    """A folder of label folders holding images, a train/ folder of those, or a table of paths."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() in TABLE_SUFFIXES:
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            header = next(csv.reader(handle, delimiter="\t" if path.suffix == ".tsv" else ","), [])
        return any(
            c.strip().lower() in IMAGE_COLUMN_NAMES[1:] or c.strip().lower() == "image"
            for c in header
        )
    if not path.is_dir():
        return False
    roots = [path / "train"] if (path / "train").is_dir() else [path]
    return any(_images_in(d) for root in roots for d in root.iterdir() if d.is_dir())


def load_image_dataset(
    source: str | Path,
    image_column: str | None = None,
    label_column: str | None = None,
    validation_fraction: float = 0.1,
    seed: int = 42,
    drop_unseen_labels: bool = False,
) -> ImageDataset:
    path, src = Path(source), str(source)
    dropped: dict[str, int] = {}
    if path.is_dir():
        raw = _load_folders(path, src, dropped)
    elif path.is_file():
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise InputError(
                f"{src}: unsupported file type for images; give a folder of "
                "<label>/*.jpg folders or a .csv of path,label"
            )
        raw = {"train": _load_table(path, image_column, label_column, dropped)}
    elif src.startswith((".", "/", "~")) or path.suffix.lower() in TABLE_SUFFIXES:
        raise InputError(f"{src}: no such file or folder")
    else:
        raw = _load_hub(src, image_column, label_column)
    splits = {}
    for name, split in raw.items():
        splits[name] = split.filter(
            lambda row: row["label"] is not None and str(row["label"]).strip() != ""
        )
        if len(split) - len(splits[name]):
            dropped[f"empty label ({name})"] = len(split) - len(splits[name])
    train, validation, names = labelled_splits(
        splits, dropped, src, validation_fraction, seed, drop_unseen_labels
    )
    return ImageDataset(train, validation, names, src, dropped)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _readable(paths: list[Path]) -> tuple[list[Path], int]:
    """The paths PIL opens and verifies; the count of the others. A decompression bomb (more
    pixels than PIL's `MAX_IMAGE_PIXELS`, from a small file) is one of the others: decoding
    it on access would take gigabytes."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    good = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for p in paths:
            try:
                with Image.open(p) as image:
                    image.verify()
                good.append(p)
            except (
                OSError,
                UnidentifiedImageError,
                SyntaxError,
                Image.DecompressionBombError,
                Image.DecompressionBombWarning,
            ):
                pass
    return good, len(paths) - len(good)


def _from_paths(
    paths: list[Path], labels: list[str], where: str, dropped: dict[str, int]
) -> datasets.Dataset:
    good, bad = _readable(paths)
    if bad:
        dropped[f"unreadable image ({where})"] = bad
    keep = set(good)
    rows = [(str(p), label) for p, label in zip(paths, labels, strict=True) if p in keep]
    if not rows:
        raise InputError(f"{where}: no readable image")
    ds = datasets.Dataset.from_dict({"image": [r[0] for r in rows], "label": [r[1] for r in rows]})
    return ds.cast_column("image", datasets.Image())


def _label_folders(root: Path, where: str, dropped: dict[str, int]) -> datasets.Dataset:
    paths, labels = [], []
    for label_dir in sorted(d for d in root.iterdir() if d.is_dir()):
        for image in _images_in(label_dir):
            paths.append(image)
            labels.append(label_dir.name)
    if not paths:
        raise InputError(f"{where}: no <label>/*.jpg|png image folders in {root}")
    return _from_paths(paths, labels, where, dropped)


def _load_folders(path: Path, src: str, dropped: dict[str, int]) -> dict[str, datasets.Dataset]:
    if (path / "train").is_dir():
        splits = {"train": _label_folders(path / "train", f"{src} (train)", dropped)}
        held = next((path / n for n in VALIDATION_STEMS if (path / n).is_dir()), None)
        if held is not None:
            splits["validation"] = _label_folders(held, f"{src} ({held.name})", dropped)
        return splits
    if not any(d.is_dir() and _images_in(d) for d in path.iterdir()):
        raise InputError(
            f"{src}: folder holds no <label>/*.jpg|png folders (nor train/ and "
            "validation/ folders of them)"
        )
    return {"train": _label_folders(path, src, dropped)}


def _column(
    columns: list[str], given: str | None, known: tuple[str, ...], flag: str, where: str
) -> str:
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


def _load_table(
    path: Path, image_column: str | None, label_column: str | None, dropped: dict[str, int]
) -> datasets.Dataset:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        rows = list(
            csv.DictReader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        )
    if not rows:
        raise InputError(f"{path}: the file has a header but no rows")
    columns = list(rows[0])
    image_col = _column(columns, image_column, IMAGE_COLUMN_NAMES, "--image-column", str(path))
    label_col = _column(columns, label_column, LABEL_COLUMN_NAMES, "--label-column", str(path))
    paths = [(path.parent / r[image_col]).resolve() for r in rows]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(
            f"{path}: {len(missing)} image path(s) do not exist (first: {missing[0]}); "
            "paths are read relative to the file's folder"
        )
    return _from_paths(paths, [str(r[label_col]) for r in rows], str(path), dropped)


def _load_hub(dataset_id: str, image_column: str | None, label_column: str | None):
    splits = load_hub_splits(dataset_id)
    columns = splits["train"].column_names
    image_col = image_column or next(
        (c for c in columns if isinstance(splits["train"].features[c], datasets.Image)), None
    )
    if image_col is None:
        raise InputError(
            f"{dataset_id}: no image column (columns: {', '.join(columns)}); set --image-column"
        )
    label_col = _column(columns, label_column, LABEL_COLUMN_NAMES, "--label-column", dataset_id)
    return {name: _hub_split(split, image_col, label_col) for name, split in splits.items()}


def _hub_split(split: datasets.Dataset, image_col: str, label_col: str) -> datasets.Dataset:
    feature = split.features[label_col]
    names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    split = split.select_columns([image_col, label_col]).cast_column(
        label_col, datasets.Value("int64") if names else datasets.Value("string")
    )
    split = split.map(
        lambda row: {"label": names[row[label_col]] if names else row[label_col]},
        remove_columns=[label_col] if label_col != "label" else [],
    )
    if image_col != "image":
        split = split.rename_column(image_col, "image")
    return split.cast_column("label", datasets.Value("string"))
