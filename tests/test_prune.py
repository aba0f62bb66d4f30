"""Each pruning kind on the tiny BERT: shapes shrink, it saves/reloads, exports and validates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_rows
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from edgetune.compress.importance import compute_scores
from edgetune.compress.pruning import PruneConfig, count_parameters
from edgetune.compress.recover import make_student
from edgetune.errors import InputError
from edgetune.exporter.onnx import export_onnx, validate_onnx


@pytest.fixture()
def model_and_tok(tiny_model_dir):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    return model.eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def _batches(tokenizer, n=2):
    rows = make_rows(16 * n)
    out = []
    for i in range(n):
        chunk = rows[i * 16 : (i + 1) * 16]
        enc = tokenizer([t for t, _ in chunk], padding=True, return_tensors="pt")
        enc["labels"] = torch.tensor([int(lab == "positive") for _, lab in chunk])
        out.append(dict(enc))
    return out


@pytest.mark.parametrize(
    "config, check",
    [
        (
            PruneConfig(layers=1),
            lambda m: m.config.num_hidden_layers == 1 and len(m.bert.encoder.layer) == 1,
        ),
        (
            PruneConfig(heads=0.5),
            lambda m: all(l.attention.self.num_attention_heads == 1 for l in m.bert.encoder.layer),
        ),
        (
            PruneConfig(ffn=0.5),
            lambda m: (
                m.config.intermediate_size == 32
                and all(l.intermediate.dense.out_features == 32 for l in m.bert.encoder.layer)
            ),
        ),
        (
            PruneConfig(layers=1, heads=0.5, ffn=0.25),
            lambda m: m.config.num_hidden_layers == 1 and m.config.intermediate_size == 48,
        ),
        (
            PruneConfig(hidden=0.5),
            lambda m: (
                m.config.hidden_size == 16
                and m.bert.embeddings.word_embeddings.embedding_dim == 16
                and all(l.attention.self.attention_head_size == 8 for l in m.bert.encoder.layer)
            ),
        ),
        (
            PruneConfig(layers=1, heads=0.5, ffn=0.5, hidden=0.25),
            lambda m: m.config.hidden_size == 24 and m.classifier.in_features == 24,
        ),
    ],
)
@pytest.mark.parametrize("importance", ["taylor", "magnitude"])
def test_pruning_shrinks_saves_exports_and_validates(
    model_and_tok, tmp_path, config, check, importance
):
    teacher, tokenizer = model_and_tok
    pruned = make_student(teacher, config, _batches(tokenizer), importance)
    model = pruned.model
    assert check(model) and pruned.params_after < pruned.params_before
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ckpt").eval()
    assert count_parameters(reloaded) == count_parameters(model)
    onnx_path = export_onnx(reloaded, tokenizer, tmp_path / "pruned.onnx")
    texts = [t for t, _ in make_rows(8)]
    result = validate_onnx(onnx_path, reloaded, tokenizer, texts, 32)
    assert np.isfinite(result.max_abs_diff) and result.max_abs_diff < 1e-4


def test_taylor_scores_have_the_right_shapes(model_and_tok):
    model, tokenizer = model_and_tok
    scores = compute_scores(model, _batches(tokenizer), "taylor")
    assert scores.layers.shape == (2,) and scores.ffn.shape == (2, 64)
    assert [h.shape for h in scores.heads] == [(2,), (2,)]
    assert float(scores.ffn.sum()) > 0


def test_layer_drop_keeps_the_most_important(model_and_tok):
    teacher, _ = model_and_tok
    second = teacher.bert.encoder.layer[1]
    with torch.no_grad():  # the second layer's weights the largest: magnitude keeps it
        for parameter in second.parameters():
            parameter.mul_(10.0)
    student = make_student(teacher, PruneConfig(layers=1), importance="magnitude").model
    kept = dict(student.bert.encoder.layer[0].named_parameters())
    assert all(torch.equal(kept[name], p) for name, p in second.named_parameters())


def test_bad_ratios_are_input_errors():
    with pytest.raises(InputError):
        PruneConfig(heads=1.0)
    with pytest.raises(InputError):
        PruneConfig(layers=0)
    assert PruneConfig(layers=4, ffn=0.5).name == "L4-F0.5" and PruneConfig().name == "dense"


def test_prunes_at_least_is_a_partial_order():
    l3f = PruneConfig(layers=3, ffn=0.5)
    assert PruneConfig(layers=2, ffn=0.5).prunes_at_least(l3f, 6)
    assert PruneConfig(layers=3, heads=0.5, ffn=0.5).prunes_at_least(l3f, 6)
    assert not PruneConfig(layers=2).prunes_at_least(l3f, 6)  # keeps the full FFN
    assert not PruneConfig(ffn=0.5).prunes_at_least(l3f, 6)  # keeps all 6 layers


def test_magnitude_sparsity_pass_zeroes_weights_but_keeps_shapes(model_and_tok):
    from edgetune.compress.passes import PassContext, Step, get_pass

    model, _ = model_and_tok
    shapes = [p.shape for p in model.parameters()]
    step = Step.parse("magnitude-sparsity:sparsity=0.5")
    done = get_pass(step.pass_name).run(model, step.config, PassContext())
    assert done["zeroed"] >= done["of"] // 2 and [p.shape for p in model.parameters()] == shapes
    assert get_pass("magnitude-sparsity").speeds_up is False


@pytest.mark.parametrize(
    "text, message",
    [
        ("magnitude-sparsity:sparsity=1.5", "less than 1"),
        ("magnitude-sparsity:density=0.5", "density"),
        ("magnitude-sparsity:0.5", "key=value"),
        ("no-such-pass", "unknown pass"),
    ],
)
def test_bad_pass_specs_are_input_errors(text, message):
    from edgetune.compress.passes import Step

    with pytest.raises(InputError, match=message):
        Step.parse(text)


def test_hidden_prune_names_parses_and_orders():
    config = PruneConfig.parse("L2-F0.5-W0.25")
    assert config == PruneConfig(layers=2, ffn=0.5, hidden=0.25) and config.name == "L2-F0.5-W0.25"
    assert config.prunes_at_least(PruneConfig(layers=2, ffn=0.5), 6)
    assert not PruneConfig(layers=2, ffn=0.5).prunes_at_least(config, 6)
    assert [s.pass_name for s in config.steps()][-1] == "hidden-prune"
    with pytest.raises(InputError, match="--hidden"):
        PruneConfig(hidden=1.0)


def test_hidden_prune_keeps_the_widest_channels_and_records_them(model_and_tok):
    teacher, _ = model_and_tok
    with torch.no_grad():  # channels 0-7 the largest LayerNorm gains everywhere
        for module in teacher.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight[:8] = 5.0
    pruned = make_student(teacher, PruneConfig(hidden=0.5), importance="magnitude")
    kept = pruned.chose("hidden-prune", "kept_channels")
    assert len(kept) == 16 and kept[:8] == list(range(8)) and kept == sorted(kept)
    assert pruned.name == "W0.5" and teacher.config.hidden_size == 32  # the teacher untouched


@pytest.mark.parametrize("family, supported", [("roberta", True), ("distilbert", False)])
def test_hidden_prune_by_family(tmp_path, family, supported):
    from test_families import build_tiny

    folder = build_tiny(family, tmp_path / family)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if not supported:
        with pytest.raises(InputError, match="not supported"):
            make_student(model, PruneConfig(hidden=0.5), importance="magnitude")
        return
    student = make_student(model, PruneConfig(hidden=0.5), importance="magnitude").model
    assert student.config.hidden_size == 16
    onnx_path = export_onnx(student, tokenizer, tmp_path / "narrow.onnx")
    texts = [t for t, _ in make_rows(8)]
    result = validate_onnx(onnx_path, student, tokenizer, texts, 32)
    assert result.max_abs_diff < 1e-4


def test_a_narrower_students_hidden_states_meet_the_teachers_through_the_recorded_map():
    from edgetune.train.distill import width_projection

    projection = width_projection(3, 5, [0, 2, 4])
    student = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.equal(projection(student), torch.tensor([[1.0, 0.0, 2.0, 0.0, 3.0]]))
    assert projection.weight.requires_grad  # learned with the student, not fixed
