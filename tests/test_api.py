"""The public Python API with config objects, the recipe file, and the typed manifest."""

from __future__ import annotations

import json
import tomllib

import pytest
from click.testing import CliRunner
from conftest import make_rows, write_csv

import edgetune
from edgetune.cli import cli
from edgetune.errors import EXIT_BAD_INPUT, InputError

pytestmark = pytest.mark.e2e  # `make test-fast` leaves these out

QUICK = {"min_runs": 5, "min_seconds": 0.05}


def tiny_tune_config(model, data, profile, out, **extra) -> edgetune.TuneConfig:
    return edgetune.TuneConfig(
        model=str(model),
        data=str(data),
        profile=str(profile),
        out=str(out),
        modes=["fp32", "dynamic-int8"],
        train=edgetune.TrainConfig(
            epochs=8, learning_rate=3e-3, batch_size=16, early_stopping_patience=8
        ),
        **extra,
    )


@pytest.fixture(scope="module")
def api_run(tmp_path_factory, tiny_model_dir, tiny_data_csv, tiny_profile):
    out = tmp_path_factory.mktemp("api") / "run"
    return edgetune.tune(tiny_tune_config(tiny_model_dir, tiny_data_csv, tiny_profile, out))


def test_tune_through_the_api_writes_the_recipe(api_run):
    assert [c.name for c in api_run.candidates] == ["fp32", "dynamic-int8"]
    assert api_run.selection.winner is not None and api_run.best_bundle.is_dir()
    recipe = tomllib.loads(api_run.recipe.read_text())
    assert recipe["modes"] == ["fp32", "dynamic-int8"] and recipe["train"]["epochs"] == 8
    assert "resume" not in recipe and "overwrite" not in recipe
    assert edgetune.TuneConfig.model_validate(recipe).train.learning_rate == 3e-3


def test_a_recipe_reproduces_the_candidates_and_verdicts(api_run, tmp_path, tiny_profile):
    again = tmp_path / "again"
    result = CliRunner().invoke(cli, ["tune", "--config", str(api_run.recipe), "--out", str(again)])
    assert result.exit_code == 0, result.output
    first = json.loads((api_run.out_dir / "report.json").read_text())
    second = json.loads((again / "report.json").read_text())

    def verdicts(report):
        return [
            (
                c["name"],
                c["precision"],
                c["meets_budget"],
                c["within_accuracy_bound"],
                c["accuracy"]["accuracy"],
            )
            for c in report["candidates"]
        ]

    assert verdicts(first) == verdicts(second)
    # The winner is the fastest of the accuracy ties: timing decides it, so it may differ.
    assert first["selection"]["objective"] == second["selection"]["objective"] == "latency"
    assert tomllib.loads((again / "recipe.toml").read_text())["out"] == str(again)


def test_flags_override_the_recipe(api_run, tmp_path):
    out = tmp_path / "o"
    result = CliRunner().invoke(
        cli,
        [
            "tune",
            "--no-tune-session",  # timed in test_session_tuning
            "--config",
            str(api_run.recipe),
            "--out",
            str(out),
            "--modes",
            "fp32",
            "--max-steps",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    recipe = tomllib.loads((out / "recipe.toml").read_text())
    assert recipe["modes"] == ["fp32"] and recipe["train"]["max_steps"] == 2
    assert recipe["train"]["learning_rate"] == 3e-3  # from the file


def test_every_tune_flag_has_a_recipe_key():
    from edgetune.cli.tune import TUNE_FLAGS, tune

    keys = {key for key, *_ in TUNE_FLAGS}
    defaults = edgetune.TuneConfig().model_dump()
    for key in keys:
        table = defaults
        for part in key.split("."):
            assert part in table, key
            table = table[part]
    flags = {p.name for p in tune.params} - {"config"}
    assert flags == {k.replace(".", "__") for k in keys}


@pytest.mark.parametrize(
    "body, message",
    [
        ("epochs = 3\n", "key 'epochs'"),  # belongs in [train]
        ("[train]\nepochs = -1\n", "train.epochs"),
        ('modes = "fp32"\n', "modes"),
        ("this is = not toml", "not valid TOML"),
    ],
)
def test_bad_recipes_are_one_line(tmp_path, body, message):
    recipe = tmp_path / "r.toml"
    recipe.write_text(body)
    result = CliRunner().invoke(
        cli, ["tune", "--config", str(recipe), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == EXIT_BAD_INPUT and "Traceback" not in result.output
    assert message in result.output.strip().splitlines()[-1]


def test_bad_flag_value_names_the_flag(tmp_path):
    result = CliRunner().invoke(cli, ["tune", "--epochs", "-1", "--out", str(tmp_path / "o")])
    assert result.exit_code == EXIT_BAD_INPUT and "--epochs" in result.output


def test_quantize_and_bench_through_the_api(api_run, tmp_path, tiny_data_csv, tiny_profile):
    fp32 = api_run.out_dir / "candidates" / "fp32"
    written = edgetune.quantize(
        edgetune.QuantizeConfig(
            model=str(fp32),
            out=str(tmp_path / "q"),
            modes=["int4", "static-int8-entropy"],
            calibration_data=str(tiny_data_csv),
            calibration_samples=16,
        )
    )
    assert set(written) == {"int4", "static-int8-entropy"}
    manifest = edgetune.load_bundle(written["static-int8-entropy"]).manifest
    assert manifest.precision == "int8" and manifest.steps[0]["pass"] == "static-int8"
    assert manifest.steps[0]["config"]["method"] == "entropy"
    report = edgetune.bench(
        edgetune.BenchConfig(
            models=[str(fp32), str(written["int4"])],
            profile=str(tiny_profile),
            data=str(tiny_data_csv),
            **QUICK,
        )
    )
    first, int4 = report.results
    assert int4.accuracy.examples == 24 and int4.latency.p50_ms > 0 and int4.latency.rounds == 10
    assert len(int4.accuracy.correct) == 24 and int4.accuracy.ci[0] <= int4.accuracy.accuracy
    low, high = int4.latency.p50_ci
    assert low <= int4.latency.p50_ms <= high and int4.latency.traffic_p50_ms > 0
    ratio, ratio_low, ratio_high = report.ratios[0]["p50_ratio"]
    assert ratio_low <= ratio <= ratio_high and report.ratios[0]["vs"] == first.model


def test_prune_through_the_api(api_run, tmp_path, tiny_data_csv, tiny_profile):
    bundle = edgetune.prune(
        edgetune.PruneJobConfig(
            checkpoint=str(api_run.out_dir / "work" / "best"),
            data=str(tiny_data_csv),
            out=str(tmp_path / "p"),
            layers=1,
            ffn=0.5,
            profile=str(tiny_profile),
            train=edgetune.TrainConfig(epochs=1, learning_rate=3e-3),
        )
    )
    steps = [s["pass"] for s in bundle.manifest.pruning["steps"]]
    assert steps == ["layer-drop", "ffn-prune"]
    assert bundle.manifest.pruning["params_after"] < bundle.manifest.pruning["params_before"]


def test_no_candidate_carries_the_result(tmp_path, tiny_model_dir, tiny_data_csv, tiny_profile):
    config = tiny_tune_config(
        tiny_model_dir, tiny_data_csv, tiny_profile, tmp_path / "o", latency_budget_ms=1e-4
    )
    config.train.max_steps = 2
    with pytest.raises(edgetune.NoCandidate) as info:
        edgetune.tune(config)
    result = info.value.result
    assert [c.name for c in result.candidates] == ["fp32", "dynamic-int8"]
    assert result.selection.winner is None and result.report_md.is_file()


def test_a_newer_bundle_format_asks_for_an_upgrade(api_run, tmp_path):
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(api_run.best_bundle, bundle)
    manifest = json.loads((bundle / "edgetune.json").read_text())
    (bundle / "edgetune.json").write_text(json.dumps({**manifest, "format": "edgetune-bundle/2"}))
    with pytest.raises(InputError, match="newer than this edgetune reads.*upgrade edgetune"):
        edgetune.load_bundle(bundle)
    for wrong in ([1, 2], {**manifest, "labels": "neg"}, {**manifest, "max_length": "x"}):
        (bundle / "edgetune.json").write_text(json.dumps(wrong))
        with pytest.raises(InputError, match="edgetune.json"):
            edgetune.load_bundle(bundle)


def test_export_accepts_every_mode_name(api_run, tmp_path, tiny_profile):
    data = write_csv(tmp_path / "d.csv", make_rows(40))
    bundle = edgetune.export(
        edgetune.ExportConfig(
            checkpoint=str(api_run.out_dir / "work" / "best"),
            out=str(tmp_path / "e"),
            quantize="static-int8-minmax",
            profile=str(tiny_profile),
            data=str(data),
        )
    )
    assert bundle.manifest.precision == "int8" and bundle.manifest.mode == "static-int8-minmax"
