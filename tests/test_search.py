"""The pruning search end to end on the tiny model: probes, distillation, cache, report."""

from __future__ import annotations

import json

from click.testing import CliRunner
from conftest import SEARCH_ARGS as ARGS

from edgetune.cli import cli
from edgetune.compress.pruning import PruneConfig
from edgetune.search.cache import Cache, ProbeRecord
from edgetune.search.pruning import default_prune_configs, recovery_share


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_search_measures_pruned_candidates_and_plots(search_run):
    report = json.loads((search_run / "report.json").read_text())
    names = [c["name"] for c in report["candidates"]]
    assert names[:2] == ["fp32", "dynamic-int8"]
    for cfg in ("L1", "F0.5", "L1-H0.5-F0.5"):
        assert f"{cfg}+optimized-fp32" in names and f"{cfg}+dynamic-int8" in names
    assert len(names) == 8
    search = report["run"]["search"]
    assert search["trained"] == 3 and set(search["probes"]) == {"L1", "F0.5", "L1-H0.5-F0.5"}
    pruned = next(c for c in report["candidates"] if c["name"] == "L1+dynamic-int8")
    assert (
        pruned["settings"]["pruning"]["params_after"]
        < pruned["settings"]["pruning"]["params_before"]
    )
    dense = next(c for c in report["candidates"] if c["name"] == "dynamic-int8")
    assert pruned["counts"]["params"] < dense["counts"]["params"]  # one layer of two gone
    assert pruned["counts"]["gmacs"] < dense["counts"]["gmacs"]
    bundle = search_run / "candidates" / "L1+dynamic-int8"
    assert json.loads((bundle / "config.json").read_text())["num_hidden_layers"] == 1
    assert (search_run / "pareto.png").stat().st_size > 1000
    assert report["selection"]["pareto_frontier"]
    assert "## Pruning search" in (search_run / "report.md").read_text()


def test_rerun_with_resume_trains_nothing_new(
    search_run, tiny_model_dir, tiny_data_csv, tiny_profile
):
    result = run(
        "tune",
        "--no-tune-session",  # timed in test_session_tuning
        "--model",
        tiny_model_dir,
        "--data",
        tiny_data_csv,
        "--profile",
        tiny_profile,
        "--out",
        search_run,
        "--resume",
        *ARGS,
    )
    assert result.exit_code == 0, result.output
    search = json.loads((search_run / "report.json").read_text())["run"]["search"]
    assert search["trained"] == 0 and search["from_cache"] == 6  # 3 probes + 3 trained


def test_report_command_rerenders(search_run):
    (search_run / "report.md").unlink()
    (search_run / "pareto.png").unlink()
    result = run("report", search_run)
    assert result.exit_code == 0, result.output
    assert (search_run / "report.md").is_file() and (search_run / "pareto.png").is_file()


def test_report_command_on_a_folder_without_report(tmp_path):
    result = run("report", tmp_path)
    assert result.exit_code == 2 and "no report.json" in result.output


def test_default_grid_and_parse():
    grid = default_prune_configs(6)
    assert PruneConfig(layers=4) in grid and PruneConfig(layers=3, ffn=0.5) in grid
    assert all(c.layers is None or c.layers < 6 for c in grid)
    assert PruneConfig.parse("L3-H0.25-F0.5") == PruneConfig(layers=3, heads=0.25, ffn=0.5)


def test_recovery_minutes_are_shared_only_with_configs_that_would_still_be_trained():
    first, other, deeper = (
        PruneConfig.parse("L3-F0.5"),
        PruneConfig.parse("L2"),
        PruneConfig.parse("L2-F0.5"),
    )
    weight = {"L3-F0.5": 0.3, "L2": 0.3, "L2-F0.5": 0.4}
    # L2-F0.5 prunes at least as much as L3-F0.5: skipped if it fails, so not a rival for time
    assert recovery_share(first, [other, deeper], weight, 6) == 0.5
    assert recovery_share(other, [deeper], weight, 6) == 1.0
    assert recovery_share(deeper, [], weight, 6) == 1.0
    assert (
        recovery_share(first, [other, deeper], weight, 6, skip_rule=False) == 0.3
    )  # parallel tasks
    many = [PruneConfig.parse(n) for n in ("L2", "L3", "L4", "L5")]
    weight |= {"L3": 0.3, "L4": 0.3, "L5": 0.3}
    # trained in turn: at least its share among the 3 students a bisection over 5 trains
    assert recovery_share(first, many, weight, 6) == 0.25
    assert abs(recovery_share(first, many, weight, 6, skip_rule=False) - 0.2) < 1e-9


def test_cache_round_trip(tmp_path):
    cache = Cache(tmp_path)
    key = Cache.key("a", {"b": 1})
    assert key == Cache.key("a", {"b": 1}) and key != Cache.key("a", {"b": 2})
    assert cache.get(key, ProbeRecord) is None
    record = {"p90_ms": {"fp32": 1.5}, "verdict": {"fp32": "met"}, "params": 10}
    cache.put(key, record)
    assert cache.get(key, ProbeRecord) == record


def test_a_relative_budget_probe_is_judged_against_the_reference_timed_in_its_rounds(
    tiny_model_dir, tmp_path
):
    """Drift since the budget was set must not decide feasibility: the unpruned reference is
    timed with the probe, and the budget is the fraction of its p90 there."""
    from dataclasses import replace

    from transformers import AutoModelForSequenceClassification

    from edgetune.compress.modes import resolve_modes
    from edgetune.measure.bench import AccuracyResult
    from edgetune.measure.latency import LatencyResult
    from edgetune.profiles import Profile
    from edgetune.search.pruning import probe_latency
    from edgetune.search.record import Candidate

    def candidate(name):
        return Candidate(name, "fp32", f"{name}.onnx", AccuracyResult(0.9, 0.9, 10), None, 1.0)

    p90 = {"optimized-fp32": 4.0, "dynamic-int8": 6.0, "unpruned reference": 10.0}

    class Builder:  # times in ms as if measured in one set of rounds
        profile = Profile(name="t", latency_budget_ms=100.0)  # set earlier, on a faster minute

        def from_model(self, model, folder, modes, evaluation):
            return [candidate(m.name) for m in modes], None

        def measure(self, candidates, evaluation):
            for c in candidates:
                v = p90[c.name]
                c.latency = LatencyResult(
                    v,
                    v,
                    v,
                    v,
                    50,
                    1,
                    16,
                    1e3 / v,
                    1.0,
                    ["CPU"],
                    1,
                    p90_ci=[0.95 * v, 1.05 * v],
                    verdict="met",
                )

    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    modes = resolve_modes(["optimized-fp32", "dynamic-int8"])
    reference = replace(candidate("dynamic-int8"), model_path="ref.onnx")
    record = probe_latency(
        teacher, Builder(), modes, tmp_path, (reference, 0.5), PruneConfig(layers=1)
    )
    assert record["budget_ms"] == 5.0
    assert record["verdict"] == {"optimized-fp32": "met", "dynamic-int8": "missed"}


def test_the_search_takes_the_rest_of_an_hour_by_default():
    from edgetune.search.pruning import default_budget_minutes

    assert default_budget_minutes(20.0) == 37.0 and default_budget_minutes(55.0) == 10.0


def test_grid_has_narrow_deep_points_and_no_duplicates():
    names = [c.name for c in default_prune_configs(6)]
    assert "L4-F0.75" in names and "L4-H0.5-F0.5" in names and len(names) == len(set(names))
    tiny = [c.name for c in default_prune_configs(2)]  # one kept count: the mixes coincide
    assert len(tiny) == len(set(tiny)) and "L1-H0.5-F0.5" in tiny


def test_the_default_grid_is_searched_adaptively(
    tmp_path, tiny_model_dir, tiny_data_csv, tiny_profile
):
    """No --prune-configs: the frontier orders the grid, closes what cannot win, may go past
    it, and every student after the first reuses the first one's batch size and LR."""
    from conftest import tune_tiny

    args = [a for a in ARGS if a not in ("--prune-configs", "L1,F0.5,L1-H0.5-F0.5")]
    args = [a for a in args if a not in ("--lr", "3e-3", "--batch-size", "16")]
    result = tune_tiny(tmp_path / "out", tiny_model_dir, tiny_data_csv, tiny_profile, *args)
    assert result.exit_code == 0, result.output
    search = json.loads((tmp_path / "out" / "report.json").read_text())["run"]["search"]
    grid = {c.name for c in default_prune_configs(2)}
    assert grid <= set(search["probes"])
    trained = [step["config"] for step in search["frontier"]]
    assert trained and all("outcome" in step for step in search["frontier"])
    outcome_lines = [line for line in search["lines"] if "best ONNX accuracy" in line]
    assert [line.split(":")[0] for line in outcome_lines] == trained
    skipped = [line for line in search["lines"] if line.startswith("skip ")]
    # each grid config was trained or closed with a reason (none left over on a 10-min budget)
    assert grid <= set(trained) | {line.split()[1].rstrip(":") for line in skipped}
    if len(trained) > 1:
        assert any("'s batch size and LR" in line for line in search["lines"])
