"""Text classification, single texts or sentence pairs: tokenizer, text columns, padded batches.

The fallback modality: a model that no other modality claims is read as a text classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgetune.console import console
from edgetune.data.encoding import calibration_batches, eval_batches
from edgetune.deploy.batch_choice import SAMPLE_NAME as VALIDATION_SAMPLE
from edgetune.deploy.bundle import Bundle
from edgetune.measure.bench import FALLBACK_TEXTS, EvalSet, Subject
from edgetune.modality.base import BenchData, CheckpointInputs, Modality, Prepared, holdout
from edgetune.profiles import Profile

CHECK_ROWS = 128


def pair_task(texts: list) -> str:
    """The task of texts (a pair is a [first, second] list)."""
    pair = bool(texts) and isinstance(texts[0], (list, tuple))
    return "text-pair-classification" if pair else "text-classification"


class TextModality(Modality):
    name = "text"
    tasks = ("text-classification", "text-pair-classification")

    @classmethod
    def claims_model(cls, model_source: str) -> bool:
        return True  # asked last

    def check_source(self, model_source: str) -> None:
        from edgetune.train.sources import check_model_source

        check_model_source(model_source, images=False)

    def check_trainable(self, model_source: str) -> str:
        from edgetune.train.sources import check_trainable

        return check_trainable(model_source)

    def load_data(self, config, seed: int, model_source: str):
        from edgetune.data.images import looks_like_images
        from edgetune.data.text import load_text_dataset
        from edgetune.errors import InputError

        if looks_like_images(config.data):
            raise InputError(
                f"{config.data} holds images but model '{model_source}' is a text "
                "model; give an image-classification model (ViT, ResNet, ...)"
            )
        columns = (config.text_column, config.label_column)
        dataset = load_text_dataset(config.data, *columns, **holdout(config, seed))
        return self.adopt(dataset)

    def task(self, dataset) -> str:
        return "text-pair-classification" if dataset.is_pair else "text-classification"

    def load_pretrained(self, model_source: str, label_names: list[str]):
        from edgetune.train.tasks import TextTask

        return TextTask.load(model_source, label_names)

    def train_task(self, preprocessor, model, config):
        from edgetune.train.tasks import TextTask

        return TextTask(preprocessor, config.max_length, config.group_by_length)

    def prepare(self, model, preprocessor, profile: Profile, max_length: int) -> Prepared:
        return Prepared(preprocessor, max_length)

    @staticmethod
    def texts_of(split) -> list:
        """A split's inputs as the tokenizer takes them (`data/encoding.tokenize`)."""
        return list(split["text"])

    def calibration(self, dataset, prepared: Prepared, samples: int, seed: int) -> list[dict]:
        texts = self.texts_of(dataset.train)
        return calibration_batches(prepared.processor, texts, prepared.input_size, samples, seed)

    def evaluation(self, dataset, prepared: Prepared) -> EvalSet:
        texts = list(dataset.validation["text"])
        labels = np.asarray(dataset.validation["label"])
        return EvalSet(prepared.processor, texts, labels, prepared.input_size)

    def vocabulary(self, dataset, prepared: Prepared) -> object | None:
        """Every id the training texts give at the run's sequence length, with the special
        tokens; None when the tokenizer has no unknown token to send the others to."""
        from edgetune.compress.vocab import VocabularyUse
        from edgetune.data.encoding import tokenize

        tokenizer = prepared.processor
        if tokenizer.unk_token_id is None:
            return None
        texts = self.texts_of(dataset.train)
        encoded = tokenize(tokenizer, texts, truncation=True, max_length=prepared.input_size)
        used = {i for row in encoded["input_ids"] for i in row}
        return VocabularyUse(
            tuple(sorted(used | set(tokenizer.all_special_ids))), tokenizer.unk_token_id
        )

    def check_batches(self, dataset, prepared: Prepared) -> list[dict]:
        return self._check_batches(self.texts_of(dataset.validation), prepared)

    def _check_batches(self, texts: list, prepared: Prepared) -> list[dict]:
        return eval_batches(prepared.processor, texts[:CHECK_ROWS], prepared.input_size, 32)

    def keep_sample(self, checkpoint: Path, dataset) -> None:
        texts = self.texts_of(dataset.validation)[:CHECK_ROWS]
        (checkpoint / VALIDATION_SAMPLE).write_text(json.dumps(texts))

    def loadtest_inputs(self, dataset) -> list | None:
        return list(dataset.validation["text"])

    def checkpoint_inputs(
        self, checkpoint: Path, data: str | None, prepared: Prepared, calibration_samples: int
    ) -> CheckpointInputs:
        texts = self._checkpoint_texts(checkpoint, data)
        calibration = (
            calibration_batches(
                prepared.processor, texts, prepared.input_size, calibration_samples, 0
            )
            if calibration_samples
            else []
        )
        return CheckpointInputs(
            self._check_batches(texts, prepared), self._task_of(texts), calibration
        )

    @staticmethod
    def _task_of(texts: list) -> str:
        return pair_task(texts)

    @staticmethod
    def _checkpoint_texts(checkpoint: Path, data: str | None) -> list:
        if data is not None:
            from edgetune.data.text import load_text_dataset

            return list(load_text_dataset(data).validation["text"])
        sample = checkpoint / VALIDATION_SAMPLE
        if sample.is_file():
            return json.loads(sample.read_text())
        console.log(
            "no --data and no saved validation sample: checking the export on built-in sentences"
        )
        return FALLBACK_TEXTS

    def bench_subject(self, name: str, bundle: Bundle, data: BenchData, profile: Profile):
        from edgetune.data.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(bundle.path)
        return Subject(name, bundle.model_path, tokenizer, max_length=bundle.max_length)

    def bench_evaluation(self, bundle: Bundle, subject: Subject, data: BenchData) -> EvalSet:
        split = self.split_of(data, bundle.label_names)
        texts, labels = list(split["text"]), np.asarray(split["label"])
        return EvalSet(subject.tokenizer, texts, labels, bundle.max_length)

    @staticmethod
    def split_of(data: BenchData, label_names: list[str] | None):
        """The data's split, its labels renumbered to `label_names` (by name) when given."""
        from edgetune.data.labels import align_labels, pick_split
        from edgetune.data.text import load_text_dataset

        dataset = load_text_dataset(
            data.data, data.text_column, data.label_column, data.validation_fraction, data.seed
        )
        if label_names:  # the data's label ids, renumbered to the model's order by name
            dataset = align_labels(dataset, label_names)
        return pick_split(dataset, data.split)

    def bundle_calibration(self, bundle: Bundle, data: str, samples: int) -> list[dict]:
        from edgetune.data.text import load_text_dataset
        from edgetune.data.tokenizer import load_tokenizer

        texts = list(load_text_dataset(data).train["text"])
        tokenizer = load_tokenizer(bundle.path)
        return calibration_batches(tokenizer, texts, bundle.max_length, samples, 0)

    def predictor(self, bundle: Bundle, threads: int = 0):
        from edgetune.deploy.runtime import Predictor

        return Predictor(bundle, threads)
