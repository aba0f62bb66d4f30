"""Labels shared by every modality's loader: string labels -> ids in a stable order, unseen
validation labels refused or dropped, a stratified hold-out, and renumbering to a model's order."""

from __future__ import annotations

import dataclasses

import datasets

from edgetune.errors import InputError


def labelled_splits(
    splits: dict[str, datasets.Dataset],
    dropped: dict[str, int],
    source: str,
    validation_fraction: float,
    seed: int,
    drop_unseen_labels: bool,
) -> tuple[datasets.Dataset, datasets.Dataset, list[str]]:
    """String labels -> ids (a `ClassLabel`), unseen validation labels refused or dropped (and
    counted in `dropped`), and a stratified hold-out when there is no validation split. Shared
    by every modality's loader."""
    if "validation" in splits:
        splits["validation"], unseen = _unseen_labels(splits, source, drop_unseen_labels)
        if unseen:
            dropped["validation label not in train"] = unseen
    label_names = _label_names([splits["train"]], source)
    to_id = {name: i for i, name in enumerate(label_names)}
    encoded = {
        name: split.map(lambda row: {"label": to_id[row["label"]]}).cast_column(
            "label", datasets.ClassLabel(names=label_names)
        )
        for name, split in splits.items()
    }
    if "validation" not in encoded:
        if len(encoded["train"]) < 2 * len(label_names):
            raise InputError(
                f"{source}: too few rows ({len(encoded['train'])}) to hold out a validation split"
            )
        held = encoded["train"].train_test_split(
            test_size=validation_fraction, seed=seed, stratify_by_column="label"
        )
        encoded = {"train": held["train"], "validation": held["test"]}
    return encoded["train"], encoded["validation"], label_names


def _unseen_labels(
    splits: dict[str, datasets.Dataset], source: str, drop: bool
) -> tuple[datasets.Dataset, int]:
    seen = set(splits["train"].unique("label"))
    unseen = sorted(set(splits["validation"].unique("label")) - seen)
    if not unseen:
        return splits["validation"], 0
    if not drop:
        raise InputError(
            f"{source}: validation labels {unseen} never occur in the training rows, "
            "so no model can learn them; fix the data or pass --drop-unseen-labels"
        )
    kept = splits["validation"].filter(lambda row: row["label"] in seen)
    return kept, len(splits["validation"]) - len(kept)


def _label_names(splits: list[datasets.Dataset], source: str) -> list[str]:
    names = sorted({v for s in splits for v in s.unique("label")})
    if len(names) < 2:
        raise InputError(
            f"{source}: the label column has only one class ({names[0] if names else 'none'}); "
            "classification needs at least two"
        )
    if all(n.lstrip("-").isdigit() for n in names):
        names.sort(key=int)
    return names


def align_labels(dataset, label_names: list[str]):
    """Re-number a dataset's labels to a model's label order (by name)."""
    if dataset.label_names == label_names:
        return dataset
    unknown = sorted(set(dataset.label_names) - set(label_names))
    if unknown:
        raise InputError(
            f"{dataset.source}: labels {unknown} are not among the model's {label_names}"
        )
    lookup = [label_names.index(name) for name in dataset.label_names]
    feature = datasets.ClassLabel(names=label_names)

    def remap(split: datasets.Dataset) -> datasets.Dataset:
        split = split.cast_column("label", datasets.Value("int64"))
        return split.map(lambda row: {"label": lookup[row["label"]]}).cast_column("label", feature)

    return dataclasses.replace(
        dataset,
        train=remap(dataset.train),
        validation=remap(dataset.validation),
        label_names=label_names,
    )  # any modality's dataset


def pick_split(dataset, split: str):
    if split == "all":
        return datasets.concatenate_datasets([dataset.train, dataset.validation])
    if split not in ("train", "validation"):
        raise InputError(f"unknown split '{split}': use train, validation or all")
    return getattr(dataset, split)


def evaluation_subset(dataset, rows: int, seed: int = 0):
    """`dataset` with at most `rows` of its validation rows, stratified by label and fixed by
    `seed`: cheaper progress checks during training (any modality's dataset)."""
    validation = dataset.validation
    if len(validation) <= rows:
        return dataset
    if "label" not in validation.column_names:  # tagged sentences: a plain seeded sample
        kept = validation.shuffle(seed=seed).select(range(rows))
        return dataclasses.replace(dataset, validation=kept)
    try:
        kept = validation.train_test_split(train_size=rows, seed=seed, stratify_by_column="label")[
            "train"
        ]
    except ValueError:  # a label not a ClassLabel, or a class too rare to stratify
        kept = validation.shuffle(seed=seed).select(range(rows))
    return dataclasses.replace(dataset, validation=kept)
