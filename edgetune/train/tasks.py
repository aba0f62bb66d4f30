"""The training loop's view of a modality's rows (texts, tagged sentences, images, clips):
one class each.

The loop (`train/loop.py`) asks a task for its model and preprocessor, the training and
validation rows as model inputs, the collator, the metrics training evaluates with, and the
metrics it reports (`validation_metrics`: in fp32, on the validation rows as the exported
model is scored); everything else (budget, LR, batch size, early stop, resume, distillation)
is shared. `metrics(...)["accuracy"]` is the headline every job reads (entity F1 for token
classification).
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import numpy as np

from edgetune.errors import InputError
from edgetune.measure.metrics import classification_metrics

IGNORED = -100  # a position the loss and the metrics skip (special tokens, later sub-tokens)


def _pretrained(model_source: str, label_names: list[str], model_class, preprocessor_class):
    """Pretrained weights + a new classification head sized for `label_names` (no remote code)."""
    id2label = dict(enumerate(label_names))
    try:
        preprocessor = preprocessor_class.from_pretrained(model_source, trust_remote_code=False)
        model = model_class.from_pretrained(
            model_source,
            ignore_mismatched_sizes=True,
            trust_remote_code=False,
            num_labels=len(label_names),
            id2label=id2label,
            label2id={name: i for i, name in id2label.items()},
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise InputError(f"model '{model_source}' could not be loaded: {first}") from None
    return model, preprocessor


def stacking_collator(key: str):
    """Rows of fixed-size tensors (pixels, audio clips) stacked, with their labels."""

    def collate(rows):
        import torch

        return {
            key: torch.stack([r[key] for r in rows]),
            "labels": torch.tensor([int(r["labels"]) for r in rows]),
        }

    return collate


def label_column(split: datasets.Dataset) -> np.ndarray:
    """A classifier's validation labels: one id per row."""
    return np.asarray(split["label"])


class OneLabelPerRow:
    """A classifier's tasks (texts, images, clips): the reported metrics are `metrics` of the
    fp32 logits on `batches` of the validation rows against `labels`."""

    def validation_metrics(self, model, split: datasets.Dataset) -> dict[str, float]:
        from edgetune.train.precision import fp32_logits

        return self.metrics(fp32_logits(model, self.batches(split)), self.labels(split))


@dataclass
class TextTask(OneLabelPerRow):
    tokenizer: object
    max_length: int
    group_by_length: bool = True
    remove_unused_columns = True  # the text column goes once tokenized

    @staticmethod
    def load(model_source: str, label_names: list[str]):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        return _pretrained(
            model_source, label_names, AutoModelForSequenceClassification, AutoTokenizer
        )

    def encode(self, split: datasets.Dataset, training: bool) -> datasets.Dataset:
        from edgetune.data.encoding import tokenize

        return split.map(
            lambda batch: tokenize(
                self.tokenizer, batch["text"], truncation=True, max_length=self.max_length
            ),
            batched=True,
            remove_columns=["text"],
        )

    def collator(self):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(self.tokenizer)

    def batches(self, split: datasets.Dataset, batch_size: int = 64) -> list[dict[str, np.ndarray]]:
        from edgetune.data.encoding import eval_batches

        return eval_batches(self.tokenizer, list(split["text"]), self.max_length, batch_size)

    labels = staticmethod(label_column)
    metrics = staticmethod(classification_metrics)


@dataclass
class ImageTask(OneLabelPerRow):
    processor: object
    channels: int = 3
    seed: int = 42
    group_by_length = False
    remove_unused_columns = False  # images are processed on access, from the `image` column

    @staticmethod
    def load(model_source: str, label_names: list[str]):
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        from edgetune.factory import is_factory

        if is_factory(model_source):  # a plain PyTorch model: a new head, resize + normalise
            from edgetune.train.plain import build

            return build(model_source, label_names)
        return _pretrained(
            model_source, label_names, AutoModelForImageClassification, AutoImageProcessor
        )

    def encode(self, split: datasets.Dataset, training: bool) -> datasets.Dataset:
        """Decoded and processed on access (`with_transform`): training rows augmented."""
        import torch

        from edgetune.data.pixels import augment, pixel_values

        rng = np.random.default_rng(self.seed)

        def transform(batch):
            images = [augment(i, rng) if training else i for i in batch["image"]]
            pixels = torch.from_numpy(pixel_values(self.processor, images, self.channels))
            return {"pixel_values": list(pixels), "labels": list(batch["label"])}

        return split.with_transform(transform)

    def collator(self):
        return stacking_collator("pixel_values")

    def batches(self, split: datasets.Dataset, batch_size: int = 64) -> list[dict[str, np.ndarray]]:
        from edgetune.data.pixels import pixel_batches

        return pixel_batches(self.processor, split["image"], self.channels, batch_size)

    labels = staticmethod(label_column)
    metrics = staticmethod(classification_metrics)


def aligned_labels(word_ids: list[int | None], tags: list[int]) -> list[int]:
    """A word's tag on its first sub-token; later sub-tokens and special tokens ignored."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(tags[word] if word is not None and word != previous else IGNORED)
        previous = word
    return labels


@dataclass
class TokenTask:
    """Token classification: words tokenized as pre-split (`is_split_into_words`), each
    word's tag on its first sub-token."""

    tokenizer: object
    max_length: int
    label_names: list[str]
    group_by_length: bool = True
    remove_unused_columns = True

    @staticmethod
    def load(model_source: str, label_names: list[str]):
        """The model and its tokenizer; a byte-level BPE tokenizer (RoBERTa, XLM-R's
        relatives) is loaded with `add_prefix_space`, which pre-split words need (each word is
        then read as if a space came before it, as it did in the sentence)."""
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        model, tokenizer = _pretrained(
            model_source, label_names, AutoModelForTokenClassification, AutoTokenizer
        )
        if getattr(tokenizer, "add_prefix_space", None) is False:
            tokenizer = AutoTokenizer.from_pretrained(
                model_source, add_prefix_space=True, trust_remote_code=False
            )
        return model, tokenizer

    def _encoded(self, tokens: list, tags: list) -> dict:
        encoded = self.tokenizer(
            tokens,
            is_split_into_words=True,
            truncation=True,
            max_length=self.max_length,
        )
        encoded["labels"] = [aligned_labels(encoded.word_ids(i), row) for i, row in enumerate(tags)]
        return encoded

    def encode(self, split: datasets.Dataset, training: bool) -> datasets.Dataset:
        return split.map(
            lambda batch: self._encoded(batch["tokens"], batch["tags"]),
            batched=True,
            remove_columns=["tokens", "tags"],
        )

    def collator(self):
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(self.tokenizer)

    def validation_metrics(self, model, split: datasets.Dataset) -> dict[str, float]:
        """Every word of every sentence, one longer than the model's window read in
        overlapping windows as the ONNX model is scored (`measure/tagging.py`), so the two
        agree; training's own evaluation (`metrics`) reads only the words the window holds."""
        from edgetune.data.encoding import eval_batches
        from edgetune.measure.tagging import TaggedEvalSet
        from edgetune.train.precision import fp32_logits

        evaluation = TaggedEvalSet.of_split(
            self.tokenizer, split, self.label_names, self.max_length
        )
        batches = eval_batches(self.tokenizer, evaluation.texts, self.max_length)
        return evaluation.metrics(fp32_logits(model, batches).argmax(-1))

    def metrics(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        from edgetune.measure.entities import token_logit_metrics

        return token_logit_metrics(logits, labels, self.label_names)


@dataclass
class AudioTask(OneLabelPerRow):
    """Audio clips: decoded on access, at the model's rate and the run's clip length, as
    `data/waveform.py` prepares them for the exported model too; training clips augmented
    (shift, gain, noise: `augment_clip`)."""

    processor: object  # data.waveform.AudioProcessor or data.logmel.LogMelProcessor
    samples: int
    seed: int = 42
    group_by_length = False
    remove_unused_columns = False  # clips are decoded on access, from the `audio` column

    @staticmethod
    def load(model_source: str, label_names: list[str]):
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        from edgetune.factory import is_factory

        if is_factory(model_source):  # a plain PyTorch model over log-mel features
            from edgetune.train.plain import build

            return build(model_source, label_names)
        return _pretrained(
            model_source, label_names, AutoModelForAudioClassification, AutoFeatureExtractor
        )

    def _values(self, paths: list[str], rng: np.random.Generator | None = None) -> np.ndarray:
        from edgetune.data.audio import read_clips
        from edgetune.data.waveform import augment_clip

        clips = read_clips(paths)
        if rng is not None:
            clips = [(augment_clip(samples, rate, rng), rate) for samples, rate in clips]
        return self.processor.batch(clips, self.samples)[self.processor.input_name]

    def encode(self, split: datasets.Dataset, training: bool) -> datasets.Dataset:
        import torch

        rng = np.random.default_rng(self.seed) if training else None

        def transform(batch):
            values = torch.from_numpy(self._values(batch["audio"], rng))
            return {self.processor.input_name: list(values), "labels": list(batch["label"])}

        return split.with_transform(transform)

    def collator(self):
        return stacking_collator(self.processor.input_name)

    def batches(self, split: datasets.Dataset, batch_size: int = 64) -> list[dict[str, np.ndarray]]:
        paths = list(split["audio"])
        return [
            {self.processor.input_name: self._values(paths[start : start + batch_size])}
            for start in range(0, len(paths), batch_size)
        ]

    labels = staticmethod(label_column)
    metrics = staticmethod(classification_metrics)
