"""Session settings tuned where the model runs: the rule, the bundle's record, and every
command that opens the bundle using it (predict, serve, bench, the agent)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from edgetune.cli import cli
from edgetune.deploy.agent import AgentState, make_server
from edgetune.deploy.bundle import MANIFEST_NAME, load_bundle, write_bundle
from edgetune.deploy.manifest import Manifest
from edgetune.measure.session import SessionSettings, session_in_use
from edgetune.measure.tuning import DEFAULT, single_changes, tune_session
from edgetune.profiles import Profile, load_profile

TUNED = {
    "intra_op_threads": 1,
    "allow_spinning": False,
    "graph_optimization": "basic",
    "execution_mode": "parallel",
    "inter_op_threads": 2,
}
FAST = ["--rounds", "3", "--min-runs", "3", "--min-seconds", "0.05"]


def tiny_classifier(path: Path, vocab: int) -> Path:
    """Mean of masked token embeddings -> 2 logits: a text graph that builds in milliseconds."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["tokens"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "last"], ["mask3"]),
        helper.make_node("Mul", ["tokens", "mask3"], ["kept"]),
        helper.make_node("ReduceMean", ["kept"], ["pooled"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
    ]
    ints = [("input_ids", TensorProto.INT64), ("attention_mask", TensorProto.INT64)]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(n, t, ["batch", "sequence"]) for n, t in ints],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [
            onnx.numpy_helper.from_array(rng.normal(size=(vocab, 8)).astype(np.float32), "emb"),
            onnx.numpy_helper.from_array(rng.normal(size=(8, 2)).astype(np.float32), "w"),
            onnx.numpy_helper.from_array(np.array([-1], np.int64), "last"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_model_dir, tiny_profile) -> Path:
    """A text bundle (no session settings recorded) around the tiny classifier."""
    root = tmp_path_factory.mktemp("session")
    vocab = len((tiny_model_dir / "vocab.txt").read_text().split())
    model = tiny_classifier(root / "model.onnx", vocab)
    manifest = Manifest(
        labels=["negative", "positive"],
        max_length=32,
        precision="fp32",
        profile=load_profile(tiny_profile).model_copy(update={"intra_op_threads": 2}),
    )
    return write_bundle(root / "bundle", model, tiny_model_dir, manifest).path


def with_session(bundle: Path, folder: Path, session: object) -> Path:
    """A copy of `bundle` whose manifest records `session` (as a file would: raw JSON)."""
    copy = shutil.copytree(bundle, folder)
    data = json.loads((copy / MANIFEST_NAME).read_text())
    (copy / MANIFEST_NAME).write_text(json.dumps({**data, "session": session}))
    return copy


def settings_of(session) -> dict:
    return {k: v for k, v in session_in_use(session).items() if k != "providers"}


# --- the settings reach every session of the bundle ------------------------------------------


def test_a_bundle_without_settings_runs_the_default_session(bundle):
    from edgetune.deploy.runtime import Predictor

    used = settings_of(Predictor(bundle).session)
    assert used == {**DEFAULT.model_dump(), "intra_op_threads": 2}  # the profile's threads


def test_a_bundle_s_recorded_settings_are_its_session_s(bundle, tmp_path):
    from edgetune.deploy.runtime import Predictor

    tuned = with_session(bundle, tmp_path / "tuned", TUNED)
    predictor = Predictor(tuned)
    assert settings_of(predictor.session) == TUNED  # read back from ONNX Runtime
    assert predictor.predict(["good movie"])[0]["label"] in ("negative", "positive")
    assert settings_of(Predictor(tuned, threads=3).session)["intra_op_threads"] == 3
    assert settings_of(Predictor(tuned, threads=3).session)["graph_optimization"] == "basic"


def test_predict_uses_the_recorded_settings(bundle, tmp_path, monkeypatch):
    from edgetune.deploy import runtime

    opened = []
    real = runtime.bundle_session
    monkeypatch.setattr(runtime, "bundle_session", lambda *a: opened.append(real(*a)) or opened[-1])
    tuned = with_session(bundle, tmp_path / "tuned", TUNED)
    result = CliRunner().invoke(cli, ["predict", str(tuned), "--text", "a good film"])
    assert result.exit_code == 0, result.output
    assert [settings_of(s) for s in opened] == [TUNED]


def test_serve_uses_the_recorded_settings_and_shows_them_in_healthz(bundle, tmp_path):
    from fastapi.testclient import TestClient

    from edgetune.config import ServeConfig
    from edgetune.jobs.serve import app_settings, server_stack

    tuned = with_session(bundle, tmp_path / "tuned", TUNED)
    app = server_stack().create_app(**app_settings(ServeConfig(bundle=str(tuned), max_batch=4)))
    with TestClient(app) as client:
        session = client.get("/healthz").json()["session"]
        assert client.post("/v1/predict", json={"texts": ["good"]}).status_code == 200
    assert {k: session[k] for k in TUNED} == TUNED and session["tuned"] is True
    assert session["providers"] == ["CPUExecutionProvider"]


@pytest.mark.parametrize(
    "session, field",
    [
        ({"graph_optimization": "fastest"}, "session.graph_optimization"),
        ({"allow_spinning": "yes"}, "session.allow_spinning"),  # strict: no guessing
        ({"intra_op_threads": 0}, "session.intra_op_threads"),
        ({"turbo": True}, "session.turbo"),
    ],
)
def test_a_bad_setting_in_a_manifest_is_one_line(bundle, tmp_path, session, field):
    bad = with_session(bundle, tmp_path / "bad", session)
    result = CliRunner().invoke(cli, ["predict", str(bad), "--text", "good"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"field '{field}'" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_bundle_from_before_tuning_still_loads(bundle):
    data = json.loads((bundle / MANIFEST_NAME).read_text())
    assert "session" in data and data["session"] is None
    del data["session"], data["session_tuning"]  # as an older edgetune wrote it
    assert Manifest.parse(data, "old").session is None
    assert load_bundle(bundle).manifest.session is None


# --- the rule: keep the default unless a setting is faster beyond its interval ---------------


def measure_with(speed: dict[str, list[float]], rounds: int = 10, seed: int = 0):
    """A fake `Measure`: per label, each pass's mean time (ms, default 1.0 in every pass), with
    2 % noise; injected samples make the rule's decisions deterministic."""
    rng = np.random.default_rng(seed)
    passes: list[list[str]] = []

    def measure(tried: list[SessionSettings]):
        passes.append([s.label() for s in tried])
        k = len(passes) - 1
        times = {
            s.label(): [
                rng.normal(speed.get(s.label(), [1.0, 1.0])[k], 0.02, 30) for _ in range(rounds)
            ]
            for s in tried
        }
        return times, {"id": "fake"}

    return measure, passes


PROFILE = Profile(name="p", latency_budget_ms=10, intra_op_threads=4)


def test_the_default_is_kept_when_nothing_is_faster_beyond_its_interval():
    measure, passes = measure_with({})  # every setting as fast as the default, noise apart
    tuning = tune_session(PROFILE, measure)
    assert tuning.chosen == DEFAULT and "default kept" in tuning.reason
    assert len(passes) == 1 and len(passes[0]) == 1 + len(single_changes(PROFILE))
    assert passes[0] == ["default", "threads=1", "threads=2", "spinning=off"] + [
        "optimization=extended",
        "optimization=basic",
        "execution=parallel inter-op=2",
    ]


def test_a_winner_beyond_its_interval_in_both_passes_is_chosen():
    measure, passes = measure_with({"spinning=off": [0.8, 0.8], "threads=2": [1.1, 1.1]})
    tuning = tune_session(PROFILE, measure)
    assert tuning.chosen == SessionSettings(allow_spinning=False)
    assert passes[1] == ["default", "spinning=off"]  # only the winner is confirmed
    chosen = next(t for t in tuning.trials if t.stage == 2 and t.settings == tuning.chosen)
    assert chosen.p90_ratio.high < 1.0 and chosen.faster
    slower = next(t for t in tuning.trials if t.settings.label() == "threads=2")
    assert slower.p90_ratio.low > 1.0 and not slower.faster


def test_a_first_pass_win_that_is_not_confirmed_keeps_the_default():
    measure, _ = measure_with({"optimization=basic": [0.8, 1.0]})
    tuning = tune_session(PROFILE, measure)
    assert tuning.chosen == DEFAULT and "not the confirming one" in tuning.reason


def test_winners_of_two_kinds_are_combined_and_the_fastest_confirmed_one_wins():
    combined = "threads=2 spinning=off"
    measure, passes = measure_with(
        {"threads=2": [0.9, 0.9], "spinning=off": [0.85, 0.85], combined: [1.0, 0.7]}
    )
    tuning = tune_session(PROFILE, measure)
    assert passes[1] == ["default", "threads=2", "spinning=off", combined]
    assert tuning.chosen == SessionSettings(intra_op_threads=2, allow_spinning=False)


def test_a_cuda_profile_tries_no_thread_settings():
    kinds = {kind for kind, _ in single_changes(PROFILE.model_copy(update={"device": "cuda"}))}
    assert kinds == {"optimization", "execution"}


# --- measured for real: bench, the agent, the benchmark script --------------------------------


@contextlib.contextmanager
def agent(store: Path):
    server = make_server("127.0.0.1", 0, AgentState(store, None, 100.0, busy_wait_s=0))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def put(url: str, data: bytes, path: str) -> str:
    digest = hashlib.sha256(data).hexdigest()
    request = urllib.request.Request(f"{url}/{path}/{digest}", data, method="PUT")
    with urllib.request.urlopen(request, timeout=30):
        return digest


def test_the_agent_refuses_a_bad_setting_in_one_line(bundle, tmp_path):
    feeds = tmp_path / "f.npz"
    np.savez(feeds, **{"fixed/0/input_ids": np.ones((1, 8), np.int64)})
    with agent(tmp_path / "store") as url:
        model = put(url, (bundle / "model.onnx").read_bytes(), "models")
        body = {
            "systems": [
                {
                    "name": "m",
                    "model": model,
                    "feeds": put(url, feeds.read_bytes(), "feeds"),
                    "session": {"execution_mode": "warp"},
                }
            ],
            "profile": {"name": "p", "latency_budget_ms": 10},
        }
        request = urllib.request.Request(f"{url}/measure", json.dumps(body).encode())
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=30)
    error = json.loads(caught.value.read())["error"]
    assert caught.value.code == 400 and "\n" not in error
    assert error.startswith("bad measure request: systems.0.session.execution_mode")


def test_tuning_on_a_target_runs_the_settings_there(bundle, tmp_path):
    with agent(tmp_path / "store") as url:
        args = ["bench", str(bundle), "--tune-session", "--json", "--target", url, *FAST]
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    tuning = json.loads(result.output)["session_tuning"]
    assert tuning["machine"]["cores"] >= 1 and len(tuning["trials"]) >= 5


def test_the_benchmark_script_prints_the_table(bundle, capsys):
    spec = importlib.util.spec_from_file_location(
        "session_tuning", Path(__file__).parents[1] / "benchmarks" / "session_tuning.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    tuning = script.main([str(bundle), "--seconds", "0.05", "--rounds", "3"])  # cpu-edge
    out = capsys.readouterr().out
    assert "p90 vs default" in out and "default" in out and tuning["chosen"] in out
    first = [t for t in tuning["trials"] if t["stage"] == 1]
    assert [t["setting"] for t in first][:3] == ["default", "threads=1", "spinning=off"]
    assert all(t["p90_ms"] > 0 and len(t["p90_ratio"]) == 3 for t in tuning["trials"])


# --- tune: on by default, in the bundle and the report -------------------------------------


def test_tune_records_the_tuning_in_the_bundle_and_the_report(tuned_run):
    out, _ = tuned_run
    manifest = json.loads((out / "best" / MANIFEST_NAME).read_text())
    SessionSettings.model_validate(manifest["session"])
    assert manifest["session_tuning"]["chosen"] and manifest["session_tuning"]["machine"]
    tuning = json.loads((out / "report.json").read_text())["run"]["session_tuning"]
    assert tuning["trials"][0]["setting"] == "default"
    report = (out / "report.md").read_text()
    assert "## Session settings" in report and "p90 vs default [95% CI]" in report


def test_tune_session_can_be_switched_off():
    from edgetune.cli.tune import config_from_command_line, tune

    ctx = tune.make_context("tune", ["--no-tune-session"])
    assert config_from_command_line(ctx, ctx.params).tune_session is False
    ctx = tune.make_context("tune", [])
    assert config_from_command_line(ctx, ctx.params).tune_session is True
