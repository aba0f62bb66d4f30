"""`edgetune agent` and `bench --target`: latency measured by an agent in another process,
carrying the agent's fingerprint; its bad inputs get one line each and it keeps serving."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import onnx
import onnxruntime
import pytest
from click.testing import CliRunner

from edgetune.cli import cli
from edgetune.config import AgentConfig
from edgetune.deploy.agent import AgentState, make_server
from edgetune.errors import InputError
from edgetune.hardware import fingerprint

SHIPPED = Path(onnxruntime.__file__).parent / "datasets" / "logreg_iris.onnx"
FAST = ["--rounds", "2", "--min-runs", "4", "--min-seconds", "0.1"]
TOKEN = "s3cret-token"


def run(*args, env: dict | None = None):
    return CliRunner(env=env).invoke(cli, [str(a) for a in args])


def start_agent(store: Path, *extra: str, pin_core: bool = False) -> tuple[subprocess.Popen, str]:
    """An agent in its own process (optionally pinned to core 0); its URL from the ready line."""
    command = [
        sys.executable,
        "-m",
        "edgetune",
        "agent",
        "--port",
        "0",
        "--store",
        str(store),
        *extra,
    ]
    if pin_core:
        command = ["taskset", "-c", "0", *command]
    env = {**os.environ, "EDGETUNE_AGENT_TOKEN": TOKEN}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    seen = []
    for line in proc.stdout:  # until the ready line (or the agent's end: then say why)
        seen.append(line)
        if "edgetune agent: ready on" in line:
            return proc, line.split("ready on ")[1].split()[0]
    proc.wait()
    raise AssertionError("the agent did not start: " + "".join(seen))


@pytest.fixture
def agent_url(tmp_path):
    proc, url = start_agent(tmp_path / "store")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def bench_here_and_on_agent(store: Path, *args: object) -> tuple[dict, dict]:
    """`bench ARGS --json` on an agent's latency, twice: accuracy here, then on the agent
    (`--accuracy-on target`); both JSON results."""
    proc, url = start_agent(store)
    try:
        runner = CliRunner(env={"EDGETUNE_AGENT_TOKEN": TOKEN})
        command = ["bench", *(str(a) for a in args), "--json", *FAST, "--target", url]
        host = runner.invoke(cli, command)
        target = runner.invoke(cli, [*command, "--accuracy-on", "target"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert host.exit_code == 0 and target.exit_code == 0, host.output + target.output
    return json.loads(host.output), json.loads(target.output)


def call(url: str, method: str, path: str, body: bytes | None = None, token: str | None = TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url + path, body, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}"), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), exc.headers


def test_bench_on_a_target_measures_there_and_says_where(agent_url):
    env = {"EDGETUNE_AGENT_TOKEN": TOKEN}
    result = run("bench", SHIPPED, "--target", agent_url, "--json", *FAST, env=env)
    assert result.exit_code == 0, result.output
    latency = json.loads(result.output)["latency"]
    assert latency["p50_ms"] > 0 and latency["rounds"] == 2
    assert latency["machine"]["id"] == fingerprint()["id"]  # the agent runs on this machine
    again = run("bench", SHIPPED, "--target", agent_url, *FAST, env=env)  # uploads are kept
    assert again.exit_code == 0 and "measured on" in again.output, again.output


@pytest.mark.skipif(
    shutil.which("taskset") is None or len(os.sched_getaffinity(0)) < 2,
    reason="needs taskset and two cores",
)
def test_an_agent_pinned_to_one_core_reports_its_own_fingerprint(tmp_path, tuned_run, tiny_profile):
    out, _ = tuned_run
    proc, url = start_agent(tmp_path / "store", pin_core=True)
    try:
        result = run(
            "bench",
            out / "candidates" / "fp32",
            "--target",
            url,
            "--json",
            *FAST,
            "--profile",
            tiny_profile,
            env={"EDGETUNE_AGENT_TOKEN": TOKEN},
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert result.exit_code == 0, result.output
    machine = json.loads(result.output)["latency"]["machine"]
    assert machine["cores"] == 1 and machine["id"] != fingerprint()["id"]


def test_no_or_wrong_token_is_refused_in_one_line(agent_url):
    for env in ({"EDGETUNE_AGENT_TOKEN": ""}, {"EDGETUNE_AGENT_TOKEN": "wrong"}):
        result = run("bench", SHIPPED, "--target", agent_url, *FAST, env=env)
        assert result.exit_code == 2 and "missing or wrong token" in result.output
        assert "Traceback" not in result.output
    assert call(agent_url, "GET", "/healthz", token=None)[0] == 401
    assert call(agent_url, "GET", "/healthz")[0] == 200  # still serving


def test_uploads_that_are_not_plain_onnx_or_too_big_are_refused(tmp_path):
    proc, url = start_agent(tmp_path / "store", "--max-upload-mb", "0.0001")  # 100 bytes
    try:
        big = SHIPPED.read_bytes()
        status, body, _ = call(url, "PUT", f"/models/{hashlib.sha256(big).hexdigest()}", big)
        assert status == 413 and "over the limit" in body["error"]
        result = run("bench", SHIPPED, "--target", url, *FAST, env={"EDGETUNE_AGENT_TOKEN": TOKEN})
        assert result.exit_code == 2 and "--max-upload-mb" in result.output
        junk = b"not an onnx file"
        status, body, _ = call(url, "PUT", f"/models/{hashlib.sha256(junk).hexdigest()}", junk)
        assert status == 400 and "not an ONNX model" in body["error"]
        status, body, _ = call(url, "PUT", f"/feeds/{'0' * 64}", junk)
        assert status == 400 and "sha256" in body["error"]
        status, body, _ = call(url, "POST", "/measure", b'{"systems": [')
        assert status == 400 and "bad measure request" in body["error"]
        status, body, _ = call(
            url,
            "POST",
            "/measure",
            b'{"systems": [{"name": "../x", "model": "zz", "feeds": "zz"}], "profile": {}}',
        )
        assert status == 400
        assert call(url, "GET", "/healthz")[0] == 200  # it keeps serving
        assert not list((tmp_path / "store").glob("*/.upload-*"))  # nothing half-kept
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_custom_op_domain_is_refused(tmp_path):
    model = onnx.load(str(SHIPPED))
    model.graph.node[0].domain = "my.custom.ops"
    model.opset_import.add(domain="my.custom.ops", version=1)
    data = model.SerializeToString()
    state = AgentState(tmp_path, TOKEN, 100.0, busy_wait_s=0)
    server = make_server("127.0.0.1", 0, state)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        status, body, _ = call(url, "PUT", f"/models/{hashlib.sha256(data).hexdigest()}", data)
        assert status == 400 and "my.custom.ops" in body["error"]
    finally:
        server.shutdown()
        server.server_close()


def test_a_second_caller_gets_busy_with_a_retry_hint(tmp_path):
    state = AgentState(tmp_path, TOKEN, 100.0, busy_wait_s=0)
    server = make_server("127.0.0.1", 0, state)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    data = SHIPPED.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        assert call(url, "PUT", f"/models/{digest}", data)[0] == 201
        feeds = tmp_path / "f.npz"
        import numpy as np

        np.savez(feeds, **{"fixed/0/float_input": np.ones((3, 2), np.float32)})
        feed_digest = hashlib.sha256(feeds.read_bytes()).hexdigest()
        assert call(url, "PUT", f"/feeds/{feed_digest}", feeds.read_bytes())[0] == 201
        request = json.dumps(
            {
                "systems": [{"name": "m", "model": digest, "feeds": feed_digest}],
                "profile": {"name": "p", "latency_budget_ms": 10},
                "settings": {"rounds": 2, "min_runs": 2, "min_seconds": 0},
            }
        ).encode()
        with state.slot:  # another caller's measurement in progress
            status, body, headers = call(url, "POST", "/measure", request)
        assert status == 503 and "busy" in body["error"] and headers["Retry-After"]
        status, body, _ = call(url, "POST", "/measure", request)  # free again
        assert status == 200 and len(body["results"]["m"]["rounds"]) == 2
        assert body["fingerprint"]["cores"] >= 1
    finally:
        server.shutdown()
        server.server_close()


def test_an_agent_beyond_loopback_needs_a_token(monkeypatch, tmp_path):
    import edgetune

    monkeypatch.delenv("EDGETUNE_AGENT_TOKEN", raising=False)
    with pytest.raises(InputError, match="beyond loopback: give a token"):
        edgetune.agent(AgentConfig(host="0.0.0.0", port=0, store=str(tmp_path)))


def test_a_target_that_does_not_answer_is_one_line():
    result = run("bench", SHIPPED, "--target", "http://127.0.0.1:9", *FAST)
    assert result.exit_code == 2 and "did not answer" in result.output


def test_tune_on_a_target_gives_the_local_candidates_and_verdicts(
    tmp_path, tuned_run, tiny_model_dir, tiny_data_csv, tiny_profile, monkeypatch
):
    from conftest import TINY_TRAIN, tune_tiny

    local_out, _ = tuned_run
    proc, url = start_agent(tmp_path / "store", pin_core=shutil.which("taskset") is not None)
    monkeypatch.setenv("EDGETUNE_AGENT_TOKEN", TOKEN)
    try:
        out = tmp_path / "run"
        result = tune_tiny(
            out, tiny_model_dir, tiny_data_csv, tiny_profile, *TINY_TRAIN, "--target", url
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert result.exit_code == 0, result.output

    def verdicts(run_dir: Path) -> dict:
        report = json.loads((run_dir / "report.json").read_text())
        return {c["name"]: c["latency"]["verdict"] for c in report["candidates"]}, report

    (remote, report), (local, _) = verdicts(out), verdicts(local_out)
    assert remote == local and set(remote.values()) == {"met"}
    machines = {c["latency"]["machine"]["id"] for c in report["candidates"]}
    assert len(machines) == 1  # every latency from the one agent
    if shutil.which("taskset"):
        assert report["candidates"][0]["latency"]["machine"]["cores"] == 1
    assert TOKEN not in (out / "recipe.toml").read_text()


def test_a_target_that_redirects_is_refused_naming_the_redirect():
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(307)
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = run("bench", SHIPPED, "--target", url, *FAST)
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 2 and "answered a redirect (307)" in result.output
    assert "http://127.0.0.1:9/elsewhere" in result.output
