"""`edgetune serve` and `edgetune loadtest`: batching, 4xx on bad requests, graceful shutdown,
capacity at budget, and bundles that Optimum loads."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from edgetune.cli import cli
from edgetune.deploy.batcher import MicroBatcher


def post(url: str, body: bytes, timeout: float = 30) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def metric(text: str, name: str) -> float:
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


# --- the micro-batcher, on its own ---------------------------------------------------------


def test_concurrent_submissions_share_batches_and_an_oversized_request_waits_its_turn():
    seen: list[int] = []

    def run(texts):
        seen.append(len(texts))
        return [t.upper() for t in texts]

    async def scenario():
        batcher = MicroBatcher(run, max_batch=4, max_wait_s=0.05)
        await batcher.start()
        answers = await asyncio.gather(
            *(batcher.submit([f"t{i}"]) for i in range(5)), batcher.submit(["a", "b", "c"])
        )
        await batcher.stop()
        return answers

    answers = asyncio.run(scenario())
    assert answers[:5] == [[f"T{i}"] for i in range(5)] and answers[5] == ["A", "B", "C"]
    assert max(seen) <= 4 and sum(seen) == 8 and seen[0] == 4  # 4, then 1 + 3 (or 1, 3)


def test_a_failing_model_fails_every_request_of_its_batch_and_the_batcher_goes_on():
    calls = iter([RuntimeError("boom"), None])

    def run(texts):
        if (error := next(calls)) is not None:
            raise error
        return texts

    async def scenario():
        batcher = MicroBatcher(run, max_batch=8, max_wait_s=0.02)
        await batcher.start()
        failed = await asyncio.gather(
            batcher.submit(["a"]), batcher.submit(["b"]), return_exceptions=True
        )
        after = await batcher.submit(["c"])
        await batcher.stop()
        return failed, after

    failed, after = asyncio.run(scenario())
    assert all(isinstance(f, RuntimeError) for f in failed) and after == ["c"]


def test_the_batch_size_is_the_one_measured_cheapest_per_text_and_one_when_batching_costs():
    from edgetune.deploy.batch_choice import choose_max_batch

    def overhead_then_linear(texts):  # 4 ms per run + 0.2 ms per text: batches pay
        time.sleep(0.004 + 0.0002 * len(texts))

    def padded(texts):  # no per-run cost, 1.3x per text in a batch: batches lose
        time.sleep(0.0005 * len(texts) * (1.3 if len(texts) > 1 else 1.0))

    texts = ["a", "bb", "ccc"]
    paying = choose_max_batch(overhead_then_linear, texts, limit=8, rounds=2, seconds_per_size=0.01)
    assert paying.max_batch == 8 and set(paying.ms_per_text) == {1, 2, 4, 8}
    costly = choose_max_batch(padded, texts, limit=8, rounds=2, seconds_per_size=0.01)
    assert costly.max_batch == 1 and "batch up to 1" in costly.describe()


# --- the app in process: every bad request is a 4xx JSON error, and serving goes on ----------

BAD_REQUESTS = [
    (b"{not json", 400, "not valid JSON"),
    (b'"one text"', 422, "send a JSON list of texts; got str"),
    (b"[]", 422, "the list of texts is empty"),
    (b'[1, "a"]', 422, "text 0 is a int, not a string"),
    (b'{"inputs": ["a"]}', 422, "got an object with keys ['inputs']"),
    (json.dumps(["a"] * 5).encode(), 413, "5 texts is over the limit of 4"),
    (json.dumps(["x" * 101]).encode(), 413, "text 0 has 101 characters; the limit is 100"),
    (json.dumps(["y" * 50] * 3).encode() + b" " * 2000, 413, "over the limit of 1024"),
]


@pytest.fixture(scope="module")
def client(tuned_run):
    from fastapi.testclient import TestClient

    from edgetune.config import ServeConfig
    from edgetune.jobs.serve import app_settings, server_stack

    out, _ = tuned_run
    settings = app_settings(
        ServeConfig(
            bundle=str(out / "best"),
            max_texts=4,
            max_text_chars=100,
            max_body_bytes=1024,
            max_wait_ms=1,
        )
    )
    with TestClient(server_stack().create_app(**settings)) as test_client:
        yield test_client


@pytest.mark.parametrize(("body", "status", "message"), BAD_REQUESTS)
def test_a_bad_request_gets_a_4xx_json_error_and_the_server_keeps_serving(
    client, body, status, message
):
    response = client.post(
        "/v1/predict", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status and message in response.json()["error"], response.text
    good = client.post("/v1/predict", json={"texts": ["good great film"]})
    assert good.status_code == 200 and good.json()["predictions"][0]["label"] == "positive"


def test_wrong_paths_and_methods_answer_in_the_same_error_shape(client):
    assert (
        client.get("/v1/predict").json()["error"].startswith("GET /v1/predict: Method Not Allowed")
    )
    assert client.get("/nothing").status_code == 404
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["labels"] == ["negative", "positive"]
    assert health["bundle"] == "best" and "/" not in json.dumps(health)  # no filesystem path
    text = client.get("/metrics").text
    assert metric(text, "edgetune_request_errors_total") >= 1
    assert "edgetune_request_latency_seconds_bucket" in text


# --- the real server in its own process ---------------------------------------------------------


@pytest.fixture(scope="module")
def server(tuned_run):
    from edgetune.jobs.loadtest import local_server

    out, _ = tuned_run
    with local_server(str(out / "best"), ["--max-wait-ms", "300", "--max-batch", "16"]) as url:
        yield url


def test_concurrent_requests_are_batched_together(server):
    results: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(post(server + "/v1/predict", b'["good great film"]')[0])
        )
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8
    text = urllib.request.urlopen(server + "/metrics").read().decode()
    batches = metric(text, "edgetune_batch_size_count")
    assert metric(text, "edgetune_batch_size_sum") == 8 and batches < 8, text  # some batch held > 1


def test_loadtest_against_a_running_server_reports_a_capacity_within_its_bound(server, tmp_path):
    started = time.monotonic()
    result = CliRunner().invoke(
        cli,
        [
            "loadtest",
            server,
            "--budget-ms",
            "2000",
            "--rates",
            "4,8",
            "--step-seconds",
            "1",
            "--concurrency",
            "2",
            "--max-seconds",
            "30",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 40
    report = json.loads((tmp_path / "loadtest.json").read_text())
    assert report["capacity_rps"] == 8 and (tmp_path / "loadtest.png").stat().st_size > 0
    assert [s["kind"] for s in report["steps"]] == ["warm-up", "closed", "closed", "open", "open"]
    assert "capacity at budget: 8 requests/s" in result.output


def test_loadtest_sends_traffic_to_loopback_only(tmp_path):
    result = CliRunner().invoke(cli, ["loadtest", "http://example.com:8000", "--budget-ms", "10"])
    assert result.exit_code == 2 and "loopback addresses only" in result.output


def test_shutdown_finishes_the_requests_in_flight(tuned_run):
    out, _ = tuned_run
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgetune",
            "serve",
            str(out / "best"),
            "--port",
            "0",
            "--max-wait-ms",
            "1500",
            "--max-batch",
            "64",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().split()[4]
        answer: list = []
        sender = threading.Thread(
            target=lambda: answer.append(post(url + "/v1/predict", b'["fine"]'))
        )
        sender.start()
        time.sleep(0.5)  # the request now waits in the batcher for 1 s more
        process.send_signal(signal.SIGTERM)
        sender.join(30)
        assert answer and answer[0][0] == 200, answer
        assert process.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it caught
    finally:
        process.kill()


# --- the bundle is an Optimum model too --------------------------------------------------------


def test_optimum_and_a_transformers_pipeline_load_a_bundle(tuned_run):
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline

    from edgetune.deploy.runtime import Predictor

    out, _ = tuned_run
    bundle = out / "best"
    model = ORTModelForSequenceClassification.from_pretrained(bundle)
    classify = pipeline(
        "text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(bundle)
    )
    texts = ["good great film", "awful bad plot", "a film"]
    ours = [p["label"] for p in Predictor(bundle).predict(texts)]
    assert [p["label"] for p in classify(texts)] == ours


def test_serving_without_its_packages_says_what_to_install(tuned_run, monkeypatch):
    out, _ = tuned_run
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi -> ImportError
    import edgetune.deploy

    monkeypatch.delitem(sys.modules, "edgetune.deploy.server", raising=False)
    monkeypatch.delattr(
        edgetune.deploy, "server", raising=False
    )  # else `from edgetune.deploy import server` finds it
    result = CliRunner().invoke(cli, ["serve", str(out / "best"), "--port", "0"])
    assert result.exit_code == 2 and "needs fastapi" in result.output, result.output
    assert "pip install edgetune" in result.output, result.output


def test_tune_with_loadtest_puts_the_capacity_in_the_report_and_the_manifest(
    tiny_model_dir, tiny_data_csv, tiny_profile, tmp_path
):
    from conftest import TINY_TRAIN

    profile = tmp_path / "quick-loadtest.toml"  # steps of 0.5 s, not the default 4
    profile.write_text(tiny_profile.read_text() + "loadtest_step_seconds = 0.5\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        [
            str(a)
            for a in (
                "tune",
                "--no-tune-session",  # timed in test_session_tuning
                "--model",
                tiny_model_dir,
                "--data",
                tiny_data_csv,
                "--profile",
                profile,
                "--out",
                out,
                "--modes",
                "dynamic-int8",
                "--loadtest",
                *TINY_TRAIN,
                *("--epochs", "2"),  # the load test is what is checked, not the accuracy
            )
        ],
    )
    assert result.exit_code == 0, result.output
    serving = json.loads((out / "best" / "edgetune.json").read_text())["serving"]
    assert serving["saturated_rps"] > 0 and (out / "loadtest" / "loadtest.png").is_file()
    details = json.loads((out / "loadtest" / "loadtest.json").read_text())
    assert details["single_stream"]["seconds"] < 3  # the profile's step length was used
    report = (out / "report.md").read_text()
    assert "## Served" in report and "Capacity at budget of the chosen bundle" in report
    assert "loadtest" in json.loads((out / "report.json").read_text())["run"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-folder"], "neither a bundle folder nor an http:// URL"),
        (["http://127.0.0.1:9"], "loadtest of a URL needs --budget-ms or --profile"),
        (["http://127.0.0.1:9", "--budget-ms", "10", "--rates", "5,fast"], "give rates as numbers"),
    ],
)
def test_loadtest_bad_input_is_one_line(args, message):
    result = CliRunner().invoke(cli, ["loadtest", *args])
    assert result.exit_code == 2 and message in result.output, result.output


def test_serve_on_a_port_in_use_says_so(tuned_run):
    import socket

    out, _ = tuned_run
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            cli, ["serve", str(out / "best"), "--port", str(port), "--max-batch", "1"]
        )
    assert result.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in result.output, (
        result.output
    )
