"""A hub dataset's train split and its held-out one: one loader for every modality."""

from __future__ import annotations

import datasets

from edgetune.errors import InputError
from edgetune.hub import check_hub_id

# a held-out split's names, in the order one is taken (files and hub splits alike)
VALIDATION_STEMS = ("validation", "valid", "val", "dev", "test")


def load_hub_splits(dataset_id: str) -> dict[str, datasets.Dataset]:
    """`train`, and `validation` where the dataset holds one of `VALIDATION_STEMS`; one clear
    line when it cannot be loaded or has no train split."""
    check_hub_id(dataset_id, "dataset", "data")
    try:
        loaded = datasets.load_dataset(dataset_id)
    except Exception as exc:  # noqa: BLE001 - network, auth, missing: all one message
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise InputError(
            f"{dataset_id}: not a local path, and the hub dataset could not be loaded "
            f"({exc.__class__.__name__}: {first_line})"
        ) from None
    if "train" not in loaded:
        raise InputError(f"{dataset_id}: the hub dataset has no 'train' split ({list(loaded)})")
    splits = {"train": loaded["train"]}
    held = next((name for name in VALIDATION_STEMS if name in loaded), None)
    if held:
        splits["validation"] = loaded[held]
    return splits
