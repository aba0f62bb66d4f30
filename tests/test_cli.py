"""End to end through Click's runner on the tiny model, and every bad input's one-line error."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner
from conftest import make_rows, write_csv

from edgetune.cli import cli
from edgetune.errors import EXIT_BAD_INPUT, EXIT_NO_CANDIDATE


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result) -> str:
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert lines, "expected an error message"
    last = lines[-1]
    assert last.startswith("error: "), result.output
    assert "Traceback" not in result.output
    return last


def test_tune_writes_bundle_and_report(tuned_run):
    out, result = tuned_run
    assert "bundle:" in result.output and "chosen" in result.output
    best = out / "best"
    manifest = json.loads((best / "edgetune.json").read_text())
    assert (best / "model.onnx").is_file() and (best / "config.json").is_file()
    assert (best / "tokenizer.json").is_file() or (best / "vocab.txt").is_file()
    assert manifest["labels"] == ["negative", "positive"]
    assert manifest["task"] == "text-classification" and manifest["max_length"] == 32
    assert set(manifest["input_names"]) >= {"input_ids", "attention_mask"}
    assert manifest["profile"]["name"] == "tiny" and manifest["edgetune_version"]
    report = json.loads((out / "report.json").read_text())
    names = [c["name"] for c in report["candidates"]]
    assert names == [
        "fp32",
        "optimized-fp32",
        "dynamic-int8",
        "dynamic-int8-per-tensor",
        "static-int8-minmax",
    ]  # int4 not in the profile; Percentile calibration only by name
    assert report["selection"]["winner"] == manifest["candidate"]
    assert (out / "report.md").read_text().startswith("# edgetune report")
    # counted at the profile's shape: quantization keeps the parameters, moves the MACs' width
    counts = {c["name"]: c["counts"] for c in report["candidates"]}
    assert len({n["params"] for n in counts.values()}) == 1 and counts["fp32"]["params"] > 10_000
    assert set(counts["fp32"]["macs"]) == {"fp32"} and counts["dynamic-int8"]["macs"]["int8"] > 0
    assert counts["dynamic-int8"]["weight_bytes"] < counts["fp32"]["weight_bytes"] / 2
    assert report["run"]["counted"]["candidates"] == 5
    assert "## Counted at the profile's shape" in (out / "report.md").read_text()
    from edgetune.hardware import fingerprint  # every latency says where it was measured

    assert "**Latency measured on:** " in (out / "report.md").read_text()
    assert {c["latency"]["machine"]["id"] for c in report["candidates"]} == {fingerprint()["id"]}
    stopped = report["run"]["train"]["stopped_by"]  # --epochs 8, --patience 8: one or the other
    assert stopped == "epochs (8)" or stopped.startswith("early stopping: 8 evaluations")
    assert f"**Fine-tuning** stopped by {stopped} (" in (out / "report.md").read_text()
    assert not list(out.glob(".*tmp*"))  # no staging left behind


def test_onnx_accuracy_equals_pytorch(tuned_run):
    out, _ = tuned_run
    report = json.loads((out / "report.json").read_text())
    fp32 = next(c for c in report["candidates"] if c["name"] == "fp32")
    assert report["run"]["pytorch_accuracy"] > 0.9  # the tiny task is learnable
    assert fp32["accuracy"]["accuracy"] == report["run"]["pytorch_accuracy"]


def test_bench_on_the_int8_bundle_matches_the_report(tuned_run, tiny_data_csv, tiny_profile):
    out, _ = tuned_run
    result = run(
        "bench",
        out / "candidates" / "dynamic-int8",
        "--profile",
        tiny_profile,
        "--data",
        tiny_data_csv,
        "--json",
        "--min-runs",
        "20",
        "--min-seconds",
        "0.5",
    )
    assert result.exit_code == 0, result.output
    measured = json.loads(result.output)
    report = json.loads((out / "report.json").read_text())
    int8 = next(c for c in report["candidates"] if c["name"] == "dynamic-int8")
    assert measured["accuracy"]["accuracy"] == int8["accuracy"]["accuracy"]
    assert measured["accuracy"]["examples"] == int8["accuracy"]["examples"]
    assert measured["latency"]["batch_size"] == 1 and measured["latency"]["sequence_length"] == 32
    assert measured["latency"]["p50_ms"] > 0 and measured["size_mb"] == pytest.approx(
        int8["size_mb"]
    )


def test_bench_table_on_a_bare_onnx_file(tuned_run, tiny_profile):
    out, _ = tuned_run
    result = run(
        "bench",
        out / "best" / "model.onnx",
        "--profile",
        tiny_profile,
        "--min-runs",
        "5",
        "--min-seconds",
        "0.1",
    )
    assert result.exit_code == 0, result.output
    assert "p50 ms [95% CI]" in result.output and "p90 ms [95% CI]" in result.output


def test_export_command_with_int8(tuned_run, tmp_path, tiny_profile):
    out, _ = tuned_run
    target = tmp_path / "bundle"
    result = run(
        "export",
        out / "work" / "best",
        "--out",
        target,
        "--quantize",
        "dynamic-int8",
        "--profile",
        tiny_profile,
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((target / "edgetune.json").read_text())
    assert manifest["precision"] == "int8" and manifest["quantization"]["per_channel"]
    assert manifest["export_check"]["max_abs_diff"] <= manifest["export_check"]["atol"]
    again = run("export", out / "work" / "best", "--out", target, "--profile", tiny_profile)
    assert again.exit_code == EXIT_BAD_INPUT and "already exists" in one_line_error(again)


def test_export_check_fails_naming_the_max_difference(tuned_run, tmp_path):
    """A perturbed ONNX weight must be caught by the numeric check, with the number in the error."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from edgetune.errors import ValidationError
    from edgetune.exporter.onnx import load_checkpoint, validate_onnx

    out, _ = tuned_run
    model = onnx.load(str(out / "candidates" / "fp32" / "model.onnx"))
    rng = np.random.default_rng(0)
    for tensor in model.graph.initializer:  # noise on every matrix: no LayerNorm can undo it
        if len(tensor.dims) == 2:
            weights = numpy_helper.to_array(tensor)
            noisy = weights + rng.normal(0, 1.0, weights.shape).astype(weights.dtype)
            tensor.CopyFrom(numpy_helper.from_array(noisy, tensor.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    torch_model, tokenizer = load_checkpoint(out / "work" / "best")
    texts = [t for t, _ in make_rows(8)]
    assert (
        validate_onnx(
            out / "candidates" / "fp32" / "model.onnx", torch_model, tokenizer, texts, 32
        ).max_abs_diff
        < 1e-4
    )
    with pytest.raises(
        ValidationError, match=r"differs from PyTorch by up to [0-9.e+-]+ \(atol 0.0001\)"
    ) as info:
        validate_onnx(broken, torch_model, tokenizer, texts, 32)
    assert info.value.max_abs_diff > 1e-4


def test_no_candidate_meets_budget_exit_code_and_report(
    tmp_path, tiny_model_dir, tiny_data_csv, tiny_profile
):
    out = tmp_path / "out"
    result = run(
        "tune",
        "--no-tune-session",  # timed in test_session_tuning
        "--model",
        tiny_model_dir,
        "--data",
        tiny_data_csv,
        "--profile",
        tiny_profile,
        "--latency-budget-ms",
        "0.0001",
        "--out",
        out,
        "--max-steps",
        "2",
    )
    assert result.exit_code == EXIT_NO_CANDIDATE
    line = one_line_error(result)
    assert "no candidate meets the budget" in line and "fastest is" in line
    assert (out / "report.json").is_file() and not (out / "best").exists()


# --- bad inputs: one clear line, non-zero exit, nothing half-written -------------------------


def test_model_path_missing(tmp_path, tiny_data_csv):
    result = run(
        "tune", "--model", tmp_path / "nope", "--data", tiny_data_csv, "--out", tmp_path / "o"
    )
    assert result.exit_code == EXIT_BAD_INPUT
    assert "does not exist" in one_line_error(result)


def test_model_path_without_model(tmp_path, tiny_data_csv):
    (tmp_path / "empty").mkdir()
    result = run(
        "tune", "--model", tmp_path / "empty", "--data", tiny_data_csv, "--out", tmp_path / "o"
    )
    assert result.exit_code == EXIT_BAD_INPUT
    assert "holds no model" in one_line_error(result)


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty"),
        ("a,b\n1,0\n2,1\n3,0\n", "no text column"),
        ("text,label\n" + "good film,pos\n" * 10, "only one class"),
    ],
)
def test_bad_data_files(tmp_path, tiny_model_dir, content, message):
    data = tmp_path / "d.csv"
    data.write_text(content)
    result = run("tune", "--model", tiny_model_dir, "--data", data, "--out", tmp_path / "o")
    assert result.exit_code == EXIT_BAD_INPUT
    assert message in one_line_error(result)


def test_no_label_column(tmp_path, tiny_model_dir):
    data = write_csv(
        tmp_path / "d.csv", [(t, "x", 1) for t, _ in make_rows(10)], header=("text", "note", "id")
    )
    result = run("tune", "--model", tiny_model_dir, "--data", data, "--out", tmp_path / "o")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "no label column" in one_line_error(result)


def test_unknown_profile(tmp_path, tiny_model_dir, tiny_data_csv):
    result = run(
        "tune",
        "--no-tune-session",  # timed in test_session_tuning
        "--model",
        tiny_model_dir,
        "--data",
        tiny_data_csv,
        "--profile",
        "nope",
        "--out",
        tmp_path / "o",
    )
    assert result.exit_code == EXIT_BAD_INPUT
    assert "unknown profile 'nope'" in one_line_error(result)


def test_profile_with_bad_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "b"\nlatency_budget_ms = 5\nbatch_size = -1\n')
    result = run("profiles", "show", bad)
    assert result.exit_code == EXIT_BAD_INPUT
    line = one_line_error(result)
    assert str(bad) in line and "batch_size" in line


def test_bench_not_onnx(tmp_path, tiny_profile):
    fake = tmp_path / "model.onnx"
    fake.write_text("this is not onnx")
    result = run("bench", fake, "--profile", tiny_profile)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "not an ONNX model" in one_line_error(result)


def test_output_exists_is_refused_and_kept(tmp_path, tiny_model_dir, tiny_data_csv):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = run("tune", "--model", tiny_model_dir, "--data", tiny_data_csv, "--out", out)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "already exists" in one_line_error(result) and "--overwrite" in result.output
    assert (out / "keep.txt").read_text() == "precious" and sorted(out.iterdir()) == [
        out / "keep.txt"
    ]


def test_profiles_commands():
    assert "cpu-edge" in run("profiles", "list").output
    shown = run("profiles", "show", "cpu-edge")
    assert shown.exit_code == 0 and json.loads(shown.output)["batch_size"] == 1


def test_every_command_has_help_with_an_example():
    for args in (
        ["tune"],
        ["export"],
        ["bench"],
        ["prune"],
        ["quantize"],
        ["predict"],
        ["profiles", "list"],
        ["profiles", "show"],
    ):
        result = run(*args, "--help")
        assert result.exit_code == 0 and "Example:" in result.output, args


# flag parameter -> config key, where the names differ
CONFIG_KEYS = {
    "profile_name": "profile",
    "out_dir": "out",
    "out_file": "out",
    "input_file": "input",
    "tokenizer_dir": "tokenizer",
    "texts_file": "texts",
    "epochs": "train.epochs",
    "learning_rate": "train.learning_rate",
    "max_train_minutes": "train.max_train_minutes",
    "max_train_samples": "train.max_train_samples",
}


def test_every_flag_defaults_to_its_config():
    """A flag and the config key it sets hold one default (a literal in a flag would drift)."""
    from edgetune import config as configs
    from edgetune.cli.options import config_default

    commands = {
        "export": configs.ExportConfig,
        "prune": configs.PruneJobConfig,
        "quantize": configs.QuantizeConfig,
        "bench": configs.BenchConfig,
        "predict": configs.PredictConfig,
        "serve": configs.ServeConfig,
        "loadtest": configs.LoadtestConfig,
        "agent": configs.AgentConfig,
    }
    checked = 0
    for name, config in commands.items():
        context = click.Context(cli.commands[name])
        for param in cli.commands[name].params:
            key = CONFIG_KEYS.get(param.name, param.name)
            if param.required or param.multiple or key.split(".")[0] not in config.model_fields:
                continue
            expected = config_default(config, key)
            if isinstance(expected, list):  # a comma-separated flag (--rates) fills a list
                continue
            default = param.get_default(context)
            assert default == expected, f"{name} --{param.name}: {default} != {expected}"
            checked += 1
    assert checked > 50


def test_prune_command_distils_and_bundles(tuned_run, tmp_path, tiny_data_csv, tiny_profile):
    out, _ = tuned_run
    target = tmp_path / "pruned"
    result = run(
        "prune",
        out / "work" / "best",
        "--data",
        tiny_data_csv,
        "--out",
        target,
        "--layers",
        "1",
        "--heads",
        "0.5",
        "--ffn",
        "0.5",
        "--hidden",
        "0.5",
        "--epochs",
        "4",
        "--lr",
        "3e-3",
        "--profile",
        tiny_profile,
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((target / "edgetune.json").read_text())
    assert manifest["pruning"]["name"] == "L1-H0.5-F0.5-W0.5" and manifest["pruning"]["distilled"]
    assert manifest["pruning"]["params_after"] < manifest["pruning"]["params_before"]
    config = json.loads((target / "config.json").read_text())
    assert config["num_hidden_layers"] == 1 and config["intermediate_size"] == 32
    assert config["hidden_size"] == 16  # the residual stream narrowed, distilled through a map
    bench = run(
        "bench",
        target,
        "--profile",
        tiny_profile,
        "--data",
        tiny_data_csv,
        "--json",
        "--min-runs",
        "5",
        "--min-seconds",
        "0.1",
    )
    assert bench.exit_code == 0, bench.output
    # learnt, well above chance (0.5, balanced): it reaches 1.0 on these 24 texts (seeds 1-5, 42)
    assert json.loads(bench.output)["accuracy"]["accuracy"] >= 0.8


def test_quantize_command_on_a_bundle(tuned_run, tmp_path, tiny_data_csv):
    out, _ = tuned_run
    result = run(
        "quantize",
        out / "candidates" / "fp32",
        "--mode",
        "dynamic-int8,static-int8-minmax",
        "--calibration-data",
        tiny_data_csv,
        "--calibration-samples",
        "16",
        "--out",
        tmp_path / "q",
    )
    assert result.exit_code == 0, result.output
    base = json.loads((out / "candidates" / "fp32" / "edgetune.json").read_text())
    for mode in ("dynamic-int8", "static-int8-minmax"):
        manifest = json.loads((tmp_path / "q" / mode / "edgetune.json").read_text())
        assert manifest["candidate"] == mode and manifest["precision"] == "int8"
        assert manifest["metrics"] is None  # not measured here: bench it
        assert manifest["session"] is None and manifest["serving"] is None
        assert manifest["train"] == base["train"] and manifest["task"] == base["task"]
        old = len(base["steps"])  # the model's history, then this quantization
        assert manifest["steps"][:old] == base["steps"] and len(manifest["steps"]) > old


def test_quantize_static_needs_calibration_data(tuned_run, tmp_path):
    out, _ = tuned_run
    result = run(
        "quantize",
        out / "best" / "model.onnx",
        "--mode",
        "static-int8-minmax",
        "--out",
        tmp_path / "q",
    )
    assert result.exit_code == EXIT_BAD_INPUT
    assert "--calibration-data" in one_line_error(result)


def test_quantize_help_lists_every_mode():
    from edgetune.compress.modes import MODES

    text = run("quantize", "--help").output
    assert all(name in text for name in MODES)


def test_finished_training_is_reused_only_with_the_same_settings(tuned_run):
    from edgetune.train.loop import TrainConfig, finished_training

    out, _ = tuned_run
    same = TrainConfig(
        epochs=8, learning_rate=3e-3, batch_size=16, early_stopping_patience=8, max_length=32
    )
    found = finished_training(out / "work", same)
    assert found is not None and found.checkpoint == out / "work" / "best" and found.steps > 0
    assert finished_training(out / "work", TrainConfig(epochs=2, max_length=32)) is None


def test_passes_command_lists_options_and_says_what_only_shrinks_size():
    result = run("passes")
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("magnitude-sparsity"))
    assert "size only: no speed-up" in line
    assert "method = 'minmax'" in result.output and "static-int8-percentile" in result.output
    listed = json.loads(run("passes", "--json").output)
    assert {p["name"] for p in listed["passes"]} >= {
        "dynamic-int8",
        "layer-drop",
        "magnitude-sparsity",
    }


def test_prune_with_an_extra_pass(tuned_run, tmp_path, tiny_data_csv, tiny_profile):
    out, _ = tuned_run
    result = run(
        "prune",
        out / "work" / "best",
        "--data",
        tiny_data_csv,
        "--out",
        tmp_path / "s",
        "--layers",
        "1",
        "--pass",
        "magnitude-sparsity:sparsity=0.5",
        "--epochs",
        "1",
        "--profile",
        tiny_profile,
    )
    assert result.exit_code == 0, result.output
    pruning = json.loads((tmp_path / "s" / "edgetune.json").read_text())["pruning"]
    assert [s["pass"] for s in pruning["steps"]] == ["layer-drop", "magnitude-sparsity"]
    assert pruning["name"] == "L1+magnitude-sparsity"
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(tmp_path / "s" / "model.onnx"))
    matrices = [numpy_helper.to_array(t) for t in model.graph.initializer if len(t.dims) == 2]
    zero_share = max(float((m == 0).mean()) for m in matrices)
    assert zero_share >= 0.45  # the zeros survived recovery: sparsity ran after it


def test_bench_two_models_side_by_side_with_a_ratio(tuned_run, tiny_profile):
    out, _ = tuned_run
    a, b = out / "candidates" / "fp32", out / "candidates" / "dynamic-int8"
    result = run(
        "bench",
        a,
        b,
        "--profile",
        tiny_profile,
        "--min-runs",
        "10",
        "--min-seconds",
        "0.2",
        "--rounds",
        "4",
        "--repeat",
        "2",
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [r["model"] for r in report["results"]] == [str(a), str(b)]
    low_high = report["ratios"][0]["p50_ratio"]
    assert low_high[1] <= low_high[0] <= low_high[2] and len(report["repeats"]) == 2
    assert all(r["rounds"] == 4 for rep in report["repeats"] for r in rep)
    # --repeat: copies of each file in the same rounds, each copy's ratio to its first copy
    assert [(r["model"], r["repeat"]) for r in report["repeat_ratios"]] == [
        (str(a), 2),
        (str(b), 2),
    ]
    assert all(
        r["p50_ratio"][1] <= r["p50_ratio"][0] <= r["p50_ratio"][2] for r in report["repeat_ratios"]
    )
    table = run(
        "bench",
        a,
        b,
        "--profile",
        tiny_profile,
        "--min-runs",
        "5",
        "--min-seconds",
        "0.1",
        "--repeat",
        "2",
    )
    assert table.exit_code == 0 and "1 (reference)" in table.output and "x [" in table.output
    assert "A/A check" in table.output


def test_bench_the_same_model_twice_is_refused(tuned_run, tiny_profile):
    out, _ = tuned_run
    result = run("bench", out / "best", out / "best", "--profile", tiny_profile)
    assert result.exit_code == EXIT_BAD_INPUT and "--repeat" in one_line_error(result)


def test_accuracy_is_measured_as_served_and_under_load_where_batches_matter(tuned_run):
    out, _ = tuned_run
    report = json.loads((out / "report.json").read_text())
    accuracy = {c["name"]: c["accuracy"] for c in report["candidates"]}
    assert accuracy["fp32"]["served_as"].startswith("batches of 1, ")  # the tiny profile's batch
    assert accuracy["fp32"]["under_load"] is None  # its rows do not depend on their batch
    assert accuracy["static-int8-minmax"]["under_load"] is None  # calibrated ranges
    load = accuracy["dynamic-int8"]["under_load"]  # ranges taken per batch at run time
    assert load["served_as"].startswith("batches of 32, ") and 0.0 <= load["p_value"] <= 1.0
    assert 0.0 <= load["accuracy"] <= 1.0
    text = (out / "report.md").read_text()
    assert "Accuracy of each ONNX model as served: batches of 1, each padded" in text
