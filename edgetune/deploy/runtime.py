"""Run a bundle on new texts with what a server already has: onnxruntime, tokenizers, numpy.

No torch and no transformers modeling code are imported here (a test checks the import set):
the bundle is the only input. Texts are tokenized with the bundle's `tokenizer.json` exactly
as in training (same normalizer, special tokens, truncation at the manifest's max length),
padded per batch, and the logits turned into a label and a score per label.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgetune.data.columns import (
    LABEL_COLUMN_NAMES,
    TEXT_COLUMN_NAMES,
    detect_pair,
    split_text_columns,
)
from edgetune.deploy.bundle import Bundle, load_bundle
from edgetune.errors import InputError
from edgetune.measure.session import create_session


def bundle_session(bundle: Bundle, threads: int | None = None) -> ort.InferenceSession:
    """A CPU session on the bundle with the session settings it records (tuned where it runs;
    the defaults and its profile's threads if none); `threads` given (0: all cores) overrides
    the thread count alone."""
    profile = bundle.manifest.profile
    settings = bundle.manifest.session
    if threads is not None and settings is not None:
        settings = settings.model_copy(update={"intra_op_threads": None})
    cpu = profile.model_copy(
        update={
            "device": "cpu",
            "execution_providers": ["CPUExecutionProvider"],
            "intra_op_threads": profile.intra_op_threads if threads is None else threads,
        }
    )
    return create_session(bundle.model_path, cpu, settings)


class Predictor:
    """A bundle loaded for prediction on the CPU, with its recorded session settings
    (`bundle_session`; `threads` overrides their thread count, 0 = all cores)."""

    takes = "texts"  # what `predict` hands it

    def __init__(self, bundle: str | Path | Bundle, threads: int | None = None):
        from tokenizers import Tokenizer

        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        if self.bundle.manifest.task == "image-classification":
            raise InputError(
                f"{self.bundle.path}: an image bundle; this takes texts (for images: "
                "edgetune predict BUNDLE --image FILE)"
            )
        tokenizer_file = self.bundle.path / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise InputError(
                f"{self.bundle.path}: no tokenizer.json in the bundle (needed to "
                "predict without transformers)"
            )
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.enable_truncation(self.bundle.max_length)
        self.tokenizer.enable_padding(pad_id=self._pad_id(), pad_token=self._pad_token())
        self.session = bundle_session(self.bundle, threads)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.labels = self.bundle.label_names
        self.pairs = self.bundle.pairs

    def _pad_token(self) -> str:
        config = self.bundle.path / "tokenizer_config.json"
        token = json.loads(config.read_text()).get("pad_token") if config.is_file() else None
        return token if isinstance(token, str) else "[PAD]"

    def _pad_id(self) -> int:
        found = self.tokenizer.token_to_id(self._pad_token())
        return 0 if found is None else found

    def logits(self, texts: list) -> np.ndarray:
        """Logits for texts, or for [first, second] pairs (encoded as pairs, with segment ids)."""
        encoded = self.tokenizer.encode_batch(
            [t if isinstance(t, str) else tuple(t) for t in texts]
        )
        arrays = {
            "input_ids": [e.ids for e in encoded],
            "attention_mask": [e.attention_mask for e in encoded],
            "token_type_ids": [e.type_ids for e in encoded],
        }
        feed = {name: np.asarray(arrays[name], dtype=np.int64) for name in self.inputs}
        return self.session.run(None, feed)[0].astype(np.float32)

    def predict(self, texts: list) -> list[dict]:
        """[{"label": best, "scores": {label: probability}}] for each text (or pair)."""
        return label_scores(self.logits(list(texts)), self.labels)

    def csv_header(self) -> list[str]:
        return ["label", *(f"score_{n}" for n in self.labels)]

    @staticmethod
    def csv_values(result: dict) -> list:
        return [result["label"], *result["scores"].values()]


# Words as CoNLL-style corpora split them: runs of word characters (with inner hyphens and
# apostrophes), and each other non-space character alone (punctuation is a token of its own).
WORD = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]")


def split_words(text: str) -> list[tuple[int, int]]:
    """The (start, end) character offsets of `text`'s words (`WORD`)."""
    return [match.span() for match in WORD.finditer(text)]


class TokenPredictor:
    """A token-classification bundle on raw texts: each text split into words (`WORD`),
    tokenized as pre-split words with the bundle's tokenizer.json, each word tagged at its
    first sub-token, entities read from the BIO tags with their character offsets."""

    takes = "texts"
    pairs = False

    def __init__(self, bundle: Bundle, threads: int | None = None):
        from edgetune.data.tokenizer import JsonTokenizer

        self.bundle, self.labels = bundle, bundle.label_names
        if not JsonTokenizer.exists(bundle.path):
            raise InputError(
                f"{bundle.path}: no tokenizer.json in the bundle (needed to predict without "
                "transformers)"
            )
        self.tokenizer = JsonTokenizer(bundle.path)
        self.session = bundle_session(bundle, threads)
        self.inputs = [i.name for i in self.session.get_inputs()]

    def _tags(self, texts: list[str]) -> tuple[list, list[list[str]]]:
        """Each text's word spans and each word's tag: a text longer than the model's window
        is read in overlapping windows (`data/windows.py`), so every word gets a tag."""
        from edgetune.data.encoding import tokenize
        from edgetune.data.windows import windowed
        from edgetune.measure.entities import first_positions, word_tags

        offsets = [split_words(text) for text in texts]
        words = [[text[a:b] for a, b in spans] or [""] for text, spans in zip(texts, offsets)]
        windows = windowed(self.tokenizer, words, self.bundle.max_length)
        encoded = tokenize(
            self.tokenizer,
            windows.rows,
            padding=True,
            truncation=True,
            max_length=self.bundle.max_length,
        )
        logits = self.session.run(None, {name: encoded[name] for name in self.inputs})[0]
        positions = [first_positions(encoded.word_ids(i)) for i in range(len(windows.rows))]
        counts = [len(row) for row in windows.rows]
        tags = word_tags(logits.argmax(-1), positions, self.labels, counts)
        return offsets, windows.stitch(tags)

    def predict(self, texts: list[str]) -> list[dict]:
        """For each text: {"entities": [{"type", "start", "end", "text", "words"}], "words":
        [{"word", "start", "end", "tag"}]} (offsets in characters, end exclusive)."""
        from edgetune.measure.entities import entities_with_offsets

        offsets, tags = self._tags(texts)
        return [
            {
                "entities": entities_with_offsets(spans, row[: len(spans)], text),
                "words": [
                    {"word": text[a:b], "start": a, "end": b, "tag": tag}
                    for (a, b), tag in zip(spans, row)
                ],
            }
            for text, spans, row in zip(texts, offsets, tags)
        ]

    def csv_header(self) -> list[str]:
        return ["entities", "tags"]

    @staticmethod
    def csv_values(result: dict) -> list:
        entities = [{k: e[k] for k in ("type", "start", "end", "text")} for e in result["entities"]]
        return [json.dumps(entities), " ".join(w["tag"] for w in result["words"])]


def label_scores(logits: np.ndarray, labels: list[str]) -> list[dict]:
    """Softmax of each row: the best label and a probability per label."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    return [
        {
            "label": labels[int(p.argmax())],
            "scores": {name: round(float(v), 6) for name, v in zip(labels, p)},
        }
        for p in probabilities
    ]


class ImagePredictor:
    """An image bundle on image files: ONNX Runtime, and the bundle's preprocessor_config.json
    applied with Pillow and numpy (data/image_processor.py), as in training."""

    takes = "images"

    def __init__(self, bundle: Bundle, threads: int | None = None):
        from edgetune.data.image_processor import load_image_processor

        self.bundle, self.labels = bundle, bundle.label_names
        self.processor = load_image_processor(bundle.path)
        self.session = bundle_session(bundle, threads)
        self.channels = bundle.channels

    def predict(self, paths: list[str | Path]) -> list[dict]:
        from edgetune.data.pixels import open_image, pixel_values

        images = [open_image(path) for path in paths]
        logits = self.session.run(
            None, {"pixel_values": pixel_values(self.processor, images, self.channels)}
        )[0]
        return label_scores(logits.astype(np.float32), self.labels)


class AudioPredictor:
    """An audio bundle on clips (files, WAV bytes, or samples with their rate): decoded,
    mixed to mono, resampled and cut or padded as in training (data/waveform.py), then ONNX
    Runtime."""

    takes = "audio"
    pairs = False

    def __init__(self, bundle: Bundle, threads: int | None = None):
        from edgetune.data.front_end import load_audio_processor

        self.bundle, self.labels = bundle, bundle.label_names
        self.processor = load_audio_processor(bundle.path)
        self.session = bundle_session(bundle, threads)

    def predict_clips(self, clips: list[tuple[np.ndarray, int]]) -> list[dict]:
        """(samples, rate) pairs -> [{"label", "scores"}]; a clip longer than the model hears
        (the bundle's clip length) also says so: {"cut": {"seconds", "heard_seconds"}}."""
        feed = self.processor.batch(clips, self.bundle.max_length)
        results = label_scores(self.session.run(None, feed)[0].astype(np.float32), self.labels)
        heard = self.bundle.max_length / self.processor.sampling_rate
        for result, (samples, rate) in zip(results, clips):
            seconds = len(samples) / rate
            if seconds * self.processor.sampling_rate > self.bundle.max_length + 1:
                result["cut"] = {"seconds": round(seconds, 3), "heard_seconds": round(heard, 3)}
        return results

    def predict(self, sources: list[str | Path | bytes]) -> list[dict]:
        """Files or WAV bytes -> [{"label", "scores"}]."""
        from edgetune.data.waveform import decode

        return self.predict_clips([decode(s) for s in sources])


def read_rows(
    path: Path, text_column: str | None, pairs: bool = False
) -> tuple[Iterator[dict], list[str], str | None]:
    """Stream rows of a CSV/TSV/JSONL file; the text column(s) (given, `a,b` for a pair, or
    known by name) and the label column if there is one."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl"):
        raise InputError(f"{path}: use a .csv, .tsv or .jsonl file of texts")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if suffix == ".jsonl":
        with path.open() as handle:
            first = next((json.loads(line) for line in handle if line.strip()), {})
        columns = list(first)

        def rows() -> Iterator[dict]:
            with path.open() as handle:
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        try:
                            yield json.loads(line)
                        except json.JSONDecodeError as exc:
                            raise InputError(
                                f"{path}, line {number}: not valid JSON ({exc.msg})"
                            ) from None
    else:
        delimiter = "\t" if suffix == ".tsv" else ","
        with path.open(newline="") as handle:
            columns = next(csv.reader(handle, delimiter=delimiter), [])

        def rows() -> Iterator[dict]:
            with path.open(newline="") as handle:
                yield from csv.DictReader(handle, delimiter=delimiter)

    named = split_text_columns(text_column)
    if pairs:
        texts = named or detect_pair(columns)
        if texts is None or len(texts) != 2:
            raise InputError(
                f"{path}: the model classifies sentence pairs and no pair of text "
                f"columns was found (columns: {', '.join(columns)}); set --text-column a,b"
            )
    elif named and len(named) == 2:
        raise InputError(
            f"--text-column {text_column}: the model classifies single texts; name one column"
        )
    else:
        texts = named or [next((c for c in columns if c.lower() in TEXT_COLUMN_NAMES), "text")]
    missing = [c for c in texts if c not in columns]
    if missing:
        raise InputError(
            f"{path}: no text column '{missing[0]}' (columns: "
            f"{', '.join(columns)}); set --text-column"
        )
    label = next((c for c in columns if c.lower() in LABEL_COLUMN_NAMES and c not in texts), None)
    return rows(), texts, label
