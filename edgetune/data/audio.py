"""Load an audio-classification dataset as train/validation splits of `audio` (file paths)
and `label`.

Sources: a folder of `<label>/*.wav|flac|ogg` (a validation split held out), a folder with
`train/` and `validation/` folders of those, or a CSV/TSV of path,label (paths relative to the
file). Files soundfile cannot decode are left out and counted. Clips are decoded when used
(`data/waveform.py`: mono, resampled to the model's rate, cut or padded to the clip length).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import datasets

from edgetune.data.labelled_files import FileKind, load_folders, load_table
from edgetune.data.labels import labelled_splits
from edgetune.data.waveform import AUDIO_SUFFIXES
from edgetune.errors import InputError

AUDIO_COLUMN_NAMES = ("audio", "path", "file", "filename", "audio_path", "filepath", "wav")


def _decodable(paths: list[Path]) -> tuple[list[Path], int]:
    """The paths soundfile reads a header from, with samples at a usable rate."""
    import soundfile

    from edgetune.data.waveform import MIN_RATE

    good = []
    for path in paths:
        try:
            info = soundfile.info(str(path))
        except (soundfile.LibsndfileError, RuntimeError, OSError):
            continue
        if info.frames > 0 and info.samplerate >= MIN_RATE:
            good.append(path)
    return good, len(paths) - len(good)


# a table's path column: `--audio-column`, another name of `--image-column` (file paths)
AUDIO = FileKind(
    "audio file",
    "*.wav|flac|ogg",
    AUDIO_SUFFIXES,
    "audio",
    AUDIO_COLUMN_NAMES,
    "--audio-column",
    _decodable,
)


@dataclass
class AudioDataset:
    """Two splits with `audio` (a path) and `label` columns, and the label names."""

    train: datasets.Dataset
    validation: datasets.Dataset
    label_names: list[str]
    source: str
    dropped: dict[str, int] = field(default_factory=dict)
    is_pair = False
    modality: object = field(default=None, repr=False, compare=False)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def looks_like_audio(source: str | Path | None) -> bool:
    return source is not None and AUDIO.looks_like(source)


def load_audio_dataset(
    source: str | Path,
    path_column: str | None = None,
    label_column: str | None = None,
    validation_fraction: float = 0.1,
    seed: int = 42,
    drop_unseen_labels: bool = False,
) -> AudioDataset:
    path, src = Path(source), str(source)
    dropped: dict[str, int] = {}
    if path.is_dir():
        raw = load_folders(AUDIO, path, src, dropped)
    elif path.is_file() and path.suffix.lower() in (".csv", ".tsv"):
        raw = {"train": load_table(AUDIO, path, path_column, label_column, dropped)}
    else:
        raise InputError(f"{src}: give a folder of <label>/*.wav folders or a .csv of path,label")
    splits = {name: datasets.Dataset.from_dict(columns) for name, columns in raw.items()}
    train, validation, names = labelled_splits(
        splits, dropped, src, validation_fraction, seed, drop_unseen_labels
    )
    return AudioDataset(train, validation, names, src, dropped)


def read_clips(paths: list[str]) -> list[tuple]:
    """(samples, rate) of each file, decoded."""
    from edgetune.data.waveform import decode

    return [decode(p) for p in paths]
