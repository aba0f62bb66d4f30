"""Smoke tests that keep benchmarks/ from rotting (no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # `make test-fast` leaves these out

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    if str(BENCHMARKS) not in sys.path:  # as `python benchmarks/NAME.py` has it: its helpers
        sys.path.append(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_runs_all_three_rows(tuned_run, tiny_data_csv, tiny_profile, tmp_path):
    out, _ = tuned_run
    compare = load("compare")
    result = compare.main(
        [
            "--run",
            str(out),
            "--data",
            str(tiny_data_csv),
            "--profile",
            str(tiny_profile),
            "--rounds",
            "2",
            "--runs-per-round",
            "2",
            "--harness-seconds",
            "0.2",
            "--out",
            str(tmp_path / "cmp.json"),
        ]
    )
    names = [r["name"] for r in result["rows"]]
    assert (
        names[0] == "PyTorch eager fp32"
        and names[1].startswith("Optimum")
        and names[2].startswith("edgetune")
    )
    for row in result["rows"]:
        assert row["p50_ms"] > 0 and row["runs"] == 4
    # one fp32 model on the same rows three ways: the same accuracy, and the tiny model learned
    accuracies = {round(row["accuracy"], 6) for row in result["rows"]}
    assert len(accuracies) == 1 and min(accuracies) >= 0.8, result["rows"]
    assert (
        result["rows"][0]["p50_vs_pytorch"][0] == 1.0
        and result["rows"][1]["p50_vs_optimum"][0] == 1.0
    )
    assert len(result["rows"][2]["p50_ci"]) == 2
    assert result["harness"]["edgetune_p50_ms"] > 0 and result["harness"]["bare_loop_p50_ms"] > 0
    assert json.loads((tmp_path / "cmp.json").read_text())["header"]["cores"]
    assert "| row | accuracy" in (tmp_path / "cmp.md").read_text()


def test_repeat_drift_prints_intervals_per_block(tuned_run, tiny_profile):
    out, _ = tuned_run
    blocks = load("repeat_drift").main(
        [str(out / "best"), "--profile", str(tiny_profile), "--warmups", "2", "--repeats", "2"]
    )
    assert len(blocks) == 1 and len(blocks[0]) == 2
    for p50, (low, high) in blocks[0]:
        assert low <= p50 <= high


def test_recovery_ablation_runs_its_four_variants(tuned_run, tiny_data_csv, tiny_profile, tmp_path):
    out, _ = tuned_run
    rows = load("recovery_ablation").main(
        [
            str(out / "work" / "best"),
            "--data",
            str(tiny_data_csv),
            "--layers",
            "1",
            "--ffn",
            "0.5",
            "--minutes",
            "0.3",
            "--max-train-samples",
            "64",
            "--profile",
            str(tiny_profile),
            "--out",
            str(tmp_path / "ablation"),
        ]
    )
    assert [(r["distillation"], r["found"]) for r in rows] == [
        ("logits", False),
        ("logits", True),
        ("layerwise", False),
        ("layerwise", True),
    ]
    assert rows[0]["learning_rate"] == 5e-5 and all(r["steps"] > 0 for r in rows)
    for row in rows:  # the ONNX model on the same validation rows as the PyTorch one
        assert abs(row["accuracy"] - row["pytorch_accuracy"]) <= 0.05


def test_agent_overhead_alternates_blocks_and_gives_a_ratio(tuned_run, tiny_profile, tmp_path):
    out, _ = tuned_run
    result = load("agent_overhead").main(
        [
            str(out / "best"),
            "--profile",
            str(tiny_profile),
            "--blocks",
            "2",
            "--seconds",
            "0.1",
            "--store",
            str(tmp_path / "store"),
        ]
    )
    low, high = result["interval"]
    assert result["ratio"] > 0 and low <= high


def test_one_core_agent_times_every_candidate_on_both_sides(
    tuned_run, tiny_profile, tmp_path, capsys
):
    import shutil

    import pytest

    if shutil.which("taskset") is None:
        pytest.skip("taskset is not installed")
    out, _ = tuned_run
    store = str(tmp_path / "store")
    result = load("one_core_agent").main(
        [str(out), "--profile", str(tiny_profile), "--seconds", "0.1", "--store", store]
    )
    printed = capsys.readouterr().out
    assert "(taskset -c 0)" in printed and "1 cores" in printed
    candidates = sorted(p.name for p in (out / "candidates").iterdir())
    assert all(name in printed for name in candidates)
    assert isinstance(result["changed"], list)


def test_paused_workers_times_both_ways_and_gives_a_ratio_per_model(
    tuned_run, tiny_profile, capsys
):
    out, _ = tuned_run
    models = [str(out / "candidates" / n / "model.onnx") for n in ("fp32", "dynamic-int8")]
    args = [*models, "--profile", str(tiny_profile), "--seconds", "0.05", "--blocks", "1"]
    summary = load("paused_workers").main(args)
    printed = capsys.readouterr().out
    assert "block 0 pause" in printed and "block 0 sleep" in printed
    assert set(summary) == {"fp32", "dynamic-int8"}
    assert all(ratio > 0 for ratio in summary.values())


def test_qat_recovery_prints_the_side_by_side_table(
    tuned_run, tiny_data_csv, tiny_profile, tmp_path, capsys
):
    out, _ = tuned_run
    qat_recovery = load("qat_recovery")
    args = ["--teacher", out / "work" / "best", "--data", tiny_data_csv, "--config", "L1"]
    args += ["--minutes", "0.15", "--profile", tiny_profile, "--out", tmp_path / "qat"]
    assert qat_recovery.main([str(a) for a in args]) == 0
    printed = capsys.readouterr().out
    for model in ("plain", "static-int8-minmax", "static-int8-minmax-linear", "qat"):
        assert f"{model} | " in printed
    assert "QAT twin check" in printed


def test_bootstrap_speed_prints_both_methods_with_the_same_numbers(capsys):
    rows = load("bootstrap_speed").main(["--repeats", "1"])
    assert [r["shape"] for r in rows] == ["10x100", "10x2000", "30x3000"]
    assert all(r["same_numbers"] and r["ours_ms"] > 0 and r["sorted_ms"] > 0 for r in rows)
    assert "faster" in capsys.readouterr().out
