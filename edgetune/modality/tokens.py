"""Token classification (named entities, PII, tagging): CoNLL or JSON/JSONL tagged sentences,
words tokenized as pre-split (`Words`), a tag per word read at its first sub-token, entity F1
measured on the ONNX model itself (`measure/tagging.py`).

A run is this modality's when its model is a token-classification checkpoint or its data is
tagged (a base model is given a new token-classification head). Everything a tokenizer does
(`prepare`, timing, vocabulary) is the text modality's.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgetune.console import console
from edgetune.data.encoding import Words, calibration_batches, sentences
from edgetune.deploy.batch_choice import SAMPLE_NAME as VALIDATION_SAMPLE
from edgetune.deploy.bundle import Bundle
from edgetune.errors import InputError
from edgetune.measure.bench import FALLBACK_TEXTS, EvalSet, Subject
from edgetune.measure.tagging import TaggedEvalSet
from edgetune.modality.base import BenchData, Prepared, holdout
from edgetune.modality.text import TextModality

TASK = "token-classification"


class TokenModality(TextModality):
    name = "tokens"
    tasks = (TASK,)

    @classmethod
    def claims_model(cls, model_source: str) -> bool:
        from edgetune.train.sources import is_token_model

        return is_token_model(model_source)

    @classmethod
    def claims_data(cls, data: str | None) -> bool:
        from edgetune.data.tagged import looks_tagged

        return looks_tagged(data)

    def check_trainable(self, model_source: str) -> str:
        from edgetune.train.sources import check_trainable

        return check_trainable(model_source, head="token")

    def load_data(self, config, seed: int, model_source: str):
        from edgetune.data.tagged import load_tagged_dataset

        columns = (config.text_column, config.label_column)
        return self.adopt(load_tagged_dataset(config.data, *columns, **holdout(config, seed)))

    def task(self, dataset) -> str:
        return TASK

    def load_pretrained(self, model_source: str, label_names: list[str]):
        from edgetune.train.tasks import TokenTask

        return TokenTask.load(model_source, label_names)

    def train_task(self, preprocessor, model, config):
        from edgetune.train.tasks import TokenTask

        names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        return TokenTask(preprocessor, config.max_length, names, config.group_by_length)

    @staticmethod
    def texts_of(split) -> list:
        return sentences(split)

    def evaluation(self, dataset, prepared: Prepared) -> EvalSet:
        return TaggedEvalSet.of_split(
            prepared.processor, dataset.validation, dataset.label_names, prepared.input_size
        )

    def loadtest_inputs(self, dataset) -> list | None:
        """What a client sends: the sentences as plain text."""
        return [" ".join(words) for words in sentences(dataset.validation)]

    @staticmethod
    def _task_of(texts: list) -> str:
        return TASK

    @staticmethod
    def _checkpoint_texts(checkpoint: Path, data: str | None) -> list[Words]:
        if data is not None:
            from edgetune.data.tagged import load_tagged_dataset

            return sentences(load_tagged_dataset(data).validation)
        sample = checkpoint / VALIDATION_SAMPLE
        if sample.is_file():
            return [Words(words) for words in json.loads(sample.read_text())]
        console.log(
            "no --data and no saved validation sample: checking the export on built-in sentences"
        )
        return [Words(text.split()) for text in FALLBACK_TEXTS]

    def bench_evaluation(self, bundle: Bundle, subject: Subject, data: BenchData) -> EvalSet:
        split = self._split(data, bundle.label_names)
        return TaggedEvalSet.of_split(
            subject.tokenizer, split, bundle.label_names, bundle.max_length
        )

    @staticmethod
    def _split(data: BenchData, label_names: list[str]):
        """The data's split, its tag ids renumbered to the bundle's names."""
        from edgetune.data.labels import pick_split
        from edgetune.data.tagged import load_tagged_dataset

        dataset = load_tagged_dataset(
            data.data, data.text_column, data.label_column, data.validation_fraction, data.seed
        )
        unknown = sorted(set(dataset.label_names) - set(label_names))
        if unknown:
            raise InputError(
                f"{data.data}: tags {unknown} are not the bundle's ({', '.join(label_names)})"
            )
        to_bundle = [label_names.index(name) for name in dataset.label_names]
        split = pick_split(dataset, data.split)
        return split.map(lambda row: {"tags": [to_bundle[t] for t in row["tags"]]})

    def bundle_calibration(self, bundle: Bundle, data: str, samples: int) -> list[dict]:
        from edgetune.data.tagged import load_tagged_dataset
        from edgetune.data.tokenizer import load_tokenizer

        texts = sentences(load_tagged_dataset(data).train)
        tokenizer = load_tokenizer(bundle.path)
        return calibration_batches(tokenizer, texts, bundle.max_length, samples, 0)

    def predictor(self, bundle: Bundle, threads: int = 0):
        from edgetune.deploy.runtime import TokenPredictor

        return TokenPredictor(bundle, threads)
