"""`pip install edgetune` without an extra runs what a deployment target needs.

A fresh venv gets the package with no extra (no torch, transformers, optimum, datasets), then
runs there `predict`, `bench` on a text and an image bundle, `predict` on a tagging and an
audio bundle, `serve` answering one request,
`agent` measuring for a `bench --target`, and the commands that need the `tune` extra say so
in one line. Installing needs the package registry (pip's configured index); without it the
test is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_audio import audio_profile, plain_audio_run, tones  # noqa: F401 (fixtures)
from test_tokens import conll_folder, ner_run, tiny_ner_model  # noqa: F401 (fixtures)
from vision_fixtures import write_image_folder, write_tiny_image_model

from edgetune.cli import cli

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "optimum", "datasets", "matplotlib", "accelerate")
FAST = ["--rounds", "2", "--min-runs", "4", "--min-seconds", "0.1"]
TOKEN = "runtime-token"

pytestmark = [pytest.mark.registry, pytest.mark.e2e]


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory) -> Path:
    """A venv holding `pip install <this checkout>` and nothing else: its bin folder."""
    root = tmp_path_factory.mktemp("runtime")
    source = root / "source"  # a copy, so that the build leaves nothing in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "edgetune", source / "edgetune", ignore=ignore)
    bin_dir = root / "venv" / "bin"
    uv = Path(sys.executable).parent / "uv"  # `make install` puts it beside pytest
    if uv.is_file():  # the same install in seconds, not a minute
        subprocess.run(
            [str(uv), "venv", "--quiet", "--python", sys.executable, bin_dir.parent], check=True
        )
        install = [str(uv), "pip", "install", "--quiet", "--python", str(bin_dir / "python")]
    else:
        subprocess.run([sys.executable, "-m", "venv", str(bin_dir.parent)], check=True)
        install = [str(bin_dir / "pip"), "install", "--quiet"]
    done = subprocess.run(
        [*install, str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"pip could not install the runtime: {done.stderr.strip()[-300:]}")
    return bin_dir


@pytest.fixture(scope="module")
def image_bundle(tmp_path_factory, tiny_profile) -> Path:
    """A tiny ViT tuned in a few steps: its bundle."""
    root = tmp_path_factory.mktemp("vit")
    model = write_tiny_image_model(root / "model", "vit")
    images = write_image_folder(root / "images", per_class=10)
    args = ["--model", model, "--data", images, "--profile", tiny_profile, "--out", root / "run"]
    fast = ["--epochs", "1", "--modes", "fp32", "--rounds", "2"]
    result = CliRunner().invoke(cli, ["tune", *(str(a) for a in [*args, *fast])])
    assert result.exit_code == 0, result.output
    return root / "run" / "best"


def environment(extra: dict | None) -> dict:
    """This environment less PYTHONPATH (only the install is seen), plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **(extra or {})}


def edgetune(bin_dir: Path, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    """The venv's `edgetune`, run outside the checkout."""
    return subprocess.run(
        [str(bin_dir / "edgetune"), *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=bin_dir,
        env=environment(env),
    )


def start(bin_dir: Path, ready: str, *args, env: dict | None = None):
    """A long-running command of the venv; its URL from its ready line."""
    process = subprocess.Popen(
        [str(bin_dir / "edgetune"), *(str(a) for a in args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=bin_dir,
        env=environment(env),
    )
    seen = []
    for line in process.stdout:
        seen.append(line)
        if ready in line:
            return process, line.split("ready on ")[1].split()[0]
    process.wait()
    raise AssertionError(f"{args[0]} did not start: " + "".join(seen))


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=30)


def test_the_install_holds_no_training_package_and_imports_none(runtime_venv):
    code = (
        "import importlib.util, sys, edgetune.cli, edgetune.jobs.predict, edgetune.jobs.bench, "
        "edgetune.jobs.serve, edgetune.jobs.loadtest, edgetune.jobs.agent, edgetune.deploy.server, "
        "edgetune.measure.tagging, edgetune.data.waveform, edgetune.data.front_end, soundfile; "
        f"heavy = {HEAVY!r}; "
        "print(json.dumps({'installed': [h for h in heavy if importlib.util.find_spec(h)], "
        "'imported': sorted({m.split('.')[0] for m in sys.modules} & set(heavy))}))"
    )
    done = subprocess.run(
        [str(runtime_venv / "python"), "-c", "import json; " + code],
        capture_output=True,
        text=True,
        cwd=runtime_venv,
        env=environment(None),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"installed": [], "imported": []}


def test_predict_and_bench_text_and_image_bundles(
    runtime_venv, tuned_run, image_bundle, tiny_profile
):
    text_bundle = tuned_run[0] / "best"
    done = edgetune(runtime_venv, "predict", text_bundle, "--text", "good great film")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0])["label"] in ("positive", "negative")
    picture = next((image_bundle.parents[1] / "images" / "bright").iterdir())
    done = edgetune(runtime_venv, "predict", image_bundle, "--image", picture)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0])["label"] in ("bright", "dark")
    for bundle, shape in ((text_bundle, [1, 32]), (image_bundle, [1, 3, 32, 32])):
        done = edgetune(runtime_venv, "bench", bundle, "--profile", tiny_profile, "--json", *FAST)
        assert done.returncode == 0, done.stderr
        latency = json.loads(done.stdout)["latency"]
        assert latency["p50_ms"] > 0 and latency["input_shape"] == shape, latency


def test_predict_entities_and_an_audio_file_without_torch(
    runtime_venv,
    ner_run,  # noqa: F811 (a fixture)
    plain_audio_run,  # noqa: F811 (a fixture)
    tones,  # noqa: F811 (a fixture)
):
    text = "Today Carol Smith went to New York ."
    done = edgetune(runtime_venv, "predict", ner_run / "best", "--text", text)
    assert done.returncode == 0, done.stderr
    entities = json.loads(done.stdout.splitlines()[0])["entities"]
    assert {(e["type"], text[e["start"] : e["end"]]) for e in entities} >= {("PER", "Carol Smith")}
    clip = next((tones / "validation" / "high").iterdir())
    done = edgetune(runtime_venv, "predict", plain_audio_run / "out" / "best", "--audio", clip)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0])["label"] in ("high", "low")


def test_commands_that_need_the_extra_say_so_in_one_line(
    runtime_venv, tuned_run, tiny_model_dir, tiny_data_csv, tmp_path
):
    out, _ = tuned_run
    for args, command in (
        (["tune", "--model", tiny_model_dir, "--data", tiny_data_csv, "--out", tmp_path], "tune"),
        (["bench", out / "best", "--data", tiny_data_csv, *FAST], "bench"),
        (["report", out], "report"),
    ):
        done = edgetune(runtime_venv, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.strip() == (
            f"error: edgetune {command} needs the training extra: pip install 'edgetune[tune]'"
        )


def test_serve_loadtest_and_an_agent(runtime_venv, tuned_run, tiny_profile, tmp_path):
    bundle = tuned_run[0] / "best"
    server, url = start(runtime_venv, "edgetune serve: ready on", "serve", bundle, "--port", "0")
    try:
        request = urllib.request.Request(
            url + "/v1/predict",
            json.dumps(["a good film"]).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        assert answer["predictions"][0]["label"] in ("positive", "negative"), answer
    finally:
        stop(server)
    steps = ["--concurrency", "2", "--step-seconds", "0.5", "--rates", "20", "--max-seconds", "30"]
    done = edgetune(runtime_venv, "loadtest", bundle, "--out", tmp_path / "load", *steps)
    assert done.returncode == 0, done.stderr
    notes = json.loads((tmp_path / "load" / "loadtest.json").read_text())["notes"]
    assert any("no loadtest.png: the plot needs matplotlib" in n for n in notes), notes
    env = {"EDGETUNE_AGENT_TOKEN": TOKEN}
    store = ["--store", tmp_path / "store"]
    agent, url = start(
        runtime_venv, "edgetune agent: ready on", "agent", "--port", "0", *store, env=env
    )
    try:
        target = ["--target", url, "--profile", tiny_profile]
        done = edgetune(runtime_venv, "bench", bundle, *target, "--json", *FAST, env=env)
        assert done.returncode == 0, done.stderr
        latency = json.loads(done.stdout)["latency"]
        assert latency["p50_ms"] > 0 and latency["machine"]["id"], latency
    finally:
        stop(agent)
