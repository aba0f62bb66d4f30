"""Counted costs of ONNX graphs (`measure/counts.py`): hand-built graphs whose parameters,
multiply-accumulates and peak activations are worked out by hand, and a real export whose
parameter count must equal PyTorch's, before and after INT8 quantization."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgetune.measure.counts import count_graph, over_counted_budget
from edgetune.profiles import Profile


def save(tmp_path, nodes, inputs, outputs, weights, name="m.onnx"):
    graph = helper.make_graph(nodes, "g", inputs, outputs, weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, path)
    return path


def weight(name, *shape):
    return numpy_helper.from_array(np.random.default_rng(0).random(shape, np.float32), name)


def test_a_two_layer_mlp_counts_as_worked_out_by_hand(tmp_path):
    """x[1,8] -> MatMul W1[8,4] -> Relu -> Gemm W2[4,2] + b[2]."""
    path = save(
        tmp_path,
        [
            helper.make_node("MatMul", ["x", "W1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "W2", "b"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
        [weight("W1", 8, 4), weight("W2", 4, 2), weight("b", 2)],
    )
    counts = count_graph(path, {"x": np.ones((1, 8), np.float32)})
    assert counts.params == 32 + 8 + 2 and counts.weight_bytes == 4 * 42
    assert counts.macs == {"fp32": 1 * 4 * 8 + 1 * 2 * 4}
    # x (32 B) and h (16 B) alive at once is the most: x is freed after the MatMul reads it
    assert counts.peak_activation_mb * 1e6 == pytest.approx(48)
    double = count_graph(path, {"x": np.ones((4, 8), np.float32)})  # the profile's batch
    assert double.macs["fp32"] == 4 * 40 and double.input_shape == [4, 8]


def test_a_convolution_counts_its_kernel_per_output(tmp_path):
    path = save(
        tmp_path,
        [helper.make_node("Conv", ["x", "W"], ["y"], pads=[1, 1, 1, 1])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [weight("W", 4, 3, 3, 3)],
    )
    counts = count_graph(path, {"x": np.ones((1, 3, 8, 8), np.float32)})
    assert counts.macs == {"fp32": 4 * 8 * 8 * (3 * 3 * 3)} and counts.params == 108


def test_a_profile_bound_names_what_is_over():
    from edgetune.measure.counts import GraphCounts

    counts = GraphCounts(params=2_000_000, weight_bytes=0, macs={"int8": 3 * 10**9})
    profile = Profile(name="p", latency_budget_ms=10, max_params_m=1.5, max_gmacs=5.0)
    assert over_counted_budget(counts, profile) == ["2M params > 1.5"]
    assert over_counted_budget(counts, Profile(name="p", latency_budget_ms=10)) == []


def test_an_export_counts_pytorchs_parameters_before_and_after_int8(tiny_model_dir, tmp_path):
    """The tiny BERT's ONNX holds exactly its PyTorch parameters; dynamic INT8 keeps the count
    (scales and zero points are not parameters) and moves the projections to int8."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgetune.exporter.onnx import export_onnx

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    fp32 = export_onnx(model.eval(), tokenizer, tmp_path / "fp32.onnx")
    int8 = tmp_path / "int8.onnx"
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    feed = dict(tokenizer(["good film"], padding="max_length", max_length=16, return_tensors="np"))
    feed = {k: v.astype(np.int64) for k, v in feed.items()}
    before, after = count_graph(fp32, feed), count_graph(int8, feed)
    buffers = {"bert.embeddings.position_ids", "bert.embeddings.token_type_ids"}
    expected = sum(p.numel() for n, p in model.named_parameters() if n not in buffers)
    assert before.params == expected and after.params == expected
    assert set(before.macs) == {"fp32"} and after.macs.get("int8", 0) > 0
    # hidden 32, FFN 64, 2 layers, 16 tokens: 4 projections + FFN per layer, then attention
    per_layer = 16 * 32 * 32 * 4 + 2 * 16 * 32 * 64 + 2 * 16 * 16 * 32
    pooler_and_head = 32 * 32 + 32 * 2
    assert sum(before.macs.values()) == 2 * per_layer + pooler_and_head
    assert sum(after.macs.values()) == sum(before.macs.values())
    assert after.weight_bytes < before.weight_bytes / 2


def test_spearman_matches_scipy_with_ties():
    scipy_stats = pytest.importorskip("scipy.stats")
    from edgetune.measure.stats import spearman

    x, y = [1.0, 2.0, 2.0, 5.0, 3.0, 9.0], [10.0, 30.0, 20.0, 40.0, 40.0, 35.0]
    assert spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic)
    assert spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None  # one count for all: no ranking
    assert spearman([1.0, 2.0], [2.0, 1.0]) is None


def test_only_candidates_within_the_counted_bounds_go_on_to_be_timed():
    from edgetune.search.record import Candidate
    from edgetune.search.select import within_counted_budget

    def counted(name, params):
        counts = {"params": params, "weight_bytes": 0, "macs": {"fp32": 10**9}}
        return Candidate(name, "fp32", "m.onnx", None, None, 1.0, counts=counts)

    profile = Profile(name="p", latency_budget_ms=10, max_params_m=1.0)
    kept, over = within_counted_budget(
        [counted("big", 2_000_000), counted("small", 900_000)], profile
    )
    assert [c.name for c in kept] == ["small"] and over == {"big": ["2M params > 1"]}


def test_a_profile_no_candidate_fits_by_count_stops_before_timing(
    tiny_model_dir, tiny_data_csv, tiny_profile, tmp_path
):
    from conftest import tune_tiny

    profile = tmp_path / "small.toml"
    profile.write_text(tiny_profile.read_text() + "max_params_m = 0.001\n")
    out = tmp_path / "out"
    args = ("--epochs", "1", "--batch-size", "16", "--lr", "1e-3", "--modes", "fp32,dynamic-int8")
    result = tune_tiny(out, tiny_model_dir, tiny_data_csv, profile, *args)
    assert result.exit_code == 2, result.output
    assert "every candidate is over the profile's counted budget" in result.output
    assert "M params > 0.001" in result.output and "Traceback" not in result.output
    assert not (out / "best").exists()


def test_a_one_layer_attention_block_counts_as_worked_out_by_hand(tmp_path):
    """x[1,S,D] -> Q, K, V projections -> softmax(Q K^T) V -> output projection.
    MACs: 4 projections of S x D x D, and the two products of activations, S x S x D each."""
    s, d = 8, 4
    path = save(
        tmp_path,
        [
            helper.make_node("MatMul", ["x", "Wq"], ["q"]),
            helper.make_node("MatMul", ["x", "Wk"], ["k"]),
            helper.make_node("MatMul", ["x", "Wv"], ["v"]),
            helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
            helper.make_node("MatMul", ["q", "kt"], ["scores"]),
            helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
            helper.make_node("MatMul", ["p", "v"], ["mixed"]),
            helper.make_node("MatMul", ["mixed", "Wo"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "s", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "s", d])],
        [weight(name, d, d) for name in ("Wq", "Wk", "Wv", "Wo")],
    )
    counts = count_graph(path, {"x": np.ones((1, s, d), np.float32)})
    assert counts.params == 4 * d * d
    assert counts.macs == {"fp32": 4 * s * d * d + 2 * s * s * d}


def test_a_search_probe_over_a_macs_budget_is_dropped_without_timing(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer, BertForSequenceClassification

    from edgetune.compress.modes import resolve_modes
    from edgetune.compress.passes import PassContext
    from edgetune.compress.pruning import PruneConfig
    from edgetune.search.candidates import CandidateBuilder
    from edgetune.search.pruning import probe_latency

    teacher = BertForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    modes = resolve_modes(["fp32"])

    def builder(max_gmacs: float) -> CandidateBuilder:
        profile = Profile(name="p", sequence_length=32, latency_budget_ms=100, max_gmacs=max_gmacs)
        found = CandidateBuilder(profile, tokenizer, PassContext(model_type="bert"))
        found.measure = lambda *args: pytest.fail("a probe over a counted bound was timed")
        return found

    probe = probe_latency(teacher, builder(1e-9), modes, tmp_path, None, PruneConfig(layers=1))
    assert probe["p90_ms"] == {} and "GMACs" in probe["over_counted"]["fp32"][0]
