"""Load an image-classification dataset as train/validation splits of `image` and `label`.

Sources: a folder of `<label>/*.jpg|png` (a validation split held out), a folder with
`train/` and `validation/` (or `val/`, `test/`) folders of those, a CSV/TSV of path,label
(paths relative to the file), or a hub dataset with an image column. The `image` column is a
`datasets.Image` feature (decoded to PIL on access) whatever the source; unreadable files are
left out and counted, as empty rows are for text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import datasets

from edgetune.data.columns import LABEL_COLUMN_NAMES
from edgetune.data.hub_splits import load_hub_splits
from edgetune.data.labelled_files import TABLE_SUFFIXES, FileKind, column, load_folders, load_table
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
    return IMAGES.looks_like(source)


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
        raw = {k: _image_split(v) for k, v in load_folders(IMAGES, path, src, dropped).items()}
    elif path.is_file():
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise InputError(
                f"{src}: unsupported file type for images; give a folder of "
                "<label>/*.jpg folders or a .csv of path,label"
            )
        table = load_table(IMAGES, path, image_column, label_column, dropped)
        raw = {"train": _image_split(table)}
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


def _image_split(columns: dict) -> datasets.Dataset:
    return datasets.Dataset.from_dict(columns).cast_column("image", datasets.Image())


IMAGES = FileKind(
    "image", "*.jpg|png", IMAGE_SUFFIXES, "image", IMAGE_COLUMN_NAMES, "--image-column", _readable
)


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
    label_col = column(columns, label_column, LABEL_COLUMN_NAMES, "--label-column", dataset_id)
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
