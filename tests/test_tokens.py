"""Token classification (named entities) end to end on a tiny random-init BERT: CoNLL and
JSONL data, BIO checks, entity F1 on the ONNX model, bundles that predict and serve entities
with character offsets, pruning with per-token distillation."""

from __future__ import annotations

import csv
import json
import random
from itertools import chain, pairwise
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import _make_tiny_bert, made_once, tune_tiny

from edgetune.cli import cli
from edgetune.data.bio import bio_error, spans
from edgetune.data.tagged import load_tagged_dataset, looks_tagged
from edgetune.errors import InputError
from edgetune.measure.entities import (
    EntityCounts,
    f1_by_type,
    paired_f1_test,
    tagging_metrics,
)

PEOPLE = [["alice"], ["bob"], ["carol", "smith"], ["dave", "jones"]]
PLACES = [["paris"], ["rome"], ["oslo"], ["new", "york"]]
FILLER = ["met", "in", "went", "to", "saw", "the", "city", "of", "and", "today", "from"]
WORDS = sorted({w for e in PEOPLE + PLACES for w in e} | set(FILLER) | {"."})


def tagged_sentences(n: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """Sentences with people and places in them: `Alice met Bob in New York .`"""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        tokens: list[str] = []
        tags: list[str] = []
        for _ in range(rng.randint(2, 4)):
            tokens += rng.choices(FILLER, k=rng.randint(1, 2))
            tags += ["O"] * (len(tokens) - len(tags))
            kind, names = rng.choice([("PER", PEOPLE), ("LOC", PLACES)])
            name = rng.choice(names)
            tokens += [w.capitalize() for w in name]
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(name) - 1)
        tokens.append(".")
        tags.append("O")
        rows.append((tokens, tags))
    return rows


def write_conll(path: Path, rows, columns: int = 2) -> Path:
    lines = ["-DOCSTART- O", ""] if columns == 2 else []
    for tokens, tags in rows:
        middle = ["NN"] * (columns - 2)
        lines += [" ".join([t, *middle, g]) for t, g in zip(tokens, tags)] + [""]
    path.write_text("\n".join(lines))
    return path


@pytest.fixture(scope="session")
def tiny_ner_model(tmp_path_factory) -> Path:
    return made_once(tmp_path_factory, "tiny-ner-bert", lambda f: _make_tiny_bert(f, tuple(WORDS)))


@pytest.fixture(scope="session")
def conll_folder(tmp_path_factory) -> Path:
    def make(folder: Path) -> None:
        write_conll(folder / "train.conll", tagged_sentences(160, seed=1))
        write_conll(folder / "validation.conll", tagged_sentences(40, seed=2))

    return made_once(tmp_path_factory, "conll", make)


def test_spans_and_bio_follow_strict_iob2():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "B-LOC", "I-PER"]
    assert spans(tags) == {("PER", 0, 2), ("LOC", 4, 5), ("LOC", 5, 6)}
    assert bio_error(["O", "B-PER", "I-PER"]) is None
    assert "follows 'O'" in bio_error(["O", "I-PER"])
    assert "follows 'B-LOC'" in bio_error(["B-LOC", "I-PER"])
    assert "is not O" in bio_error(["PER"])


def test_entity_scores_agree_with_seqeval_strict():
    seqeval = pytest.importorskip("seqeval.metrics")
    from seqeval.scheme import IOB2

    rng = np.random.default_rng(0)
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    gold = [
        [t for _, t in zip(range(9), tags)]
        for tags, _ in ((row[1], None) for row in tagged_sentences(60, seed=3))
    ]
    # predictions: gold with random tags swapped in (stray I- tags included)
    predicted = [[t if rng.random() < 0.8 else names[rng.integers(5)] for t in g] for g in gold]
    ours = tagging_metrics(predicted, gold)
    kwargs = {"mode": "strict", "scheme": IOB2}
    assert ours["entity_f1"] == pytest.approx(seqeval.f1_score(gold, predicted, **kwargs))
    assert ours["precision"] == pytest.approx(seqeval.precision_score(gold, predicted, **kwargs))
    assert ours["recall"] == pytest.approx(seqeval.recall_score(gold, predicted, **kwargs))
    report = seqeval.classification_report(gold, predicted, output_dict=True, **kwargs)
    for kind, found in f1_by_type(predicted, gold).items():
        assert found["f1"] == pytest.approx(report[kind]["f1-score"])
        assert found["gold"] == report[kind]["support"]


def test_the_paired_f1_test_separates_a_worse_tagger_and_not_an_equal_one():
    gold = [row[1] for row in tagged_sentences(200, seed=4)]
    same = EntityCounts.of(gold, gold)
    assert paired_f1_test(same, same).p_value == 1.0
    worse = [["O"] * len(g) if i % 3 == 0 else g for i, g in enumerate(gold)]
    test = paired_f1_test(same, EntityCounts.of(worse, gold))
    assert test.p_value < 0.01 and test.first_f1 == 1.0 > test.second_f1


def test_conll_and_jsonl_load_the_same_sentences(tmp_path, conll_folder):
    rows = tagged_sentences(30, seed=5)
    with (tmp_path / "train.jsonl").open("w") as handle:
        for tokens, tags in rows:
            handle.write(json.dumps({"tokens": tokens, "ner_tags": tags}) + "\n")
    conll = write_conll(tmp_path / "four.conll", rows, columns=4)  # CoNLL-2003's columns
    assert looks_tagged(tmp_path / "train.jsonl") and looks_tagged(conll)
    assert looks_tagged(conll_folder) and not looks_tagged(tmp_path / "absent.csv")
    from_json = load_tagged_dataset(tmp_path / "train.jsonl", validation_fraction=0.2)
    from_conll = load_tagged_dataset(conll, validation_fraction=0.2)
    assert (
        from_json.label_names == from_conll.label_names == ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]
    )
    assert from_json.train["tokens"] == from_conll.train["tokens"]
    assert from_json.validation["tags"] == from_conll.validation["tags"]


def test_bad_tagged_data_is_one_line_or_dropped_and_counted(tmp_path):
    good = tagged_sentences(20, seed=6)
    bad_columns = write_conll(tmp_path / "cols.conll", good)
    text = bad_columns.read_text().splitlines()
    text[5] = text[5] + " extra"
    bad_columns.write_text("\n".join(text))
    with pytest.raises(InputError, match=r"cols\.conll:6: 3 columns where the file's lines have 2"):
        load_tagged_dataset(bad_columns)
    broken = [(["Bob", "met", "Alice"], ["I-PER", "O", "B-PER"])]
    mixed = load_tagged_dataset(write_conll(tmp_path / "mixed.conll", good + broken))
    assert mixed.dropped == {"tags break BIO (train)": 1}
    with pytest.raises(InputError, match=r"only\.conll:3: tag 1 'I-PER' follows 'O'"):
        load_tagged_dataset(write_conll(tmp_path / "only.conll", broken))


@pytest.fixture(scope="session")
def ner_run(tmp_path_factory, tiny_ner_model, conll_folder, tiny_profile):
    def make(folder: Path) -> None:
        result = tune_tiny(
            folder / "out",
            tiny_ner_model,
            conll_folder,
            tiny_profile,
            *("--epochs", "10", "--lr", "3e-3", "--batch-size", "16", "--patience", "10"),
            *("--modes", "fp32,dynamic-int8,static-int8-minmax,int4"),
        )
        assert result.exit_code == 0, result.output
        (folder / "output.txt").write_text(result.output)

    folder = made_once(tmp_path_factory, "ner-run", make)
    return folder / "out"


@pytest.mark.e2e
def test_tune_on_conll_measures_entity_f1_on_every_onnx_candidate(ner_run):
    report = json.loads((ner_run / "report.json").read_text())
    names = {c["name"]: c for c in report["candidates"]}
    assert set(names) >= {"fp32", "dynamic-int8", "static-int8-minmax", "int4"}
    fp32 = names["fp32"]["accuracy"]
    assert fp32["metric"] == "entity F1" and fp32["examples"] == 40
    assert fp32["accuracy"] >= 0.9  # the names are learnable; the tiny model learns them
    assert abs(fp32["accuracy"] - report["run"]["pytorch_accuracy"]) < 0.03
    assert set(fp32["details"]) == {"precision", "recall", "token_accuracy", "by_type"}
    by_type = fp32["details"]["by_type"]
    assert set(by_type) == {"PER", "LOC"} and all(t["gold"] > 0 for t in by_type.values())
    assert (
        min(t["f1"] for t in by_type.values())
        <= fp32["accuracy"]
        <= max(t["f1"] for t in by_type.values())
    )
    assert len(fp32["entity_counts"]) == 40
    vs_best = names["dynamic-int8"]["stats"]["vs_best"]
    assert vs_best["p_value"] is not None and "randomization" in vs_best["test"]
    report_md = (ner_run / "report.md").read_text()
    assert "entity F1" in report_md
    types = report_md.split("## Entities by type")[1].split("\n## ")[0]
    assert f"LOC ({by_type['LOC']['gold']})" in types  # the type, with its gold count
    assert sum(line.startswith("| ") for line in types.splitlines()) == 1 + len(names)
    manifest = json.loads((ner_run / "best" / "edgetune.json").read_text())
    assert manifest["task"] == "token-classification"


@pytest.mark.e2e
def test_a_tagging_bundle_predicts_and_serves_entities_with_offsets(ner_run):
    from fastapi.testclient import TestClient

    from edgetune.config import ServeConfig
    from edgetune.deploy.server import create_app
    from edgetune.jobs.serve import app_settings

    text = "Today Carol Smith went to New York."
    result = CliRunner().invoke(cli, ["predict", str(ner_run / "best"), "--text", text])
    assert result.exit_code == 0, result.output
    predicted = json.loads(result.output.splitlines()[-1])
    assert predicted["text"] == text
    assert [w["word"] for w in predicted["words"]][:3] == ["Today", "Carol", "Smith"]
    for entity in predicted["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"]
    found = {(e["type"], e["text"]) for e in predicted["entities"]}
    assert ("PER", "Carol Smith") in found and ("LOC", "New York") in found
    settings = app_settings(ServeConfig(bundle=str(ner_run / "best"), max_batch=4))
    with TestClient(create_app(**settings)) as client:
        answer = client.post("/v1/predict", json=[text])
    assert answer.status_code == 200
    assert answer.json()["predictions"][0]["entities"] == predicted["entities"]
    texts = ner_run.parent / "texts.csv"
    texts.write_text(f'text\n"{text}"\nnothing here\n')
    out = ner_run.parent / "tagged.csv"
    args = ["predict", str(ner_run / "best"), "--input", str(texts), "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [r["text"] for r in rows] == [text, "nothing here"]
    assert json.loads(rows[0]["entities"]) == [
        {k: e[k] for k in ("type", "start", "end", "text")} for e in predicted["entities"]
    ]
    assert rows[0]["tags"].split() == [w["tag"] for w in predicted["words"]]


def test_tune_on_bad_tagged_data_exits_2_with_one_line(tmp_path, tiny_ner_model, tiny_profile):
    data = write_conll(tmp_path / "train.conll", tagged_sentences(20, seed=7))
    lines = data.read_text().splitlines()
    lines[3] = "Bob"  # a token without its tag
    data.write_text("\n".join(lines))
    result = tune_tiny(tmp_path / "out", tiny_ner_model, data, tiny_profile)
    assert result.exit_code == 2, result.output
    assert "train.conll:4: 1 columns where the file's lines have 2" in result.output
    assert "Traceback" not in result.output


@pytest.mark.e2e
def test_prune_a_tagger_distils_per_token_and_bundles(
    ner_run, conll_folder, tiny_profile, tmp_path
):
    target = tmp_path / "pruned"
    args = ["prune", ner_run / "work" / "best", "--data", conll_folder, "--out", target]
    args += ["--layers", "1", "--heads", "0.5", "--ffn", "0.5", "--epochs", "6", "--lr", "3e-3"]
    result = CliRunner().invoke(cli, [str(a) for a in (*args, "--profile", tiny_profile)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((target / "edgetune.json").read_text())
    assert manifest["task"] == "token-classification"
    assert manifest["pruning"]["name"] == "L1-H0.5-F0.5" and manifest["pruning"]["distilled"]
    bench = CliRunner().invoke(
        cli,
        [str(a) for a in ("bench", target, "--profile", tiny_profile, "--data", conll_folder)]
        + ["--json", "--min-runs", "5", "--min-seconds", "0.1"],
    )
    assert bench.exit_code == 0, bench.output
    accuracy = json.loads(bench.output)["accuracy"]
    assert accuracy["metric"] == "entity F1" and accuracy["examples"] == 40


def _make_tiny_roberta(folder: Path, hidden: int = 16, layers: int = 1) -> None:
    """A RoBERTa base with its own byte-level BPE tokenizer, trained here on tagged words."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    words = [" ".join(tokens) for tokens, _ in tagged_sentences(50, seed=8)]
    trained = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trained.train_from_iterator(words, vocab_size=400, special_tokens=specials)
    trained.save_model(str(folder))
    RobertaTokenizerFast(
        vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt")
    ).save_pretrained(folder)
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=400, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=70,
    )  # fmt: skip
    RobertaModel(config).save_pretrained(folder)


def test_a_byte_level_bpe_tokenizer_takes_words_with_their_space(tmp_path):
    """RoBERTa-style tokenizers refuse pre-split words unless loaded with add_prefix_space; the
    bundle's tokenizer.json (the runtime's) then gives the same ids."""
    from edgetune.data.encoding import Words, tokenize
    from edgetune.data.tokenizer import JsonTokenizer
    from edgetune.train.tasks import TokenTask

    _make_tiny_roberta(tmp_path)
    _, tokenizer = TokenTask.load(str(tmp_path), ["O", "B-PER", "I-PER"])
    sentences = [Words(tokens) for tokens, _ in tagged_sentences(4, seed=9)]
    ours = tokenize(tokenizer, sentences, padding=True, return_tensors="np")
    tokenizer.save_pretrained(tmp_path / "saved")
    runtime = tokenize(JsonTokenizer(tmp_path / "saved"), sentences, padding=True)
    assert (ours["input_ids"] == runtime["input_ids"]).all()
    assert ours.word_ids(0) == runtime.word_ids(0)


@pytest.mark.e2e
def test_a_tagger_is_scored_on_an_agent_as_on_the_host(
    ner_run, conll_folder, tiny_profile, tmp_path
):
    from test_agent import bench_here_and_on_agent

    host, target = bench_here_and_on_agent(
        tmp_path / "store",
        ner_run / "candidates" / "dynamic-int8",
        *("--data", conll_folder, "--profile", tiny_profile),
    )
    on_host, on_target = host["accuracy"], target["accuracy"]
    assert on_target["metric"] == "entity F1" and on_target["examples"] == 40
    assert on_target["accuracy"] == on_host["accuracy"] > 0.5
    assert on_target["entity_counts"] == on_host["entity_counts"]


@pytest.mark.e2e
def test_a_deberta_tagger_quantizes_prunes_and_predicts(conll_folder, tiny_profile, tmp_path):
    """A family laid out unlike BERT (DeBERTa-v2: relative attention, no token types, heads not
    pruned) as a tagger: tuned, quantized, pruned with per-token distillation, predicting.
    (Every family of compress/families.py passed the same steps by hand, 2026-12-05.)"""
    from test_families import NO_HEAD_PRUNING, build_tiny

    family = "deberta-v2"

    model = build_tiny(family, tmp_path / "model", tuple(WORDS))
    out = tmp_path / "run"
    args = ("--epochs", "8", "--lr", "3e-3", "--batch-size", "16", "--patience", "8")
    args += ("--modes", "fp32,dynamic-int8", "--max-length", "24")  # the profile says 32
    result = tune_tiny(out, model, conll_folder, tiny_profile, *args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    scores = {c["name"]: c["accuracy"] for c in report["candidates"]}
    # timed as served: truncated at 24 tokens, so no input is 32 long
    assert {tuple(c["latency"]["input_shape"]) for c in report["candidates"]} == {(1, 24)}
    assert set(scores) == {"fp32", "dynamic-int8"} and scores["fp32"]["accuracy"] >= 0.9
    heads = [] if family in NO_HEAD_PRUNING else ["--heads", "0.5"]
    args = ["prune", out / "work" / "best", "--data", conll_folder, "--out", tmp_path / "pruned"]
    args += ["--layers", "1", *heads, "--ffn", "0.5", "--epochs", "2", "--profile", tiny_profile]
    pruned = CliRunner().invoke(cli, [str(a) for a in args])
    assert pruned.exit_code == 0, pruned.output
    manifest = json.loads((tmp_path / "pruned" / "edgetune.json").read_text())
    assert manifest["task"] == "token-classification" and manifest["pruning"]["distilled"]
    text = "Today Carol Smith went to New York ."
    predicted = CliRunner().invoke(cli, ["predict", str(out / "best"), "--text", text])
    assert predicted.exit_code == 0, predicted.output
    found = {
        (e["type"], e["text"]) for e in json.loads(predicted.output.splitlines()[-1])["entities"]
    }
    assert ("PER", "Carol Smith") in found and ("LOC", "New York") in found


def test_windows_cover_every_word_once_and_fit_the_budget():
    from edgetune.data.windows import word_windows

    rng = random.Random(0)
    for _ in range(500):
        sub_tokens = [
            rng.choice([1, 1, 2, 3, rng.randint(1, 40)]) for _ in range(rng.randint(1, 60))
        ]
        budget = rng.randint(1, 30)
        windows = word_windows(sub_tokens, budget)
        kept = [i for w in windows for i in range(w.keep_from, w.keep_to)]
        assert kept == list(range(len(sub_tokens)))  # each word tagged by exactly one window
        for w in windows:
            assert w.start <= w.keep_from <= w.keep_to <= w.end
            assert w.end - w.start == 1 or sum(sub_tokens[w.start : w.end]) <= budget
        assert all(a.start < b.start and a.end <= b.end for a, b in pairwise(windows))
    overlapping = word_windows([1] * 20, 8)  # windows of 8 words, 2 shared with the next
    assert [(w.start, w.end) for w in overlapping] == [(0, 8), (6, 14), (12, 20)]
    assert [(w.keep_from, w.keep_to) for w in overlapping] == [(0, 7), (7, 13), (13, 20)]


@pytest.mark.e2e
def test_a_text_longer_than_the_model_reads_is_tagged_to_its_end(ner_run, tmp_path):
    """PII in a long document: every entity found, also past the model's window, in predict
    and in the F1 measured on the ONNX model (the same windows)."""
    from edgetune.deploy.bundle import load_bundle

    bundle = load_bundle(ner_run / "best")
    sentence = "Today Carol Smith went to New York ."
    text = " ".join([sentence] * 12)  # 96 words, past the bundle's window
    assert len(text.split()) > bundle.max_length
    result = CliRunner().invoke(cli, ["predict", str(ner_run / "best"), "--text", text])
    assert result.exit_code == 0, result.output
    entities = json.loads(result.output.splitlines()[-1])["entities"]
    assert [(e["type"], e["text"]) for e in entities] == [
        ("PER", "Carol Smith"),
        ("LOC", "New York"),
    ] * 12
    assert all(text[e["start"] : e["end"]] == e["text"] for e in entities)
    long_data = tmp_path / "long"
    long_data.mkdir()
    rows = tagged_sentences(40, seed=2)
    merged = [  # 5 sentences of 8 joined: each past the window
        tuple(list(chain.from_iterable(r[k] for r in rows[i : i + 8])) for k in (0, 1))
        for i in range(0, 40, 8)
    ]
    write_conll(long_data / "train.conll", tagged_sentences(20, seed=1))
    write_conll(long_data / "validation.conll", merged)
    args = ["bench", str(ner_run / "best"), "--data", str(long_data), "--json"]
    bench = CliRunner().invoke(
        cli, [*args, "--rounds", "2", "--min-runs", "4", "--min-seconds", "0.1"]
    )
    assert bench.exit_code == 0, bench.output
    measured = json.loads(bench.output)
    assert (
        measured["accuracy"]["examples"] == 5 and measured["accuracy"]["details"]["recall"] >= 0.9
    )
    # the default profile (cpu-edge) times 128 tokens; this bundle never takes more than 32
    assert measured["profile"] == "cpu-edge" and measured["latency"]["input_shape"] == [1, 32]
    # the F1 training reports (PyTorch, fp32) reads the same windows: it agrees with the ONNX
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from edgetune.train.tasks import TokenTask

    trained = ner_run / "work" / "best"
    task = TokenTask(AutoTokenizer.from_pretrained(trained), bundle.max_length, bundle.label_names)
    model = AutoModelForTokenClassification.from_pretrained(trained)
    split = load_tagged_dataset(str(long_data)).validation
    reported = task.validation_metrics(model, split)
    assert abs(reported["entity_f1"] - measured["accuracy"]["accuracy"]) < 0.01
    assert reported["recall"] >= 0.9


def test_loadtest_of_a_tagging_bundle_serves_every_request(ner_run, tmp_path):
    bundle = str(ner_run / "best")
    steps = ["--budget-ms", "2000", "--rates", "4", "--step-seconds", "0.5"]
    steps += ["--concurrency", "2", "--max-seconds", "20", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, ["loadtest", bundle, *steps])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "loadtest.json").read_text())
    assert report["steps"] and all(s["errors"] == 0 for s in report["steps"])
    assert report["capacity_rps"] == 4


def test_a_sentence_longer_than_the_model_reads_is_windowed_without_a_warning(
    tiny_ner_model, caplog, capfd
):
    """transformers warns that such a sentence "will result in indexing errors": not so here,
    where counting its sub-tokens is how its windows are cut."""
    from transformers import AutoTokenizer

    from edgetune.data.windows import windowed

    tokenizer = AutoTokenizer.from_pretrained(tiny_ner_model, model_max_length=16)
    windows = windowed(tokenizer, [["Carol", "Smith"] * 40], 16)
    assert len(windows.rows) > 1
    said = caplog.text + capfd.readouterr().err
    assert "longer than the specified maximum" not in said


@pytest.mark.e2e
def test_a_roberta_tagger_with_its_bpe_tokenizer_tunes_and_predicts_offsets(
    conll_folder, tiny_profile, tmp_path
):
    """The byte-level BPE path end to end: words read with their space in training, the ONNX
    score and `predict` (the runtime's tokenizer.json), entities at the right characters."""
    _make_tiny_roberta(tmp_path / "model", hidden=32, layers=2)
    out = tmp_path / "run"
    train = ("--epochs", "10", "--lr", "3e-3", "--batch-size", "16", "--patience", "10")
    result = tune_tiny(
        out, tmp_path / "model", conll_folder, tiny_profile, *train, "--modes", "fp32"
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    fp32 = report["candidates"][0]["accuracy"]
    assert fp32["metric"] == "entity F1" and fp32["accuracy"] >= 0.8
    assert abs(fp32["accuracy"] - report["run"]["pytorch_accuracy"]) < 0.03
    text = "Today Carol Smith went to New York."
    said = CliRunner().invoke(cli, ["predict", str(out / "best"), "--text", text])
    assert said.exit_code == 0, said.output
    predicted = json.loads(said.output.splitlines()[-1])
    assert [w["word"] for w in predicted["words"]][:3] == ["Today", "Carol", "Smith"]
    for entity in predicted["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"]
    found = {(e["type"], e["text"]) for e in predicted["entities"]}
    assert ("PER", "Carol Smith") in found and ("LOC", "New York") in found
