"""GPU path on a real GPU: CUDA provider, IO binding, FP16. Skipped without CUDA."""

from __future__ import annotations

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        "CUDAExecutionProvider" not in ort.get_available_providers(),
        reason="no CUDA provider (install onnxruntime-gpu on a GPU machine)",
    ),
]


def test_cuda_bench_with_io_binding_and_gpu_memory(tuned_run):
    from transformers import AutoTokenizer

    from edgetune.data.encoding import latency_feed
    from edgetune.measure.latency import LatencySettings, measure_latency
    from edgetune.profiles import load_profile

    out, _ = tuned_run
    profile = load_profile("gpu-server")
    feed = latency_feed(AutoTokenizer.from_pretrained(out / "best"), ["good film"], 32, 32)
    result = measure_latency(
        out / "best" / "model.onnx", profile, feed, LatencySettings(20, 50, 0.5)
    )
    assert result.providers[0] == "CUDAExecutionProvider" and result.p50_ms > 0


def test_fp16_model_runs_on_cuda_with_fp32_outputs(tuned_run, tmp_path):
    from edgetune.compress.modes import MODES, build_variants
    from edgetune.compress.passes import PassContext
    from edgetune.measure.session import create_session
    from edgetune.profiles import load_profile

    out, _ = tuned_run
    built = build_variants(
        out / "candidates" / "fp32" / "model.onnx", tmp_path, [MODES["fp16"]], PassContext()
    )
    session = create_session(built["fp16"][0], load_profile("gpu-server"))
    feed = {i.name: np.ones((2, 8), dtype=np.int64) for i in session.get_inputs()}
    logits = session.run(None, feed)[0]
    assert logits.dtype == np.float32 and np.isfinite(logits).all()
