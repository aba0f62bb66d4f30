"""Mixed precision (`search/mixed.py`, `compress/sensitivity.py`): the nodes that add the most
noise are ranked first, kept in fp32 by the static INT8 pass, and a variant joins the
candidates only when it is within the bound."""

from __future__ import annotations

import numpy as np
import onnx

from edgetune.compress.sensitivity import NodeNoise
from edgetune.measure.bench import AccuracyResult
from edgetune.search.mixed import keep_counts, loss_against, repair
from edgetune.search.record import Candidate


def scored(name: str, right: str) -> Candidate:
    accuracy = AccuracyResult(right.count("1") / len(right), 0.0, len(right), [], right)
    return Candidate(name, "int8", f"{name}.onnx", accuracy, None, 1.0)


def noise(*values: float) -> list[NodeNoise]:
    return [NodeNoise(f"n{i}", "MatMul", v, 10.0) for i, v in enumerate(values)]


def test_the_cap_is_tried_first_then_the_nodes_holding_half_the_noise_doubling():
    assert keep_counts(noise(6.0, 2.0, 1.0, 0.5, 0.3, 0.1, 0.05, 0.05)) == [4, 1, 2]
    assert keep_counts(noise(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)) == [4]  # half: the cap
    assert keep_counts(noise(0.0, -1.0)) == [1]  # nothing adds noise: one node, the cap


def test_a_variant_within_the_bound_is_returned_and_the_note_says_what_was_lost():
    fp32 = scored("fp32", "1" * 100)
    lossy = scored("static-int8-minmax", "0" * 5 + "1" * 95)  # 5 points, McNemar p = 0.06
    assert loss_against(fp32, lossy).breaks(1.0)
    built = []

    def build(nodes, k):
        built.append(nodes)
        misses = 2 if k == 1 else 0
        return scored(f"static-int8-minmax+keep-fp32-{k}", "0" * misses + "1" * (100 - misses))

    ranked = noise(6.0, 2.0, 1.0, 0.5, 0.3, 0.1, 0.05, 0.05)
    fixed = repair(lossy, fp32, 1.0, ranked, build)
    assert fixed.name == "static-int8-minmax+keep-fp32-2"
    assert built == [["n0", "n1", "n2", "n3"], ["n0"], ["n0", "n1"]]  # the cap, then upwards
    assert "lost 5.00 points" in lossy.notes[0] and "n0 (+6)" in lossy.notes[0]
    assert "within the bound" in lossy.notes[0]


def test_no_variant_within_the_bound_is_said_and_none_joins():
    fp32, lossy = scored("fp32", "1" * 100), scored("s", "0" * 10 + "1" * 90)
    built = []

    def build(nodes, k):
        built.append(k)
        return scored(f"s{k}", "0" * 9 + "1" * 91)

    fixed = repair(lossy, fp32, 1.0, noise(3.0, 1.0, 1.0, 1.0), build)
    assert fixed is None and built == [2]  # the widest variant breaks it: nothing narrower tried
    assert "not within the bound, so no fewer" in lossy.notes[0]


def test_sensitive_nodes_are_ranked_and_kept_in_fp32(tiny_model_dir, tmp_path):
    """On the tiny BERT: every quantized MatMul is ranked; the top two, kept in fp32, read no
    dequantized input in the variant, and its steps record them."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgetune.compress.onnx_passes import StaticInt8, StaticInt8Config, prepare_for_static
    from edgetune.compress.passes import PassContext
    from edgetune.compress.sensitivity import rank_nodes
    from edgetune.data.encoding import calibration_batches
    from edgetune.exporter.onnx import export_onnx

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    fp32 = export_onnx(model.eval(), tokenizer, tmp_path / "fp32.onnx")
    texts = ["good film and great story", "bad plot it was awful", "the actor was fine"] * 6
    batches = calibration_batches(tokenizer, texts, 16, 16, 0)
    ctx = PassContext(model_type="bert", calibration=batches, range_cache=tmp_path / "ranges")
    StaticInt8().run(fp32, tmp_path / "int8.onnx", StaticInt8Config(), ctx)
    prepared = prepare_for_static(fp32, tmp_path / "prepared.onnx")
    ranked = rank_nodes(prepared, tmp_path / "int8.onnx", ctx.calibration)
    matmuls = [n for n in onnx.load(str(prepared)).graph.node if n.op_type in ("MatMul", "Gemm")]
    assert {n.node for n in ranked} <= {m.name for m in matmuls} and len(ranked) >= 8
    assert [n.added_noise for n in ranked] == sorted((n.added_noise for n in ranked), reverse=True)
    assert all(np.isfinite(n.output_sqnr_db) for n in ranked)

    keep = tuple(n.node for n in ranked[:2])
    chose = StaticInt8().run(fp32, tmp_path / "mixed.onnx", StaticInt8Config(keep_fp32=keep), ctx)
    assert chose["quantization"]["kept_fp32"] == list(keep)
    assert len(list((tmp_path / "ranges").glob("*.json"))) == 1  # one calibration, reused
    graph = onnx.load(str(tmp_path / "mixed.onnx")).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    for node in (n for n in graph.node if n.name in keep):
        assert all(producers.get(i) != "DequantizeLinear" for i in node.input)
    others = [n for n in graph.node if n.op_type == "MatMul" and n.name not in keep]
    assert any(producers.get(n.input[0]) == "DequantizeLinear" for n in others)
