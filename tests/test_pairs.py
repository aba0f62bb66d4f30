"""Sentence-pair classification (NLI, paraphrase): detected columns, pair tokenization, and a
pair model through tune, the bundle, predict and the server's request parsing. Tiny model."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner
from conftest import FILLER, NEGATIVE, POSITIVE, TINY_TRAIN, tune_tiny, write_csv

from edgetune.cli import cli
from edgetune.errors import InputError


def make_pairs(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(premise, hypothesis, label): `same` when both carry the same sentiment."""
    rng = random.Random(seed)

    def sentence(cue: list[str]) -> str:
        words = rng.choices(FILLER, k=rng.randint(2, 6)) + rng.choices(cue, k=2)
        rng.shuffle(words)
        return " ".join(words)

    rows = []
    for i in range(n):
        first = POSITIVE if i % 2 else NEGATIVE
        second = first if i % 4 < 2 else (NEGATIVE if first is POSITIVE else POSITIVE)
        rows.append((sentence(first), sentence(second), "same" if first is second else "different"))
    return rows


@pytest.fixture(scope="module")
def pair_csv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    return write_csv(folder / "nli.csv", make_pairs(200), header=("premise", "hypothesis", "label"))


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory, tiny_model_dir, pair_csv, tiny_profile):
    out = tmp_path_factory.mktemp("pair-run") / "out"
    result = tune_tiny(
        out, tiny_model_dir, pair_csv, tiny_profile, *TINY_TRAIN, "--modes", "fp32,dynamic-int8"
    )
    assert result.exit_code == 0, result.output
    return out


def test_pair_columns_are_detected_or_named(pair_csv):
    from edgetune.data.text import load_text_dataset

    detected = load_text_dataset(pair_csv)
    assert detected.is_pair and detected.label_names == ["different", "same"]
    first = detected.train[0]["text"]
    assert isinstance(first, list) and len(first) == 2 and all(isinstance(t, str) for t in first)
    named = load_text_dataset(pair_csv, text_column="premise,hypothesis")
    assert named.is_pair and len(named.train) == len(detected.train)
    assert not load_text_dataset(pair_csv, text_column="premise").is_pair
    with pytest.raises(InputError, match="two for a sentence pair"):
        load_text_dataset(pair_csv, text_column="premise,hypothesis,label")
    with pytest.raises(InputError, match="no column 'nope'"):
        load_text_dataset(pair_csv, text_column="premise,nope")


def test_pairs_are_tokenized_as_pairs(tiny_model_dir):
    from transformers import AutoTokenizer

    from edgetune.data.encoding import eval_batches

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    [batch] = eval_batches(tokenizer, [["good movie", "bad plot"]], 32)
    sep = tokenizer.sep_token_id
    assert list(batch["input_ids"][0]).count(sep) == 2  # [CLS] a [SEP] b [SEP]
    assert batch["token_type_ids"][0].max() == 1  # the second text is segment 1


def test_a_pair_model_tunes_bundles_and_predicts(pair_run, tmp_path):
    from edgetune.deploy.runtime import Predictor

    bundle = pair_run / "best"
    manifest = json.loads((bundle / "edgetune.json").read_text())
    assert manifest["task"] == "text-pair-classification"
    predictor = Predictor(bundle, threads=1)
    assert predictor.pairs
    [result] = predictor.predict([["good great film", "superb lovely story"]])
    assert result["label"] in ("same", "different")

    runner = CliRunner()
    given = runner.invoke(
        cli, ["predict", str(bundle), "--text", "good film", "--text-pair", "bad film"]
    )
    assert given.exit_code == 0, given.output
    line = json.loads(given.output.strip().splitlines()[-1])
    assert line["text"] == "good film" and line["text_pair"] == "bad film"
    unpaired = runner.invoke(cli, ["predict", str(bundle), "--text", "good film"])
    assert unpaired.exit_code == 2 and "one --text-pair per --text" in unpaired.output

    rows = write_csv(
        tmp_path / "in.csv", make_pairs(20, seed=3), header=("premise", "hypothesis", "label")
    )
    out = tmp_path / "preds.csv"
    from_file = runner.invoke(
        cli, ["predict", str(bundle), "--input", str(rows), "--out", str(out)]
    )
    assert from_file.exit_code == 0, from_file.output
    assert "20 rows; accuracy" in from_file.output
    assert out.read_text().splitlines()[0].startswith("text,text_pair,label,score_")
    single = write_csv(tmp_path / "single.csv", [("good film", "same")])
    refused = runner.invoke(cli, ["predict", str(bundle), "--input", str(single)])
    assert refused.exit_code == 2 and "no pair of text columns" in refused.output


def test_the_server_takes_pairs_for_a_pair_model():
    from edgetune.deploy.server import BadRequest, Limits, parse_texts

    assert parse_texts(b'[["a", "b"], ["c", "d"]]', Limits(), pairs=True) == [
        ["a", "b"],
        ["c", "d"],
    ]
    for body in (b'["a"]', b'[["a"]]', b'[["a", 1]]'):
        with pytest.raises(BadRequest, match="not a pair") as caught:
            parse_texts(body, Limits(), pairs=True)
        assert caught.value.status == 422
    with pytest.raises(BadRequest, match="not a string"):
        parse_texts(b'[["a", "b"]]', Limits())  # a single-text model
    with pytest.raises(BadRequest) as long:
        parse_texts(json.dumps([["a", "x" * 50]]).encode(), Limits(max_text_chars=10), pairs=True)
    assert long.value.status == 413


def test_a_pair_checkpoint_exports_as_a_pair_bundle(pair_run, tmp_path):
    out = tmp_path / "exported"
    done = CliRunner().invoke(cli, ["export", str(pair_run / "work" / "best"), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert json.loads((out / "edgetune.json").read_text())["task"] == "text-pair-classification"
