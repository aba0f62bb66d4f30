"""A folder's `tokenizer.json` through the `tokenizers` package, called as transformers'
tokenizers are, so the runtime-only install (no transformers) tokenizes as training did.

transformers' fast tokenizers are this same `tokenizers` object; what they add per call is
the truncation and padding asked for, and the pad token from `tokenizer_config.json`. That is
what this class sets; `tests/test_image_processor.py` checks the ids agree with
transformers' on the tiny model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgetune.errors import InputError

TOKENIZER_FILE = "tokenizer.json"


class Encoded(dict):
    """The arrays, and (as transformers' `BatchEncoding.word_ids`) each position's word."""

    def __init__(self, arrays: dict[str, np.ndarray], words: list[list[int | None]]):
        super().__init__(arrays)
        self._words = words

    def word_ids(self, index: int = 0) -> list[int | None]:
        return self._words[index]


class JsonTokenizer:
    """`tokenizer(texts, seconds=None, padding=..., truncation=..., max_length=...)` -> numpy
    `input_ids`, `attention_mask`, `token_type_ids` (int64)."""

    def __init__(self, folder: str | Path):
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        self.tokenizer = Tokenizer.from_file(str(self.folder / TOKENIZER_FILE))
        config_file = self.folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        self.pad_token = _token(config.get("pad_token")) or "[PAD]"
        found = self.tokenizer.token_to_id(self.pad_token)
        self.pad_id = 0 if found is None else found
        self.padding_side = config.get("padding_side", "right")
        self.truncation_side = config.get("truncation_side", "right")

    @staticmethod
    def exists(folder: str | Path) -> bool:
        return (Path(folder) / TOKENIZER_FILE).is_file()

    def __call__(
        self,
        texts: Sequence[str],
        seconds: Sequence[str] | None = None,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str = "np",
        is_split_into_words: bool = False,
        verbose: bool = True,  # transformers' switch for its too-long warning: none given here
    ) -> Encoded:
        if truncation and max_length:
            self.tokenizer.enable_truncation(max_length, direction=self.truncation_side)
        else:
            self.tokenizer.no_truncation()
        if padding:
            length = max_length if padding == "max_length" else None
            self.tokenizer.enable_padding(
                direction=self.padding_side,
                pad_id=self.pad_id,
                pad_token=self.pad_token,
                length=length,
            )
        else:
            self.tokenizer.no_padding()
        inputs = list(texts) if seconds is None else list(zip(texts, seconds))
        encoded = self.tokenizer.encode_batch(inputs, is_pretokenized=is_split_into_words)
        return Encoded(
            {
                "input_ids": np.asarray([e.ids for e in encoded], dtype=np.int64),
                "attention_mask": np.asarray([e.attention_mask for e in encoded], dtype=np.int64),
                "token_type_ids": np.asarray([e.type_ids for e in encoded], dtype=np.int64),
            },
            [e.word_ids for e in encoded],
        )


def _token(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken's dict."""
    value = value.get("content") if isinstance(value, dict) else value
    return value if isinstance(value, str) else None


def load_tokenizer(folder: str | Path):
    """The folder's tokenizer: its tokenizer.json through `tokenizers` (what a deployment
    target has), or transformers' for a folder without one (a slow tokenizer's vocabulary)."""
    if JsonTokenizer.exists(folder):
        try:
            return JsonTokenizer(folder)
        except Exception:  # noqa: BLE001 - tokenizers raises plain Exceptions on a bad file
            raise InputError(f"{Path(folder) / TOKENIZER_FILE}: not a readable tokenizer") from None
    try:
        from transformers import AutoTokenizer
    except ModuleNotFoundError:
        raise InputError(
            f"no {TOKENIZER_FILE} in {folder}; pass --tokenizer DIR (a folder with one)"
        ) from None
    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except (OSError, ValueError, TypeError):
        raise InputError(f"no tokenizer in {folder}; pass --tokenizer DIR") from None
