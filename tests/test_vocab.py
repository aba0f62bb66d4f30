"""Vocabulary trimming (`vocab-trim`): the same outputs on texts whose tokens are all kept, the
unknown token's for the others, refusals in one line, and `tune` under a size limit finding a
trimmed model within it."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import FILLER, NEGATIVE, POSITIVE, TINY_TRAIN, _make_tiny_bert, made_once, tune_tiny
from onnx import numpy_helper

from edgetune.compress.modes import MODES, Mode, build_variants, trimmed
from edgetune.compress.passes import PassContext, Step
from edgetune.compress.vocab import VocabTrim, VocabTrimConfig, VocabularyUse
from edgetune.errors import InputError

UNUSED = [f"unused{i}" for i in range(3000)]  # never in the training text: what trimming drops


@pytest.fixture(scope="module")
def wide_vocab_model(tmp_path_factory) -> Path:
    """The tiny BERT with 3,000 tokens no training text uses."""
    make = partial(_make_tiny_bert, extra_tokens=tuple(UNUSED))
    return made_once(tmp_path_factory, "wide-vocab-bert", make)


@pytest.fixture(scope="module")
def exported(wide_vocab_model, tmp_path_factory):
    from transformers import AutoTokenizer, BertForSequenceClassification

    from edgetune.exporter.onnx import export_onnx

    folder = tmp_path_factory.mktemp("vocab-export")
    model = BertForSequenceClassification.from_pretrained(wide_vocab_model, num_labels=2)
    tokenizer = AutoTokenizer.from_pretrained(wide_vocab_model)
    return export_onnx(model.eval(), tokenizer, folder / "model.fp32.onnx"), tokenizer


def _logits(path: Path, tokenizer, texts: list[str]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    enc = tokenizer(texts, padding="max_length", max_length=16, return_tensors="np")
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v.astype(np.int64) for k, v in enc.items() if k in names})[0]


def _use(tokenizer) -> VocabularyUse:
    used = tokenizer(" ".join(POSITIVE + NEGATIVE + FILLER))["input_ids"]
    return VocabularyUse(tuple(sorted(set(used) | set(tokenizer.all_special_ids))), 1)


def _trimmed(mode: str, unseen: str = "unknown") -> Mode:
    trim = trimmed(MODES[mode])
    steps = tuple(
        Step.of("vocab-trim", unseen=unseen) if s.pass_name == "vocab-trim" else s
        for s in trim.steps
    )
    return Mode(trim.name, steps, trim.description)


@pytest.mark.parametrize("mode", ["fp32", "optimized-fp32"])
def test_kept_tokens_give_the_same_outputs_and_others_the_unknown_tokens(exported, mode, tmp_path):
    fp32, tokenizer = exported
    ctx = PassContext(model_type="bert", vocabulary=_use(tokenizer))
    built = build_variants(fp32, tmp_path, [MODES[mode], _trimmed(mode)], ctx)
    original, trim = built[mode][0], built[f"{mode}+vocab-trim"][0]
    assert trim.stat().st_size < 0.5 * original.stat().st_size
    kept = ["good movie the", "awful a sad plot"]
    assert np.allclose(
        _logits(original, tokenizer, kept), _logits(trim, tokenizer, kept), atol=1e-6
    )
    unseen = _logits(trim, tokenizer, ["good unused7 movie"])
    as_unknown = _logits(original, tokenizer, ["good [UNK] movie"])
    assert np.allclose(unseen, as_unknown, atol=1e-6)
    settings = built[f"{mode}+vocab-trim"][1]
    assert settings["vocabulary"]["size"] == len(tokenizer) and settings["vocabulary"]["kept"] < 100
    if mode == "optimized-fp32":  # trimmed after fusion: the embedding stays fused
        ops = {n.op_type for n in onnx.load(str(trim)).graph.node}
        assert "EmbedLayerNormalization" in ops


def test_an_unseen_token_goes_to_the_kept_token_nearest_in_embedding(exported, tmp_path):
    """By default: 'unused7' made to point the way 'good' does reads as 'good'."""
    fp32, tokenizer = exported
    model = onnx.load(str(fp32))
    table = next(t for t in model.graph.initializer if "word_embeddings" in t.name)
    rows = numpy_helper.to_array(table).copy()
    good, unused = tokenizer.convert_tokens_to_ids(["good", "unused7"])
    rows[unused] = 3.0 * rows[good]  # same direction, another length
    table.CopyFrom(numpy_helper.from_array(rows, table.name))
    onnx.save(model, str(tmp_path / "model.fp32.onnx"))
    ctx = PassContext(model_type="bert", vocabulary=_use(tokenizer))
    built = build_variants(tmp_path / "model.fp32.onnx", tmp_path, [trimmed(MODES["fp32"])], ctx)
    trim = built["fp32+vocab-trim"][0]
    assert np.allclose(
        _logits(trim, tokenizer, ["unused7 movie"]),
        _logits(fp32, tokenizer, ["good movie"]),
        atol=1e-6,
    )


def test_the_reserve_keeps_the_first_ids(exported, tmp_path):
    fp32, tokenizer = exported
    ctx = PassContext(vocabulary=_use(tokenizer))
    chose = VocabTrim().run(fp32, tmp_path / "t.onnx", VocabTrimConfig(reserve=500), ctx)
    assert chose["vocabulary"]["kept"] == 500  # the used ids all lie among the first 500


def test_refusals_are_one_line(exported, tmp_path):
    fp32, _ = exported
    with pytest.raises(InputError, match="needs the token ids"):
        VocabTrim().run(fp32, tmp_path / "t.onnx", VocabTrimConfig(), PassContext())
    # a graph with no word-embedding lookup of input_ids
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(onnx.helper.make_model(graph), str(tmp_path / "relu.onnx"))
    ctx = PassContext(vocabulary=VocabularyUse((0, 1), 1))
    with pytest.raises(InputError, match="found 0 word-embedding lookups"):
        VocabTrim().run(tmp_path / "relu.onnx", tmp_path / "t.onnx", VocabTrimConfig(), ctx)
    too_far = PassContext(vocabulary=VocabularyUse((0, 10**6), 1))
    with pytest.raises(InputError, match="does not belong to this model"):
        VocabTrim().run(fp32, tmp_path / "t.onnx", VocabTrimConfig(), too_far)


def test_tune_under_a_size_limit_finds_a_trimmed_model_within_it(
    tmp_path, wide_vocab_model, tiny_data_csv, tiny_profile
):
    profile = tmp_path / "small.toml"
    profile.write_text(
        tiny_profile.read_text().replace('name = "tiny"', 'name = "small"')
        + "max_model_size_mb = 0.1\n"
    )
    out = tmp_path / "out"
    args = ["--modes", "fp32,dynamic-int8", *TINY_TRAIN]
    result = tune_tiny(out, wide_vocab_model, tiny_data_csv, profile, *args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    sizes = {c["name"]: c["size_mb"] for c in report["candidates"]}
    assert sizes["dynamic-int8"] > 0.1  # the untrimmed INT8 model is over the limit
    assert sizes["dynamic-int8+vocab-trim"] <= 0.1
    chosen = report["selection"]["winner"]
    assert chosen.endswith("+vocab-trim")
    manifest = json.loads((out / "best" / "edgetune.json").read_text())
    assert "vocab-trim" in json.dumps(manifest)
    from edgetune.deploy.runtime import Predictor

    predictor = Predictor(out / "best")
    assert len(predictor.predict(["good movie", "unused5 awful"])) == 2
