"""Quantization-aware recovery: fake quantization that mirrors ORT's static QDQ, its export,
and `edgetune prune --qat`."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from conftest import make_rows
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from edgetune.compress import qat
from edgetune.compress.qat_recover import export_quantized, split_budget
from edgetune.data.encoding import calibration_batches, eval_batches
from edgetune.train.settings import TrainConfig

# the QDQ model's logits are, in the median, at least this many times closer to its
# fake-quantized PyTorch twin than to the unquantized model, and predict the same on every row
# (not to the last bit: a value on a rounding boundary may flip, see qat_recover.twin_check)
TWIN_CLOSER = 4.0


def twin_holds(twin: dict) -> bool:
    closer = twin["median_abs_diff"] * TWIN_CLOSER <= twin["unquantized_median_abs_diff"]
    return closer and twin["same_prediction"] == 1.0


@pytest.fixture()
def tiny(tiny_model_dir):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    return model.eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def test_prepare_keeps_the_checkpoint_format_and_strip_undoes_it(tiny):
    model, _ = tiny
    keys = list(model.state_dict())
    qat.prepare(model, reduce_range=True)
    assert qat.layers(model) and list(model.state_dict()) == keys  # saves as a plain model
    linears = [m for m in qat.layers(model) if isinstance(m, qat.QatLinear)]
    assert linears and all(layer.weight_limits == (-64, 64) for layer in linears)
    rounded_norms = [m for m in qat.layers(model) if isinstance(m, qat.QatLayerNorm)]
    assert len(rounded_norms) == 4  # embeddings, and the two norms per layer a Linear reads
    qat.strip(model)
    assert not qat.layers(model)
    assert all(
        type(m) is torch.nn.Linear for m in model.modules() if isinstance(m, torch.nn.Linear)
    )


def test_fake_quantization_rounds_and_lets_gradients_through(tiny):
    model, tokenizer = tiny
    batch = eval_batches(tokenizer, [t for t, _ in make_rows(8)], 32)[0]
    inputs = {k: torch.as_tensor(v) for k, v in batch.items()}
    with torch.no_grad():
        plain = model(**inputs).logits
    qat.prepare(model, reduce_range=False)
    model.train()
    rounded = model(**inputs).logits
    rounded.sum().backward()
    assert not torch.allclose(plain, rounded.detach())  # the rounding is there
    linears = [m for m in qat.layers(model) if isinstance(m, qat.QatLinear)]
    assert all(layer.weight.grad is not None for layer in linears)  # straight through
    assert all(layer.ranges["output"].low < layer.ranges["output"].high for layer in linears)


def test_the_qdq_export_is_the_fake_quantized_models_twin(tuned_run, tmp_path):
    out, _ = tuned_run  # a trained tiny model: its logits mean something
    model = AutoModelForSequenceClassification.from_pretrained(out / "work" / "best").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "work" / "best")
    texts = [t for t, _ in make_rows(64)]
    calibration = calibration_batches(tokenizer, texts, 32, 32, seed=0)
    check = eval_batches(tokenizer, texts[:24], 32, batch_size=8)
    with torch.no_grad():
        plain = np.concatenate(
            [model(**{k: torch.as_tensor(v) for k, v in b.items()}).logits for b in check]
        )
    exported = export_quantized(model, tokenizer, calibration, check, tmp_path)
    assert exported.twin["rows"] == 24 and exported.twin["same_prediction"] == 1.0
    assert twin_holds(exported.twin) and exported.twin["max_abs_diff"] < 1e-4  # 3e-8 measured
    import onnxruntime as ort

    from edgetune.measure.bench import predict_logits

    served = predict_logits(ort.InferenceSession(str(exported.model)), check)
    unquantized = float(np.abs(served - plain).max())  # the rounding is real
    assert unquantized > 1e-3 and unquantized == pytest.approx(
        exported.twin["unquantized_max_abs_diff"]
    )
    graph = onnx.load(str(exported.model)).graph
    ops = [n.op_type for n in graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    weights = {i.name for i in graph.initializer}
    weights |= {  # a quantized weight reaches its MatMul through a DequantizeLinear
        n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights
    }
    products = [  # attention scores and context stay fp32, as training left them
        n
        for n in graph.node
        if n.op_type == "MatMul" and not any(name in weights for name in n.input)
    ]
    producers = {o: n.op_type for n in graph.node for o in n.output}
    assert products and all(
        producers.get(name) != "DequantizeLinear" for n in products for name in n.input
    )
    settings = exported.manifest_fields()
    assert settings["mode"] == "static-int8-qat" and settings["steps"][0]["pass"] == "static-int8"
    assert settings["quantization"]["activation_products"] is False


def test_the_budget_splits_into_recovery_and_qat():
    recovery, phase = split_budget(TrainConfig(epochs=10, max_train_minutes=20), 0.3)
    assert recovery.epochs == pytest.approx(7) and phase.epochs == pytest.approx(3)
    assert recovery.max_train_minutes == pytest.approx(14) and phase.max_train_minutes == 6


def test_prune_with_qat_writes_a_static_int8_bundle(
    tuned_run, tmp_path, tiny_data_csv, tiny_profile
):
    from click.testing import CliRunner

    from edgetune.cli import cli

    out, _ = tuned_run
    target = tmp_path / "qat"
    args = ["prune", out / "work" / "best", "--data", tiny_data_csv, "--out", target]
    args += ["--layers", "1", "--qat", "--epochs", "4", "--lr", "3e-3", "--profile", tiny_profile]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    manifest = json.loads((target / "edgetune.json").read_text())
    assert manifest["precision"] == "int8" and manifest["mode"] == "static-int8-qat"
    twin = manifest["pruning"]["qat"]["twin"]
    assert twin_holds(twin) and manifest["pruning"]["qat"]["share"] == 0.3
    predicted = CliRunner().invoke(cli, ["predict", str(target), "--text", "great fun"])
    assert predicted.exit_code == 0, predicted.output
    model = onnx.load(str(target / "model.onnx"))
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    assert np.isfinite(twin["max_abs_diff"])


def _candidate(name: str, accuracy: float, static: bool):
    from edgetune.measure.bench import AccuracyResult
    from edgetune.search.record import Candidate

    settings = {"quantization": {"format": "QDQ"}} if static else {"quantization": {}}
    return Candidate(
        name, "int8", f"{name}.onnx", AccuracyResult(accuracy, accuracy, 100), None, 1.0, settings
    )


def test_the_search_offers_qat_only_where_the_rounding_broke_what_the_weights_hold():
    from edgetune.search.qat import needs_qat

    fp32, static = _candidate("L2+fp32", 0.90, False), _candidate("L2+static", 0.85, True)
    assert needs_qat([fp32, static], bound=0.88)  # the weights hold, the rounding does not
    assert not needs_qat([fp32, _candidate("L2+static", 0.89, True)], bound=0.88)  # it held
    weak = _candidate("L2+fp32", 0.86, False)
    assert not needs_qat([weak, static], bound=0.88)  # the student broke: rounding is not why
    assert not needs_qat([fp32], bound=0.88)  # no static INT8 asked for


def test_a_student_whose_static_int8_broke_gets_a_qat_candidate_in_the_search(
    tmp_path, tiny_model_dir, tiny_data_csv, tiny_profile, monkeypatch
):
    """The trigger forced (the tiny task's static INT8 rarely loses): the whole QAT path of the
    search runs for real and its candidate is measured like the others."""
    from conftest import SEARCH_ARGS, tune_tiny

    import edgetune.search.pruning as search_pruning

    monkeypatch.setattr(search_pruning, "needs_qat", lambda found, bound: True)
    args = [a for a in SEARCH_ARGS if a not in ("L1,F0.5,L1-H0.5-F0.5", "fp32,dynamic-int8")]
    args = [a if a != "--prune-configs" else "--prune-configs=L1" for a in args]
    args = [a if a != "--modes" else "--modes=fp32" for a in args]
    args += ["--search-modes", "fp32,static-int8-minmax"]
    result = tune_tiny(tmp_path / "out", tiny_model_dir, tiny_data_csv, tiny_profile, *args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    names = [c["name"] for c in report["candidates"]]
    assert "L1+static-int8-qat" in names, names
    qat_candidate = next(c for c in report["candidates"] if c["name"] == "L1+static-int8-qat")
    assert qat_candidate["latency"]["p90_ms"] > 0 and qat_candidate["accuracy"]["accuracy"] > 0
    assert twin_holds(qat_candidate["settings"]["pruning"]["qat"]["twin"])
    assert any("quantization-aware recovery" in line for line in report["run"]["search"]["lines"])
