"""`edgetune predict`: the same answers as the ONNX model in bench, streamed to a file,
without importing torch or transformers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from click.testing import CliRunner
from conftest import make_rows, write_csv

from edgetune.cli import cli


def test_predict_texts_prints_labels_and_scores(tuned_run):
    out, _ = tuned_run
    result = CliRunner().invoke(
        cli, ["predict", str(out / "best"), "--text", "good great film", "--text", "awful bad plot"]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.strip().splitlines()]
    assert [x["label"] for x in lines] == ["positive", "negative"]
    assert abs(sum(lines[0]["scores"].values()) - 1.0) < 1e-4


def test_predictions_match_the_onnx_model_as_benched(tuned_run):
    """tokenizers-only encoding gives the same logits as the transformers tokenizer path."""
    from transformers import AutoTokenizer

    from edgetune.data.encoding import eval_batches
    from edgetune.deploy.runtime import Predictor
    from edgetune.measure.bench import predict_logits
    from edgetune.measure.session import create_session
    from edgetune.profiles import Profile

    out, _ = tuned_run
    texts = [t for t, _ in make_rows(50, seed=7)] + ["an unknownword " * 40]
    predictor = Predictor(out / "candidates" / "dynamic-int8")
    tokenizer = AutoTokenizer.from_pretrained(out / "candidates" / "dynamic-int8")
    session = create_session(predictor.bundle.model_path, Profile(name="p", latency_budget_ms=1))
    expected = predict_logits(
        session, eval_batches(tokenizer, texts, predictor.bundle.max_length, 8)
    )
    got = np.concatenate([predictor.logits(texts[i : i + 8]) for i in range(0, len(texts), 8)])
    assert np.abs(got - expected).max() < 1e-4


def test_predict_a_file_streams_to_an_atomic_output_with_accuracy(tuned_run, tmp_path):
    out, _ = tuned_run
    data = write_csv(tmp_path / "d.csv", make_rows(30, seed=3))
    target = tmp_path / "preds.csv"
    result = CliRunner().invoke(
        cli,
        [
            "predict",
            str(out / "best"),
            "--input",
            str(data),
            "--out",
            str(target),
            "--batch-size",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "30 rows; accuracy" in result.output
    lines = target.read_text().splitlines()
    assert lines[0] == "text,label,score_negative,score_positive" and len(lines) == 31
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    bad = CliRunner().invoke(
        cli, ["predict", str(out / "best"), "--input", str(data), "--text-column", "review"]
    )
    assert bad.exit_code == 2 and "no text column 'review'" in bad.output


def test_the_runtime_imports_no_torch_and_no_transformers(tuned_run):
    """Nor do the command line, `serve`, `loadtest` and `predict` before they run."""
    out, _ = tuned_run
    code = (
        "import sys; from edgetune.deploy.runtime import Predictor; "
        "import edgetune.cli, edgetune.jobs.serve, edgetune.jobs.loadtest, edgetune.jobs.predict; "
        f"p = Predictor({str(out / 'best')!r}); print(p.predict(['good film'])[0]['label']); "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'));"
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    label, heavy = done.stdout.strip().splitlines()
    assert label in ("positive", "negative") and heavy == "[]", done.stdout
