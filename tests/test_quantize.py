from edgetune.compress.cpu import choose_dynamic_int8


def test_avx2_without_vnni_reduces_range():
    choice = choose_dynamic_int8({"avx", "avx2"}, "x86_64")
    assert choice.reduce_range and choice.per_channel and "without VNNI" in choice.reason


def test_vnni_uses_full_range():
    assert not choose_dynamic_int8({"avx2", "avx512f", "avx512_vnni"}, "x86_64").reduce_range
    assert not choose_dynamic_int8({"avx2", "avx_vnni"}, "x86_64").reduce_range


def test_arm_uses_full_range():
    assert not choose_dynamic_int8(set(), "aarch64").reduce_range


import numpy as np
import onnxruntime as ort
import pytest

from edgetune.compress.modes import MODES, build_variants
from edgetune.compress.passes import PassContext


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory, tiny_model_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgetune.exporter.onnx import export_onnx

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    path = export_onnx(model.eval(), tokenizer, tmp_path_factory.mktemp("onnx") / "m.onnx")
    return path, tokenizer


def test_every_mode_builds_a_model_ort_runs(tiny_onnx, tmp_path):
    from conftest import make_rows

    from edgetune.data.encoding import calibration_batches

    path, tokenizer = tiny_onnx
    texts = [t for t, _ in make_rows(24)]
    batches = calibration_batches(tokenizer, texts, 32, samples=24, seed=0)
    ctx = PassContext(model_type="bert", calibration=batches, flags={"avx2"})
    built = build_variants(path, tmp_path, list(MODES.values()), ctx)
    assert list(built) == list(MODES)
    reference = None
    for name, (model_path, settings) in built.items():
        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        logits = session.run(None, {k: v for k, v in batches[0].items() if k in names})[0]
        assert logits.shape == (8, 2) and np.isfinite(logits).all(), name
        assert logits.dtype == np.float32, name  # fp16 keeps fp32 IO
        if name == "fp32":
            reference = logits
        else:
            assert np.abs(logits - reference).max() < 0.5, name  # close to fp32, not garbage
        if MODES[name].precision == "int8":
            assert settings["quantization"]["reduce_range"] is True  # avx2, no VNNI
    ops = {n.op_type for n in __import__("onnx").load(str(built["int4"][0])).graph.node}
    assert "MatMulNBits" in ops
    qdq = {
        n.op_type for n in __import__("onnx").load(str(built["static-int8-minmax"][0])).graph.node
    }
    assert "QuantizeLinear" in qdq and "DequantizeLinear" in qdq
    assert built["static-int8-minmax"][1]["quantization"]["calibration_samples"] == 24


def test_static_without_calibration_is_a_clear_error(tiny_onnx, tmp_path):
    from edgetune.errors import InputError

    with pytest.raises(InputError, match="needs calibration data"):
        build_variants(tiny_onnx[0], tmp_path, [MODES["static-int8-minmax"]], PassContext())


def test_unknown_mode(tiny_onnx, tmp_path):
    from edgetune.compress.modes import resolve_modes
    from edgetune.errors import InputError

    with pytest.raises(InputError, match="unknown mode"):
        resolve_modes(["int3"])


def test_minmax_ranges_come_from_every_calibration_batch(tiny_onnx, tmp_path):
    """ORT's MinMax calibrator dropped the batches it flushed (onnxruntime#18893): the scale of
    a tensor must hold its range over all batches, not over the last ones."""
    import onnx
    from conftest import make_rows
    from onnx import numpy_helper

    from edgetune.compress.passes import get_pass
    from edgetune.data.encoding import calibration_batches

    path, tokenizer = tiny_onnx
    batches = calibration_batches(tokenizer, [t for t, _ in make_rows(64)], 32, 64, seed=0)
    probe = onnx.load(str(path))
    products = [n.output[0] for n in probe.graph.node if n.op_type == "MatMul"]
    for name in products:
        probe.graph.output.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        )
    onnx.save(probe, str(tmp_path / "probe.onnx"))
    session = ort.InferenceSession(str(tmp_path / "probe.onnx"))
    names = [i.name for i in session.get_inputs()]
    runs = [session.run(products, {k: b[k] for k in names}) for b in batches]
    # a tensor and a batch whose own range falls short of the range over all batches: put that
    # batch last, so that ranges from the last batch alone would be caught
    tensor, low, high, short = None, 0.0, 0.0, None
    for t, name in enumerate(products):
        lows = [min(0.0, float(run[t].min())) for run in runs]
        highs = [max(0.0, float(run[t].max())) for run in runs]
        narrow = [i for i in range(len(runs)) if lows[i] > min(lows) or highs[i] < max(highs)]
        if narrow:
            tensor, low, high, short = name, min(lows), max(highs), narrow[0]
            break
    assert tensor is not None
    batches.append(batches.pop(short))
    static = get_pass("static-int8")
    target = tmp_path / "q.onnx"
    static.run(path, target, static.parse_config({}), PassContext(calibration=batches))
    quantized = onnx.load(str(target)).graph
    values = {i.name: numpy_helper.to_array(i) for i in quantized.initializer}
    quantize = next(
        n for n in quantized.node if n.op_type == "QuantizeLinear" and n.input[0] == tensor
    )
    scale = float(values[quantize.input[1]])
    assert scale == pytest.approx((high - low) / 255, rel=1e-5)


def test_symmetric_activations_put_every_activation_zero_point_at_the_middle(tiny_onnx, tmp_path):
    import onnx
    from conftest import make_rows
    from onnx import numpy_helper

    from edgetune.compress.passes import get_pass
    from edgetune.data.encoding import calibration_batches

    path, tokenizer = tiny_onnx
    batches = calibration_batches(tokenizer, [t for t, _ in make_rows(16)], 32, 16, seed=0)
    static = get_pass("static-int8")
    zero_points = {}
    for symmetric in (False, True):
        target = tmp_path / f"q{symmetric}.onnx"
        config = static.parse_config({"symmetric_activations": symmetric})
        chose = static.run(path, target, config, PassContext(calibration=batches))
        assert chose["quantization"]["symmetric_activations"] is symmetric
        graph = onnx.load(str(target)).graph
        values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        zero_points[symmetric] = {
            int(values[n.input[2]])
            for n in graph.node
            if n.op_type == "QuantizeLinear" and values[n.input[2]].dtype == np.uint8
        }
    assert zero_points[True] == {128} and len(zero_points[False]) > 1
