"""What a kind of input (text, images, ...) must answer for every job, asked in one place.

A `Modality` is chosen once: from the model for a run that trains (`modality.for_model`), from
the manifest's task for a bundle (`modality.for_bundle`). The jobs ask it; none branches on a
kind. Its pieces live in their layers (loaders in `data/`, the training task in `train/tasks.py`,
the runtime predictor in `deploy/runtime.py`); a modality module only says which ones it uses.
Instances hold no state, so a dataset can carry its modality to the training loop and to Ray.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edgetune.deploy.bundle import Bundle
from edgetune.measure.bench import EvalSet, Subject
from edgetune.measure.front_end import FrontEnd
from edgetune.profiles import Profile


@dataclass(frozen=True)
class Prepared:
    """The preprocessing a run's models share, settled once after training: the processor
    (tokenizer, or image processor at the profile's size), the input size (sequence length or
    image side: what the manifest records as `max_length`) and the image channels."""

    processor: object
    input_size: int
    channels: int = 3


@dataclass(frozen=True)
class BenchData:
    """What `bench` reads for a bundle: the data file or folder, the split and its columns."""

    data: str | None
    split: str = "validation"
    text_column: str | None = None
    label_column: str | None = None
    validation_fraction: float = 0.1
    seed: int = 42


@dataclass(frozen=True)
class CheckpointInputs:
    """What `export` runs a checkpoint on: the batches checked against PyTorch, the task they
    imply, and static-INT8 calibration batches (empty unless asked for)."""

    check_batches: list[dict]
    task: str
    calibration: list[dict]


def holdout(config, seed: int) -> dict:
    """How a run's data is split: the loaders' hold-out keywords, from a TuneConfig-like object
    (a config without them, e.g. prune's, takes the loaders' defaults)."""
    return {
        "validation_fraction": getattr(config, "validation_fraction", 0.1),
        "seed": seed,
        "drop_unseen_labels": getattr(config, "drop_unseen_labels", False),
    }


def bundle_split(load, bundle: Bundle, data: BenchData):
    """`data`'s split as a file modality's loader `load` reads it (path column detected), its
    labels renumbered to the bundle's by name."""
    from edgetune.data.labels import align_labels, pick_split

    dataset = load(data.data, None, data.label_column, data.validation_fraction, data.seed)
    return pick_split(align_labels(dataset, bundle.label_names), data.split)


class Modality(ABC):
    name: ClassVar[str]
    tasks: ClassVar[tuple[str, ...]]  # the manifest tasks it writes and reads

    # -- choosing ---------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def claims_model(cls, model_source: str) -> bool:
        """Whether `model_source` (folder, hub id, factory, checkpoint) is this modality's."""

    @classmethod
    def claims_data(cls, data: str | None) -> bool:
        """Whether `data` is of a form only this modality reads (a base model is then given
        this modality's head); asked after every modality has declined the model."""
        return False

    def claims_task(self, task: str) -> bool:
        return task in self.tasks

    def adopt(self, dataset):
        """`dataset` marked as this modality's: the training loop and the search ask it."""
        dataset.modality = self
        return dataset

    # -- a run that trains ------------------------------------------------------------------
    @abstractmethod
    def check_source(self, model_source: str) -> None:
        """Before anything is loaded: the source exists (folder or hub id) and has a head."""

    @abstractmethod
    def check_trainable(self, model_source: str) -> str:
        """The model type, after checking the architecture has this modality's head."""

    def check_profile(self, model_source: str, profile: Profile) -> None:
        """Before training: the profile's input settings suit the model (nothing by default)."""

    @abstractmethod
    def load_data(self, config, seed: int, model_source: str):
        """The data of `config` (a TuneConfig-like object) as train/validation splits that carry
        this modality (`dataset.modality`)."""

    @abstractmethod
    def task(self, dataset) -> str:
        """The manifest's task for a model trained on `dataset`."""

    @abstractmethod
    def load_pretrained(self, model_source: str, label_names: list[str]):
        """Pretrained weights with a new head for `label_names`, and the preprocessor."""

    @abstractmethod
    def train_task(self, preprocessor, model, config):
        """The training loop's view of the rows (`train/tasks.py`), for a TrainConfig."""

    @abstractmethod
    def prepare(self, model, preprocessor, profile: Profile, max_length: int) -> Prepared:
        """The preprocessing every candidate of a run is exported, evaluated and timed with."""

    @abstractmethod
    def calibration(self, dataset, prepared: Prepared, samples: int, seed: int) -> list[dict]:
        """Static-INT8 calibration batches from the training rows."""

    @abstractmethod
    def evaluation(self, dataset, prepared: Prepared) -> EvalSet:
        """The validation rows as ONNX accuracy is measured on them."""

    @abstractmethod
    def check_batches(self, dataset, prepared: Prepared) -> list[dict]:
        """A slice of validation inputs an export is checked against PyTorch on."""

    def latency_feed(self, dataset, prepared: Prepared, profile: Profile) -> dict | None:
        """The fixed batch latency is timed on (None: the bench builds it from the processor)."""
        return None

    def vocabulary(self, dataset, prepared: Prepared) -> object | None:
        """The token ids the training rows use (`compress.vocab.VocabularyUse`, for
        `vocab-trim`); None: this modality's models have no vocabulary to trim."""
        return None

    def keep_sample(self, checkpoint: Path, dataset) -> None:
        """Leave in the checkpoint what a later `export` of it checks on (nothing by default)."""

    @abstractmethod
    def checkpoint_inputs(
        self, checkpoint: Path, data: str | None, prepared: Prepared, calibration_samples: int
    ) -> CheckpointInputs:
        """For `export` of a checkpoint: the data's validation rows, or what the checkpoint kept
        (`keep_sample`), or stand-ins; calibration from the same rows."""

    def loadtest_inputs(self, dataset) -> list | None:
        """What `tune --loadtest` sends (None: this modality is not load-tested over HTTP)."""
        return None

    def front_end(self, dataset, prepared: Prepared, profile: Profile) -> FrontEnd | None:
        """The work before the model on a batch of the data's inputs, timed apart from the
        model (`measure/front_end.py`); None: nothing worth timing beside the model."""
        return None

    # -- a bundle ---------------------------------------------------------------------------
    @abstractmethod
    def bench_subject(self, name: str, bundle: Bundle, data: BenchData, profile: Profile):
        """The bundle as `bench` times it (its own preprocessing, the data's inputs or a
        stand-in)."""

    @abstractmethod
    def bench_evaluation(self, bundle: Bundle, subject: Subject, data: BenchData) -> EvalSet:
        """The data's rows, labels renumbered to the bundle's, as accuracy is measured."""

    @abstractmethod
    def bundle_calibration(self, bundle: Bundle, data: str, samples: int) -> list[dict]:
        """Calibration batches for `quantize` of a bundle, from `data`'s training rows."""

    @abstractmethod
    def predictor(self, bundle: Bundle, threads: int = 0):
        """The runtime predictor (onnxruntime and the bundle's processor files; no torch)."""
