"""Arrays as data for any ONNX model: the rows `bench` measures accuracy on and static INT8
calibrates on, when the model takes no text.

`--data X.npz` holds one array per graph input, named after it, rows first (and may hold the
labels as `labels`); `--data X.npy` is the one input of a one-input graph. `--labels Y.npy`
gives (or replaces) the labels. Arrays are loaded without pickle and cast to the dtype the
graph declares.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetune.errors import InputError

ARRAY_SUFFIXES = (".npz", ".npy")
LABELS_KEY = "labels"


def is_array_data(path: str | None) -> bool:
    return path is not None and Path(path).suffix.lower() in ARRAY_SUFFIXES


@dataclass
class ArrayData:
    inputs: dict[str, np.ndarray]  # graph input -> [rows, ...]
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def batches(self, batch_size: int, limit: int | None = None) -> list[dict[str, np.ndarray]]:
        """Consecutive batches of rows (the last may be short), at most `limit` rows in all."""
        rows = min(len(self), limit) if limit else len(self)
        return [{name: a[start:min(start + batch_size, rows)] for name, a in self.inputs.items()}
                for start in range(0, rows, batch_size)]

    def feed(self, batch_size: int) -> dict[str, np.ndarray]:
        """The first `batch_size` rows (repeated if there are fewer): what latency is timed on."""
        picks = np.arange(batch_size) % len(self)
        return {name: a[picks] for name, a in self.inputs.items()}


def _load(path: Path, what: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(f"{what} '{path}' does not exist; give a .npz or .npy file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"{what} '{path}' could not be read as NumPy arrays ({exc}); save them with "
                         "numpy.savez or numpy.save") from None
    if isinstance(loaded, np.ndarray):
        return {"": loaded}
    with loaded:
        return {name: loaded[name] for name in loaded.files}


def load_array_data(path: str | Path, input_dtypes: dict[str, np.dtype],
                    labels_path: str | Path | None = None) -> ArrayData:
    """The graph's inputs (`input_dtypes`: name -> dtype) read from `path`, checked for names
    and row counts; labels from `labels_path` or the file's `labels` array."""
    path = Path(path)
    arrays = _load(path, "--data")
    if "" in arrays:  # a bare .npy: the single input
        if len(input_dtypes) != 1:
            raise InputError(f"--data {path.name} is one array, but the model takes "
                             f"{', '.join(input_dtypes)}; save one array per input in a .npz")
        arrays = {next(iter(input_dtypes)): arrays[""]}
    missing = [name for name in input_dtypes if name not in arrays]
    if missing:
        raise InputError(f"--data {path.name} has no array '{missing[0]}' (it holds: "
                         f"{', '.join(arrays) or 'nothing'}); name each array after a model input")
    labels = arrays.get(LABELS_KEY)
    if labels_path is not None:
        labels = next(iter(_load(Path(labels_path), "--labels").values()))
    inputs = {name: np.asarray(arrays[name]).astype(dtype, copy=False) for name, dtype in input_dtypes.items()}
    counts = {name: len(a) if a.ndim else 0 for name, a in inputs.items()}
    if len(set(counts.values())) != 1 or 0 in counts.values():
        raise InputError(f"--data {path.name}: every input needs the same number of rows, at least "
                         f"one (found {counts})")
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(next(iter(inputs.values()))):
            raise InputError(f"{len(labels)} labels for {counts[next(iter(counts))]} rows of --data "
                             f"{path.name}; give one label per row")
        if not np.issubdtype(labels.dtype, np.integer):
            raise InputError("labels must be whole numbers (class indices of the model's output)")
    return ArrayData(inputs, labels)
