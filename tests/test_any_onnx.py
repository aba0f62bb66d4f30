"""`bench` and `quantize` on ONNX files this project did not produce: inputs made from the
graph's signature (`--shape` for unknown dimensions), and quantization modes that refuse,
in one line, a graph they would leave unchanged."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from click.testing import CliRunner

from edgetune.cli import cli
from edgetune.measure.synthetic import parse_shapes, synthetic_feed
from edgetune.profiles import Profile

SHIPPED = Path(onnxruntime.__file__).parent / "datasets" / "logreg_iris.onnx"  # not written here
FAST = ["--rounds", "2", "--min-runs", "4", "--min-seconds", "0.2"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def conv_onnx(tmp_path_factory) -> Path:
    """A small conv image classifier exported with torch.onnx, height and width symbolic."""
    import torch

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 4),
    ).eval()
    path = tmp_path_factory.mktemp("conv") / "conv.onnx"
    torch.onnx.export(
        model,
        (torch.randn(1, 3, 32, 32),),
        str(path),
        input_names=["pixel_values"],
        output_names=["logits"],
        dynamo=False,
        dynamic_axes={"pixel_values": {0: "batch", 2: "height", 3: "width"}},
    )
    return path


def test_synthetic_inputs_follow_the_signature_and_the_given_shapes(conv_onnx):
    profile = Profile(name="p", latency_budget_ms=10, batch_size=2)
    feed = synthetic_feed(conv_onnx, profile, parse_shapes(["pixel_values=2x3x16x16"]))
    assert feed["pixel_values"].shape == (2, 3, 16, 16) and feed["pixel_values"].dtype == np.float32
    with pytest.raises(Exception, match="unknown dimension 'height'.*--shape pixel_values=NxNxNxN"):
        synthetic_feed(conv_onnx, profile, {})
    with pytest.raises(Exception, match="use NAME=DxDx"):
        parse_shapes(["pixel_values=1x3xbig"])


def test_bench_times_a_conv_net_given_its_shape(conv_onnx):
    result = run("bench", conv_onnx, "--shape", "pixel_values=1x3x32x32", "--json", *FAST)
    assert result.exit_code == 0, result.output
    latency = json.loads(result.output)["latency"]
    assert latency["p50_ms"] > 0 and latency["throughput_items_per_s"] > 0
    missing = run("bench", conv_onnx, *FAST)
    assert missing.exit_code == 2 and "--shape pixel_values=" in missing.output
    wrong = run("bench", conv_onnx, "--shape", "images=1x3x32x32", *FAST)
    assert wrong.exit_code == 2 and "does not take (its inputs: pixel_values)" in wrong.output
    text_only = run(
        "bench", conv_onnx, "--shape", "pixel_values=1x3x32x32", "--tokenizer", conv_onnx.parent
    )
    assert text_only.exit_code == 2 and "--tokenizer is for text models" in text_only.output


def test_bench_times_an_onnx_file_a_package_ships():
    result = run("bench", SHIPPED, "--json", *FAST)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["latency"]["p50_ms"] > 0


def test_quantize_transforms_a_conv_net_or_refuses_in_one_line(conv_onnx, tmp_path):
    done = run("quantize", conv_onnx, "--mode", "dynamic-int8", "--out", tmp_path / "q")
    assert done.exit_code == 0, done.output
    quantized = next((tmp_path / "q").rglob("*.onnx"))
    assert {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"} & {
        n.op_type for n in __import__("onnx").load(str(quantized)).graph.node
    }
    refused = run("quantize", conv_onnx, "--mode", "int4", "--out", tmp_path / "q4")
    assert refused.exit_code == 2, refused.output
    assert "int4: conv.onnx has nothing this pass quantizes (it takes MatMul" in refused.output
    assert not list((tmp_path / "q4").rglob("*.onnx")) if (tmp_path / "q4").exists() else True


NET = """
import torch


def build():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.LazyLinear(2))


def not_a_model():
    return 42
"""


def test_a_plain_pytorch_model_exports_checked_and_then_benches_and_quantizes(
    tmp_path, monkeypatch
):
    (tmp_path / "edgetune_test_net.py").write_text(NET)
    monkeypatch.chdir(tmp_path)
    done = run("export", "edgetune_test_net:build", "--input-shape", "x=1x3x16x16", "--out", "net")
    assert done.exit_code == 0, done.output
    record = json.loads((tmp_path / "net" / "edgetune_export.json").read_text())
    assert record["export_check"]["max_abs_diff"] <= record["export_check"]["atol"]
    assert record["input_shapes"] == {"x": [1, 3, 16, 16]}
    timed = run("bench", "net/model.onnx", "--json", *FAST)  # only the batch is symbolic
    assert timed.exit_code == 0, timed.output
    assert run("quantize", "net/model.onnx", "--mode", "dynamic-int8", "--out", "q").exit_code == 0
    for args, message in [
        (("edgetune_test_net:build", "--out", "a"), "needs its input shapes: --input-shape"),
        (
            ("edgetune_test_net:not_a_model", "--input-shape", "x=1x3x16x16", "--out", "b"),
            "returned a int, not a torch.nn.Module",
        ),
        (
            ("edgetune_no_such_module:build", "--input-shape", "x=1x3x16x16", "--out", "c"),
            "cannot import 'edgetune_no_such_module'",
        ),
    ]:
        refused = run("export", *args)
        assert refused.exit_code == 2 and message in refused.output, refused.output
        assert not (tmp_path / args[-1]).exists()  # nothing half-written


def test_a_given_shape_sizes_the_inputs_that_share_its_dimension_names(tuned_run, conv_onnx):
    out, _ = tuned_run
    profile = Profile(name="p", latency_budget_ms=10, batch_size=8, sequence_length=32)
    feed = synthetic_feed(out / "best" / "model.onnx", profile, parse_shapes(["input_ids=1x16"]))
    assert {a.shape for a in feed.values()} == {(1, 16)}
    assert (feed["attention_mask"] == 1).all()
    vocab = len((out / "best" / "vocab.txt").read_text().split())
    assert feed["input_ids"].max() < vocab  # ids inside the embedding table, fused or not
    with pytest.raises(Exception, match="3 dimensions given, the input has 4"):
        synthetic_feed(conv_onnx, profile, parse_shapes(["pixel_values=3x224x224"]))


def test_arrays_as_data_give_accuracy_and_calibrate_static_int8(conv_onnx, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((12, 3, 32, 32))  # float64: cast to the graph's float32
    session = onnxruntime.InferenceSession(str(conv_onnx), providers=["CPUExecutionProvider"])
    own = session.run(None, {"pixel_values": images.astype(np.float32)})[0].argmax(-1)
    np.savez(tmp_path / "rows.npz", pixel_values=images, labels=own)
    np.save(tmp_path / "wrong.npy", (own + 1) % 4)
    right = run("bench", conv_onnx, "--data", tmp_path / "rows.npz", "--json", *FAST)
    assert right.exit_code == 0, right.output
    accuracy = json.loads(right.output)["accuracy"]
    assert accuracy["accuracy"] == 1.0 and accuracy["examples"] == 12
    relabelled = run(
        "bench",
        conv_onnx,
        "--data",
        tmp_path / "rows.npz",
        "--labels",
        tmp_path / "wrong.npy",
        "--json",
        *FAST,
    )
    assert (
        relabelled.exit_code == 0 and json.loads(relabelled.output)["accuracy"]["accuracy"] == 0.0
    )

    out = tmp_path / "q"
    done = run(
        "quantize",
        conv_onnx,
        "--mode",
        "static-int8-minmax",
        "--calibration-data",
        tmp_path / "rows.npz",
        "--calibration-samples",
        "8",
        "--out",
        out,
    )
    assert done.exit_code == 0, done.output
    assert "QuantizeLinear" in {
        n.op_type for n in onnx.load(str(out / "static-int8-minmax" / "model.onnx")).graph.node
    }

    np.savez(tmp_path / "named.npz", images=images)
    for args, message in [
        (("--data", tmp_path / "named.npz"), "has no array 'pixel_values' (it holds: images)"),
        (("--data", tmp_path / "rows.npz", "--labels", tmp_path / "missing.npy"), "does not exist"),
    ]:
        failed = run("bench", conv_onnx, *args, *FAST)
        assert failed.exit_code == 2 and message in failed.output, failed.output
    np.save(tmp_path / "short.npy", own[:5])
    short = run(
        "bench",
        conv_onnx,
        "--data",
        tmp_path / "rows.npz",
        "--labels",
        tmp_path / "short.npy",
        *FAST,
    )
    assert short.exit_code == 2 and "5 labels for 12 rows" in short.output


def test_arrays_that_do_not_fit_the_graph_get_one_line(conv_onnx, tmp_path):
    from edgetune.data.arrays import load_array_data
    from edgetune.errors import InputError
    from edgetune.measure.synthetic import graph_input_specs

    specs = graph_input_specs(conv_onnx)
    cases = {
        "rank.npy": (np.zeros((4, 3, 32)), "has shape 4x3x32; the model takes Nx3xNxN"),
        "ints.npy": (
            np.zeros((4, 3, 8, 8), dtype=np.complex64),
            "holds complex64, the model takes float32",
        ),
        "strings.npy": (np.full((4, 3, 8, 8), "a"), "holds <U1"),
    }
    for name, (array, message) in cases.items():
        np.save(tmp_path / name, array)
        with pytest.raises(InputError, match=re.escape(message)):
            load_array_data(tmp_path / name, specs)
    (tmp_path / "torn.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(InputError, match="could not be read as NumPy arrays"):
        load_array_data(tmp_path / "torn.npz", specs)
    fixed = {"pixel_values": (np.dtype(np.float32), [2, 3, None, None])}
    np.save(tmp_path / "five.npy", np.zeros((5, 3, 8, 8), dtype=np.float32))
    data = load_array_data(tmp_path / "five.npy", fixed)
    assert [len(b["pixel_values"]) for b in data.batches(8)] == [2, 2] and len(
        data.feed(8)["pixel_values"]
    ) == 2
