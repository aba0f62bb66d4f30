"""The bench harness without a GPU: provider selection, IO binding on CPU, the CUDA refusal."""

from __future__ import annotations

import numpy as np
import pytest

from edgetune.errors import InputError
from edgetune.measure.bench import model_size_mb
from edgetune.measure.latency import LatencySettings, measure_latency
from edgetune.measure.session import create_session
from edgetune.profiles import Profile, load_profile


@pytest.fixture(scope="module")
def onnx_and_feed(tuned_run):
    from transformers import AutoTokenizer

    from edgetune.data.encoding import latency_feed

    out, _ = tuned_run
    tokenizer = AutoTokenizer.from_pretrained(out / "best")
    return out / "best" / "model.onnx", latency_feed(tokenizer, ["good film"], 2, 16)


def test_cuda_profile_without_cuda_is_a_clear_error(onnx_and_feed):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InputError, match="CUDAExecutionProvider.*use a profile for this machine"):
        create_session(onnx_and_feed[0], load_profile("gpu-server"))


def test_session_uses_the_profile_threads_and_provider(onnx_and_feed):
    profile = Profile(name="p", latency_budget_ms=10, intra_op_threads=1)
    session = create_session(onnx_and_feed[0], profile)
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert session.get_session_options().intra_op_num_threads == 1


@pytest.mark.parametrize("io_binding", [False, True])
def test_latency_with_and_without_io_binding(onnx_and_feed, io_binding):
    path, feed = onnx_and_feed
    profile = Profile(
        name="p", latency_budget_ms=10, intra_op_threads=1, batch_size=2, sequence_length=16
    )
    settings = LatencySettings(warmup_runs=2, min_runs=7, min_seconds=0.05, io_binding=io_binding)
    result = measure_latency(path, profile, feed, settings)
    assert result.runs >= 7 and result.batch_size == 2 and result.sequence_length == 16
    assert 0 < result.p50_ms <= result.p90_ms <= result.p99_ms
    assert result.gpu_memory_mb is None and result.peak_rss_mb > 0


def test_isolated_measurement_reports_its_own_memory(onnx_and_feed):
    path, feed = onnx_and_feed
    profile = Profile(name="p", latency_budget_ms=10, intra_op_threads=1)
    result = measure_latency(path, profile, feed, LatencySettings(2, 5, 0.05))
    assert result.runs >= 5 and 20 < result.peak_rss_mb < 1000  # a fresh process, not pytest's
    assert model_size_mb(path) > 0 and np.isfinite(result.mean_ms)


def test_a_slow_front_end_is_timed_over_fewer_runs_not_for_minutes():
    from edgetune.measure.front_end import _enough

    assert not _enough(19, 1.0) and _enough(20, 0.5)  # quick: the usual 20 runs
    assert not _enough(4, 60.0) and _enough(5, 5.0)  # a second a batch: five runs, not twenty
