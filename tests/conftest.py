"""Fixtures: a tiny random-init BERT built from a config, and small generated datasets.

Everything here is offline and takes seconds. Tests on real data read SHARED_DATA and carry
the `slow` marker. The session fixtures are made once for the whole run, whichever xdist
process asks first (`made_once`): each process used to make its own `tuned_run` and
`search_run`, three tunes where one does.
"""

from __future__ import annotations

import csv
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from filelock import FileLock

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
POSITIVE = ["good", "great", "fine", "lovely", "superb", "happy"]
NEGATIVE = ["bad", "awful", "poor", "sad", "terrible", "ugly"]
FILLER = [
    "the",
    "a",
    "movie",
    "was",
    "plot",
    "and",
    "it",
    "very",
    "quite",
    "story",
    "actor",
    "film",
]


def make_rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Texts whose label is given by which sentiment words they hold."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        cue = POSITIVE if label == "positive" else NEGATIVE
        words = rng.choices(FILLER, k=rng.randint(3, 10)) + rng.choices(cue, k=2)
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def write_csv(path: Path, rows, header=("text", "label"), delimiter=",") -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def made_once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """`root/name`, made by `make` once for this pytest run: the first xdist process makes it
    under a lock, the others wait for it and read it (tests must not change what they get)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # this run's folder, above each process's own
    folder = root / name
    with FileLock(str(root / f"{name}.lock")):
        if not (root / f"{name}.done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            make(folder)
            (root / f"{name}.done").touch()
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, hidden-32 BERT with random weights and a word-level vocabulary."""
    return made_once(tmp_path_factory, "tiny-bert", _make_tiny_bert)


def _make_tiny_bert(folder: Path, extra_tokens: tuple[str, ...] = ()) -> None:
    """`extra_tokens`: appended to the vocabulary (tokens no tiny text uses)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER]
    vocab += extra_tokens
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)


@pytest.fixture(scope="session")
def tiny_data_csv(tmp_path_factory) -> Path:
    folder = made_once(
        tmp_path_factory, "tiny-data", lambda f: write_csv(f / "reviews.csv", make_rows(240))
    )
    return folder / "reviews.csv"


@pytest.fixture(scope="session")
def tiny_profile(tmp_path_factory) -> Path:
    """A CPU profile with a generous budget and quick latency settings."""
    return made_once(tmp_path_factory, "profiles", _write_tiny_profile) / "tiny.toml"


def _write_tiny_profile(folder: Path) -> None:
    path = folder / "tiny.toml"
    path.write_text(
        'name = "tiny"\ndevice = "cpu"\nexecution_providers = ["CPUExecutionProvider"]\n'
        "intra_op_threads = 1\nbatch_size = 1\nsequence_length = 32\nlatency_budget_ms = 1000.0\n"
        'precisions = ["fp32", "int8"]\nmeasure_seconds = 0.2\n'
    )


TINY_TRAIN = ["--epochs", "8", "--lr", "3e-3", "--batch-size", "16", "--patience", "8"]


def tune_tiny(out: Path, model: Path, data: Path, profile: Path, *args: object):
    """`edgetune tune` on the tiny model in this process; the click result."""
    from click.testing import CliRunner

    from edgetune.cli import cli

    return CliRunner().invoke(
        cli,
        [
            str(a)
            for a in (
                "tune",
                "--no-tune-session",  # timed in test_session_tuning
                "--model",
                model,
                "--data",
                data,
                "--profile",
                profile,
                "--out",
                out,
                *args,
            )
        ],
    )


@pytest.fixture(scope="session")
def tuned_run(tmp_path_factory, tiny_model_dir, tiny_data_csv, tiny_profile):
    """One `edgetune tune` on the tiny model, shared by the tests that read its outputs (with
    the session tuning that other test runs leave out): the run folder, and its output."""

    def make(folder: Path) -> None:
        args = (*TINY_TRAIN, "--tune-session")
        result = tune_tiny(folder / "out", tiny_model_dir, tiny_data_csv, tiny_profile, *args)
        assert result.exit_code == 0, result.output
        (folder / "output.txt").write_text(result.output)

    folder = made_once(tmp_path_factory, "run", make)
    return folder / "out", SimpleNamespace(output=(folder / "output.txt").read_text())


SEARCH_ARGS = [
    "--epochs",
    "6",
    "--lr",
    "3e-3",
    "--batch-size",
    "16",
    "--patience",
    "6",
    "--modes",
    "fp32,dynamic-int8",
    "--prune-search",
    "--prune-configs",
    "L1,F0.5,L1-H0.5-F0.5",
    "--search-budget-minutes",
    "10",
    "--max-accuracy-drop",
    "50",
]


@pytest.fixture(scope="session")
def search_run(tmp_path_factory, tiny_model_dir, tiny_data_csv, tiny_profile):
    """`tune --prune-search` on the tiny model (local executor), shared by the search tests."""

    def make(folder: Path) -> None:
        result = tune_tiny(
            folder / "out", tiny_model_dir, tiny_data_csv, tiny_profile, *SEARCH_ARGS
        )
        assert result.exit_code == 0, result.output

    return made_once(tmp_path_factory, "search", make) / "out"
