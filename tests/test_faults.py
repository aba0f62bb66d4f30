"""Bad input and faults, table-driven: each case's exit code, its one line, nothing half-written.

Every case runs the real command line on the tiny model. None may end in an internal error
(exit 1) or a traceback; a bad `tune` must fail before training and leave no bundle, report
or staging folder behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_rows, write_csv

from edgetune.cli import cli

USAGE = 2  # bad input, and Click's usage errors alike


@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_model_dir, tiny_data_csv, tiny_profile) -> dict[str, Path]:
    """Every bad file and folder the table refers to, made once."""
    d = tmp_path_factory.mktemp("bad")
    rows = make_rows(40)
    f: dict[str, Path] = {
        "model": tiny_model_dir,
        "data": tiny_data_csv,
        "profile": tiny_profile,
        "root": d,
    }
    f["empty"] = d / "empty.csv"
    f["empty"].write_text("")
    f["header_only"] = d / "header.csv"
    f["header_only"].write_text("text,label\n")
    f["no_text"] = write_csv(d / "no_text.csv", [(i, i % 2) for i in range(20)], header=("a", "b"))
    f["one_class"] = write_csv(d / "one.csv", [(t, "pos") for t, _ in rows])
    f["latin1"] = d / "latin1.csv"
    f["latin1"].write_bytes(
        "text,label\ngood film,pos\ncaf\xe9 bad,neg\n".encode("latin-1")
        + b"".join(f"{t},{lab}\n".encode() for t, lab in rows)
    )
    f["bad_jsonl"] = d / "bad.jsonl"
    f["bad_jsonl"].write_text('{"text": "good", "label": "p"}\n{"text": "bad", "label": \n')
    f["array_jsonl"] = d / "arr.jsonl"
    f["array_jsonl"].write_text('["good", "p"]\n')
    f["bad_json"] = d / "bad.json"
    f["bad_json"].write_text('[{"text": "good", "label": "p"},\n {"text": }]')
    f["ragged_tsv"] = d / "ragged.tsv"
    f["ragged_tsv"].write_text(
        "text\tlabel\n"
        + "".join(f"{t}\t{lab}\n" for t, lab in rows[:2])
        + "an extra\tfield\there\n"
        + "".join(f"{t}\t{lab}\n" for t, lab in rows)
    )
    f["first_row_extra"] = d / "first.tsv"
    f["first_row_extra"].write_text(
        "text\tlabel\nwith\textra\tfield\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows)
    )
    f["xlsx"] = d / "data.xlsx"
    f["xlsx"].write_bytes(b"PK\x03\x04")
    f["empty_dir"] = d / "empty_dir"
    f["empty_dir"].mkdir()
    unseen = d / "unseen"
    unseen.mkdir()
    write_csv(unseen / "train.csv", rows)
    write_csv(unseen / "validation.csv", [*rows[:10], ("a neutral text", "neutral")])
    f["unseen"] = unseen
    f["few"] = write_csv(d / "few.csv", [("good", "p"), ("bad", "n"), ("fine", "p")])
    f["empty_texts"] = write_csv(d / "empty_texts.csv", [("", "p"), ("", "n")] * 10)
    f["no_tok"] = d / "no_tok"
    f["no_tok"].mkdir()
    shutil.copy(tiny_model_dir / "config.json", f["no_tok"] / "config.json")
    f["bad_config"] = d / "bad_config"
    shutil.copytree(tiny_model_dir, f["bad_config"])
    (f["bad_config"] / "config.json").write_text("{not json")
    f["vit"] = d / "vit"
    shutil.copytree(tiny_model_dir, f["vit"])
    (f["vit"] / "config.json").write_text(
        json.dumps(
            {
                "model_type": "vit",
                "hidden_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 64,
            }
        )
    )
    f["sam"] = (
        d / "sam"
    )  # a segmentation model: neither a sequence- nor an image-classification head
    shutil.copytree(tiny_model_dir, f["sam"])
    (f["sam"] / "config.json").write_text(json.dumps({"model_type": "sam"}))
    f["file_model"] = d / "model.bin"
    f["file_model"].write_bytes(b"x")
    for name, body in {
        "bad_toml": "name = = 1",
        "zero_batch": 'name="z"\nlatency_budget_ms=5\nbatch_size=0\n',
        "extra_field": 'name="z"\nlatency_budget_ms=5\nthreads=2\n',
        "no_budget": 'name="z"\n',
        "bad_provider": 'name="z"\nlatency_budget_ms=5\nexecution_providers=["CPU"]\n',
        "bad_budget_on": 'name="z"\nlatency_budget_ms=5\nbudget_on="p99"\n',
    }.items():
        f[name] = d / f"{name}.toml"
        f[name].write_text(body)
    f["recipe_bad_key"] = d / "bad_key.toml"
    f["recipe_bad_key"].write_text("epochs = 3\n")
    f["not_onnx"] = d / "not.onnx"
    f["not_onnx"].write_text("not onnx")
    f["exists"] = d / "exists"
    f["exists"].mkdir()
    (f["exists"] / "keep.txt").write_text("precious")
    f["a_file"] = d / "a_file"
    f["a_file"].write_text("precious")
    f["no_ckpt"] = d / "no_ckpt"
    f["no_ckpt"].mkdir()
    f["bundle_no_model"] = d / "bundle_no_model"
    f["bundle_no_model"].mkdir()
    return f


@pytest.fixture(scope="module")
def bundles(bad, tuned_run) -> dict[str, Path]:
    """Broken copies of a real bundle."""
    out, _ = tuned_run
    d = bad["root"]
    made = {"good": out / "best", "ckpt": out / "work" / "best"}
    manifest = json.loads((out / "best" / "edgetune.json").read_text())
    for name, content in {
        "wrong_shape": [1, 2],
        "newer": {**manifest, "format": "edgetune-bundle/9"},
        "bad_labels": {**manifest, "labels": "neg"},
    }.items():
        shutil.copytree(out / "best", d / name)
        (d / name / "edgetune.json").write_text(json.dumps(content))
        made[name] = d / name
    shutil.copy(out / "best" / "edgetune.json", bad["bundle_no_model"] / "edgetune.json")
    bare = d / "bare"
    bare.mkdir()
    shutil.copy(out / "best" / "model.onnx", bare / "model.onnx")
    made["bare_onnx"] = bare / "model.onnx"
    other = write_csv(
        d / "other_labels.csv",
        [(t, "sport" if i % 2 else "tech") for i, (t, _) in enumerate(make_rows(40))],
    )
    made["other_labels"] = other
    return made


def T(*args):
    return args


TUNE = (
    "tune",
    "--no-tune-session",  # timed in test_session_tuning
    "--model",
    "{model}",
    "--data",
    "{data}",
    "--profile",
    "{profile}",
    "--out",
    "{out}",
)
# (case id, command with {placeholders}, expected exit code, text in the last line)
CASES = [
    # data
    ("data-missing", T(*TUNE, "--data", "{root}/nope.csv"), USAGE, "no such file or folder"),
    ("data-empty", T(*TUNE, "--data", "{empty}"), USAGE, "the file is empty"),
    ("data-header-only", T(*TUNE, "--data", "{header_only}"), USAGE, "no rows"),
    ("data-no-text-column", T(*TUNE, "--data", "{no_text}"), USAGE, "no text column"),
    ("data-one-class", T(*TUNE, "--data", "{one_class}"), USAGE, "only one class"),
    ("data-unknown-text-column", T(*TUNE, "--text-column", "txt"), USAGE, "no column 'txt'"),
    ("data-unknown-label-column", T(*TUNE, "--label-column", "lbl"), USAGE, "no column 'lbl'"),
    ("data-latin1", T(*TUNE, "--data", "{latin1}"), USAGE, "line 3: not UTF-8 (byte 0xe9)"),
    ("data-bad-jsonl-line", T(*TUNE, "--data", "{bad_jsonl}"), USAGE, "line 2: not valid JSON"),
    (
        "data-jsonl-not-objects",
        T(*TUNE, "--data", "{array_jsonl}"),
        USAGE,
        "expected a JSON object",
    ),
    ("data-bad-json", T(*TUNE, "--data", "{bad_json}"), USAGE, "line 2: not valid JSON"),
    (
        "data-ragged-tsv",
        T(*TUNE, "--data", "{ragged_tsv}"),
        USAGE,
        "line 4: 3 fields where the header has 2",
    ),
    (
        "data-first-row-extra-field",
        T(*TUNE, "--data", "{first_row_extra}"),
        USAGE,
        "line 2: 3 fields",
    ),
    ("data-unsupported-type", T(*TUNE, "--data", "{xlsx}"), USAGE, "unsupported file type"),
    ("data-empty-folder", T(*TUNE, "--data", "{empty_dir}"), USAGE, "folder holds neither"),
    (
        "data-unseen-validation-label",
        T(*TUNE, "--data", "{unseen}"),
        USAGE,
        "['neutral'] never occur",
    ),
    ("data-too-few-rows", T(*TUNE, "--data", "{few}"), USAGE, "too few rows"),
    ("data-all-texts-empty", T(*TUNE, "--data", "{empty_texts}"), USAGE, "only one class"),
    (
        "data-hub-unreachable",
        T(*TUNE, "--data", "someone/no-such-dataset-xyz"),
        USAGE,
        "Hugging Face hub",
    ),
    # model
    ("model-missing", T(*TUNE, "--model", "{root}/nope"), USAGE, "does not exist"),
    (
        "model-relative-missing",
        T(*TUNE, "--model", "models/missing"),
        USAGE,
        "no such local folder",
    ),
    ("model-empty-folder", T(*TUNE, "--model", "{empty_dir}"), USAGE, "holds no model"),
    ("model-no-tokenizer", T(*TUNE, "--model", "{no_tok}"), USAGE, "holds no tokenizer"),
    ("model-bad-config", T(*TUNE, "--model", "{bad_config}"), USAGE, "config.json cannot be read"),
    (
        "model-no-classifier-head",
        T(*TUNE, "--model", "{sam}"),
        USAGE,
        "no sequence-classification head",
    ),
    ("image-model-no-processor", T(*TUNE, "--model", "{vit}"), USAGE, "holds no image processor"),
    ("model-is-a-file", T(*TUNE, "--model", "{file_model}"), USAGE, "is a file"),
    # profile
    ("profile-unknown", T(*TUNE, "--profile", "nope"), USAGE, "unknown profile 'nope'"),
    ("profile-bad-toml", T(*TUNE, "--profile", "{bad_toml}"), USAGE, "not valid TOML"),
    ("profile-zero-batch", T(*TUNE, "--profile", "{zero_batch}"), USAGE, "batch_size"),
    ("profile-unknown-field", T(*TUNE, "--profile", "{extra_field}"), USAGE, "threads"),
    ("profile-no-budget", T(*TUNE, "--profile", "{no_budget}"), USAGE, "latency_budget_ms"),
    ("profile-bad-provider", T(*TUNE, "--profile", "{bad_provider}"), USAGE, "execution_providers"),
    ("profile-bad-budget-on", T(*TUNE, "--profile", "{bad_budget_on}"), USAGE, "budget_on"),
    (
        "profile-cuda-without-cuda",
        T(*TUNE, "--profile", "gpu-server"),
        USAGE,
        "CUDAExecutionProvider",
    ),
    (
        "profile-negative-budget",
        T(*TUNE, "--latency-budget-ms", "-5"),
        USAGE,
        "--latency-budget-ms",
    ),
    # tune flags and recipes
    ("flag-zero-epochs", T(*TUNE, "--epochs", "0"), USAGE, "--epochs"),
    ("flag-zero-batch", T(*TUNE, "--batch-size", "0"), USAGE, "--batch-size"),
    (
        "flag-word-batch",
        T(*TUNE, "--batch-size", "big"),
        USAGE,
        "--batch-size: 'big' is not a batch size",
    ),
    (
        "flag-word-lr",
        T(*TUNE, "--lr", "fast"),
        USAGE,
        (
            "--learning-rate: Input should be a valid number, unable to parse string as a "
            "number, or 'auto'"
        ),
    ),
    ("flag-unknown-mode", T(*TUNE, "--modes", "fp32,int3"), USAGE, "unknown mode(s) int3"),
    ("flag-unknown-search-mode", T(*TUNE, "--search-modes", "int3"), USAGE, "unknown mode(s) int3"),
    (
        "flag-bad-prune-config",
        T(*TUNE, "--prune-search", "--prune-configs", "X9"),
        USAGE,
        "pruning config 'X9'",
    ),
    (
        "flag-negative-accuracy-drop",
        T(*TUNE, "--max-accuracy-drop", "-1"),
        USAGE,
        "--max-accuracy-drop",
    ),
    ("flag-bad-scheduler", T(*TUNE, "--scheduler", "exp"), USAGE, "Invalid value"),
    ("flag-bad-objective", T(*TUNE, "--objective", "fastest"), USAGE, "Invalid value"),
    ("flag-not-a-number", T(*TUNE, "--epochs", "many"), USAGE, "Invalid value"),
    ("cli-unknown-command", T("frobnicate"), USAGE, "No such command"),
    ("cli-unknown-option", T(*TUNE, "--epoch", "1"), USAGE, "No such option"),
    ("recipe-missing", T("tune", "--config", "{root}/nope.toml"), USAGE, "does not exist"),
    ("recipe-unknown-key", T("tune", "--config", "{recipe_bad_key}"), USAGE, "key 'epochs'"),
    # output folder
    ("out-exists", T(*TUNE, "--out", "{exists}"), USAGE, "already exists"),
    ("out-is-a-file", T(*TUNE, "--out", "{a_file}", "--overwrite"), USAGE, "is a file"),
    # export
    (
        "export-missing-checkpoint",
        T("export", "{root}/nope", "--out", "{out}"),
        USAGE,
        "does not exist",
    ),
    ("export-no-model", T("export", "{no_ckpt}", "--out", "{out}"), USAGE, "holds no model"),
    (
        "export-negative-atol",
        T("export", "{ckpt}", "--out", "{out}", "--atol", "-1"),
        USAGE,
        "atol",
    ),
    (
        "export-unknown-mode",
        T("export", "{ckpt}", "--out", "{out}", "--quantize", "int3"),
        USAGE,
        "unknown mode",
    ),
    ("export-old-opset", T("export", "{ckpt}", "--out", "{out}", "--opset", "5"), USAGE, "opset"),
    ("export-out-exists", T("export", "{ckpt}", "--out", "{exists}"), USAGE, "already exists"),
    # quantize
    (
        "quantize-missing",
        T("quantize", "{root}/nope.onnx", "--mode", "int4", "--out", "{out}"),
        USAGE,
        "does not exist",
    ),
    (
        "quantize-unknown-mode",
        T("quantize", "{good}", "--mode", "int3", "--out", "{out}"),
        USAGE,
        "unknown mode",
    ),
    (
        "quantize-static-without-data",
        T("quantize", "{good}", "--mode", "static-int8-minmax", "--out", "{out}"),
        USAGE,
        "--calibration-data",
    ),
    (
        "quantize-not-onnx",
        T("quantize", "{not_onnx}", "--mode", "int4", "--out", "{out}"),
        USAGE,
        "not an ONNX model",
    ),
    (
        "quantize-bundle-without-model",
        T("quantize", "{bundle_no_model}", "--mode", "int4", "--out", "{out}"),
        USAGE,
        "has no model.onnx",
    ),
    (
        "quantize-zero-samples",
        T("quantize", "{good}", "--mode", "int4", "--out", "{out}", "--calibration-samples", "0"),
        USAGE,
        "calibration_samples",
    ),
    ("quantize-no-mode", T("quantize", "{good}", "--mode", ",", "--out", "{out}"), USAGE, "modes"),
    # bench
    (
        "bench-missing",
        T("bench", "{root}/nope.onnx", "--profile", "{profile}"),
        USAGE,
        "does not exist",
    ),
    (
        "bench-not-onnx",
        T("bench", "{not_onnx}", "--profile", "{profile}"),
        USAGE,
        "not an ONNX model",
    ),
    (
        "bench-manifest-wrong-shape",
        T("bench", "{wrong_shape}", "--profile", "{profile}"),
        USAGE,
        "expected a JSON object",
    ),
    (
        "bench-manifest-newer",
        T("bench", "{newer}", "--profile", "{profile}"),
        USAGE,
        "upgrade edgetune",
    ),
    (
        "bench-manifest-bad-labels",
        T("bench", "{bad_labels}", "--profile", "{profile}"),
        USAGE,
        "labels",
    ),
    (
        "bench-bundle-without-model",
        T("bench", "{bundle_no_model}", "--profile", "{profile}"),
        USAGE,
        "has no model.onnx",
    ),
    (
        "bench-bare-onnx-no-tokenizer",
        T("bench", "{bare_onnx}", "--profile", "{profile}", "--data", "{data}"),
        USAGE,
        "no tokenizer",
    ),
    ("bench-bad-split", T("bench", "{good}", "--split", "dev"), USAGE, "Invalid value"),
    (
        "bench-labels-unknown-to-model",
        T("bench", "{good}", "--profile", "{profile}", "--data", "{other_labels}"),
        USAGE,
        "not among the model's",
    ),
    (
        "bench-same-model-twice",
        T("bench", "{good}", "{good}", "--profile", "{profile}"),
        USAGE,
        "--repeat",
    ),
    (
        "bench-zero-runs",
        T("bench", "{good}", "--profile", "{profile}", "--min-runs", "0"),
        USAGE,
        "min_runs",
    ),
    (
        "bench-cuda-without-cuda",
        T("bench", "{good}", "--profile", "gpu-server"),
        USAGE,
        "CUDAExecutionProvider",
    ),
    # predict
    (
        "predict-missing-bundle",
        T("predict", "{root}/nope", "--text", "x"),
        USAGE,
        "not an edgetune bundle",
    ),
    ("predict-nothing-to-predict", T("predict", "{good}"), USAGE, "give --text"),
    (
        "predict-input-missing",
        T("predict", "{good}", "--input", "{root}/nope.csv"),
        USAGE,
        "no such file",
    ),
    (
        "predict-input-type",
        T("predict", "{good}", "--input", "{xlsx}"),
        USAGE,
        "use a .csv, .tsv or .jsonl",
    ),
    (
        "predict-bad-out-type",
        T("predict", "{good}", "--input", "{data}", "--out", "{root}/p.txt"),
        USAGE,
        "use a .csv or .jsonl",
    ),
    # prune, report, profiles
    (
        "prune-all-heads",
        T("prune", "{ckpt}", "--data", "{data}", "--out", "{out}", "--heads", "1.0"),
        USAGE,
        "heads",
    ),
    (
        "prune-zero-layers",
        T("prune", "{ckpt}", "--data", "{data}", "--out", "{out}", "--layers", "0"),
        USAGE,
        "layers",
    ),
    (
        "prune-unknown-pass",
        T("prune", "{ckpt}", "--data", "{data}", "--out", "{out}", "--pass", "nope"),
        USAGE,
        "unknown pass",
    ),
    ("report-no-report", T("report", "{empty_dir}"), USAGE, "no report.json"),
    ("profiles-show-unknown", T("profiles", "show", "nope"), USAGE, "unknown profile"),
]


def test_the_table_is_large_enough():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case, command, code, text", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, command, code, text, bad, bundles, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "2")
    out = tmp_path / "out"
    args = [
        str(a).format(out=out, **{k: str(v) for k, v in {**bad, **bundles}.items()})
        for a in command
    ]
    if case == "model-relative-missing":
        monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, args)
    output = result.output
    assert result.exit_code == code, output
    assert "Traceback" not in output and "internal error" not in output, output
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert lines and text in output, output
    if "Usage:" not in output:
        assert lines[-1].startswith("error: ") and text in lines[-1], output
    if out.exists():  # nothing half-written: no bundle, no report, no staging folder
        leftovers = [p.name for p in out.rglob("*") if p.name not in (".edgetune.lock",)]
        assert not any(
            n in ("report.json", "best", "model.onnx") or ".tmp-" in n for n in leftovers
        ), leftovers
    assert (bad["exists"] / "keep.txt").read_text() == "precious"
    assert bad["a_file"].read_text() == "precious"
