"""Arrays as data for any ONNX model: the rows `bench` measures accuracy on and static INT8
calibrates on, when the model takes no text.

`--data X.npz` holds one array per graph input, named after it, rows first (and may hold the
labels as `labels`); `--data X.npy` is the one input of a one-input graph. `--labels Y.npy`
gives (or replaces) the labels. Arrays are loaded without pickle and cast to the dtype the
graph declares.
"""

from __future__ import annotations

import zipfile
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
    fixed_batch: int | None = None  # the graph's static first dimension, if it has one

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def batches(self, batch_size: int, limit: int | None = None) -> list[dict[str, np.ndarray]]:
        """Consecutive batches of rows (the last may be short), at most `limit` rows in all."""
        size = self.fixed_batch or batch_size
        rows = min(len(self), limit) if limit else len(self)
        if self.fixed_batch:
            rows = max(size, rows - rows % size)
        return [
            {name: a[start : min(start + size, rows)] for name, a in self.inputs.items()}
            for start in range(0, rows, size)
        ]

    def feed(self, batch_size: int) -> dict[str, np.ndarray]:
        """The first rows of a batch (repeated if there are fewer): what latency is timed on."""
        picks = np.arange(self.fixed_batch or batch_size) % len(self)
        return {name: a[picks] for name, a in self.inputs.items()}


def _load(path: Path, what: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(f"{what} '{path}' does not exist; give a .npz or .npy file")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"": loaded}
        with loaded:
            arrays = {name: loaded[name] for name in loaded.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        first = (str(exc).splitlines() or [exc.__class__.__name__])[0]
        raise InputError(
            f"{what} '{path}' could not be read as NumPy arrays ({first}); save plain "
            "numeric arrays with numpy.savez or numpy.save"
        ) from None
    if not arrays:
        raise InputError(f"{what} '{path}' holds no arrays")
    return arrays


def _cast(
    name: str, array: np.ndarray, dtype: np.dtype, dims: list[int | None], source: str
) -> np.ndarray:
    """`array` as the graph declares input `name`: rank, static dimensions, a safe dtype."""
    if array.ndim != len(dims) or any(
        d is not None and d != n for d, n in zip(dims[1:], array.shape[1:])
    ):
        shown = "x".join(str(d) if d else "N" for d in dims)
        raise InputError(
            f"--data {source}: '{name}' has shape {'x'.join(map(str, array.shape))}; the "
            f"model takes {shown} (rows first)"
        )
    if not np.can_cast(array.dtype, dtype, "same_kind"):
        raise InputError(f"--data {source}: '{name}' holds {array.dtype}, the model takes {dtype}")
    if np.issubdtype(dtype, np.integer) and array.size:
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise InputError(f"--data {source}: '{name}' has values outside {dtype}")
    return array.astype(dtype, copy=False)


def load_array_data(
    path: str | Path,
    specs: dict[str, tuple[np.dtype, list[int | None]]],
    labels_path: str | Path | None = None,
) -> ArrayData:
    """The graph's inputs (`specs`: name -> (dtype, dims)) read from `path`, checked for names,
    shapes, dtypes and row counts; labels from `labels_path` or the file's `labels` array."""
    path = Path(path)
    arrays = _load(path, "--data")
    if "" in arrays:  # a bare .npy: the single input
        if len(specs) != 1:
            raise InputError(
                f"--data {path.name} is one array, but the model takes "
                f"{', '.join(specs)}; save one array per input in a .npz"
            )
        arrays = {next(iter(specs)): arrays[""]}
    missing = [name for name in specs if name not in arrays]
    if missing:
        raise InputError(
            f"--data {path.name} has no array '{missing[0]}' (it holds: "
            f"{', '.join(arrays)}); name each array after a model input"
        )
    labels = arrays.get(LABELS_KEY)
    if labels_path is not None:
        given = _load(Path(labels_path), "--labels")
        labels = given.get(LABELS_KEY, given.get("", next(iter(given.values()))))
    inputs = {
        name: _cast(name, np.asarray(arrays[name]), dtype, dims, path.name)
        for name, (dtype, dims) in specs.items()
    }
    counts = {name: len(a) for name, a in inputs.items()}
    rows = next(iter(counts.values()))
    if len(set(counts.values())) != 1 or rows == 0:
        raise InputError(
            f"--data {path.name}: every input needs the same number of rows, at least "
            f"one (found {counts})"
        )
    fixed = {dims[0] for _, dims in specs.values() if dims and dims[0] is not None}
    fixed_batch = fixed.pop() if len(fixed) == 1 else None
    if fixed_batch and rows < fixed_batch:
        raise InputError(
            f"--data {path.name}: the model takes exactly {fixed_batch} rows per run; "
            f"give at least {fixed_batch}"
        )
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != rows:
            raise InputError(
                f"{len(labels)} labels for {rows} rows of --data {path.name}; give one "
                "label per row"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise InputError("labels must be whole numbers (class indices of the model's output)")
        if fixed_batch:  # the rows the whole batches cover
            labels = labels[: max(fixed_batch, rows - rows % fixed_batch)]
    return ArrayData(inputs, labels, fixed_batch)
