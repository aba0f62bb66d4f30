"""`serve` sheds load (issue 24): a bounded queue (503 + Retry-After), a deadline (504), work
dropped for clients that left, read timers on slow or idle connections, uvicorn's connection
limit counted; bodies that would crash the parser get a 4xx; a 500 hides the exception's text.
And `loadtest` never follows a redirect or a proxy, and keeps every step within --max-seconds.

The app runs on a real uvicorn (in a thread, with the same settings `edgetune serve` uses) around
a stand-in model whose runs the test holds and releases, so every scenario is deterministic.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
import urllib.request
from contextlib import contextmanager
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from edgetune.cli import cli
from edgetune.config import ServeConfig
from edgetune.deploy.server import BadRequest, Limits, create_app, parse_texts
from edgetune.jobs.serve import bind, uvicorn_server


class HeldModel:
    """A model whose runs wait until the test lets them go; it records every text it ran."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.running = threading.Event()
        self.go = threading.Event()

    def __call__(self, texts: list[str]) -> list[dict]:
        self.running.set()
        assert self.go.wait(20)
        self.seen += texts
        return [{"label": t, "scores": {}} for t in texts]


@contextmanager
def serving(model, **settings):
    """The app around `model` on uvicorn on a free loopback port; yields its URL."""
    config = ServeConfig(bundle="unused", **settings)
    limits = Limits(
        max_queue=config.max_queue,
        request_timeout_s=config.request_timeout_s,
        read_timeout_s=config.read_timeout_s,
    )
    app = create_app(model, {}, max_batch=1, max_wait_s=0, limits=limits)
    sock = bind("127.0.0.1", 0)
    server = uvicorn_server(app, config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        model.go.set()  # a failed test may leave a run held
        server.should_exit = True
        thread.join(20)
        sock.close()


def post(url: str, texts: list, timeout: float = 20) -> tuple[int, dict, Message]:
    request = urllib.request.Request(
        url + "/v1/predict",
        data=json.dumps(texts).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read()), reply.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers


def metric(url: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    line = f"{name}{{{wanted}}} " if labels else f"{name} "
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return sum(float(row.split()[-1]) for row in text.splitlines() if row.startswith(line))


def wait_for(condition, seconds: float = 10) -> None:
    stop = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < stop, "the condition never held"
        time.sleep(0.02)


def in_background(function, *args) -> list:
    answers: list = []
    threading.Thread(target=lambda: answers.append(function(*args)), daemon=True).start()
    return answers


def test_a_full_queue_answers_503_with_retry_after_at_once_and_serves_again():
    model = HeldModel()
    with serving(model, max_queue=1) as url:
        first = in_background(post, url, ["a"])
        assert model.running.wait(10)  # "a" is in the model; the queue is empty
        second = in_background(post, url, ["b"])
        wait_for(lambda: metric(url, "edgetune_queued_texts") == 1)
        status, body, headers = post(url, ["c"], timeout=5)
        assert status == 503 and headers["Retry-After"] == "1" and "overloaded" in body["error"]
        model.go.set()
        wait_for(lambda: len(first) == len(second) == 1)
        assert first[0][0] == second[0][0] == 200 and model.seen == ["a", "b"]
        assert post(url, ["d"])[0] == 200
        assert metric(url, "edgetune_rejected_total", reason="queue_full") == 1


def test_past_its_deadline_a_request_gets_504_and_its_texts_never_reach_the_model():
    model = HeldModel()
    with serving(model, request_timeout_s=0.5) as url:
        first = in_background(post, url, ["a"])
        assert model.running.wait(10)
        status, body, _ = post(url, ["b"])  # waits behind "a" until its deadline
        assert status == 504 and "no answer within 0.5 s" in body["error"]
        wait_for(lambda: first)
        model.go.set()
        assert first[0][0] == 504 and post(url, ["c"])[0] == 200
        assert model.seen == ["a", "c"]  # "b" was dropped from its batch
        assert metric(url, "edgetune_timeouts_total", phase="deadline") == 2
        assert metric(url, "edgetune_cancelled_total", reason="deadline") == 1


def test_a_client_that_leaves_has_its_texts_dropped_before_the_model_runs():
    model = HeldModel()
    with serving(model) as url:
        in_background(post, url, ["a"])
        assert model.running.wait(10)
        port = int(url.rsplit(":", 1)[1])
        body = b'["gone"]'
        with socket.create_connection(("127.0.0.1", port)) as leaving:
            leaving.sendall(
                b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: "
                b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            time.sleep(0.2)
        wait_for(lambda: metric(url, "edgetune_requests_total", status="499") == 1)
        model.go.set()
        assert post(url, ["c"])[0] == 200 and model.seen == ["a", "c"]
        assert metric(url, "edgetune_cancelled_total", reason="client_left") == 1


def closed_by_server(sock: socket.socket, trickle: bytes = b"") -> bytes:
    """What the server sent before it closed `sock` (each byte of `trickle` sent 0.2 s apart)."""
    sock.settimeout(0.2)
    received, stop = b"", time.monotonic() + 10
    for byte in trickle:
        try:
            sock.sendall(bytes([byte]))
            if not (chunk := sock.recv(4096)):
                return received
            received += chunk
        except TimeoutError:
            pass
        except (BrokenPipeError, ConnectionResetError):
            return received
    sock.settimeout(max(0.1, stop - time.monotonic()))
    while chunk := sock.recv(4096):
        received += chunk
    return received


def test_idle_and_trickling_connections_are_closed_and_a_slow_body_gets_408():
    with serving(HeldModel(), read_timeout_s=0.5) as url:
        port = int(url.rsplit(":", 1)[1])
        keep_alive = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        keep_alive.request("GET", "/healthz")
        assert keep_alive.getresponse().read()
        with socket.create_connection(("127.0.0.1", port)) as idle:
            assert closed_by_server(idle) == b""
        with socket.create_connection(("127.0.0.1", port)) as trickling:
            assert closed_by_server(trickling, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n") == b""
        with socket.create_connection(("127.0.0.1", port)) as slow_body:
            slow_body.sendall(
                b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n["
            )
            assert closed_by_server(slow_body).startswith(b"HTTP/1.1 408")
        keep_alive.request("GET", "/healthz")  # idle 1 s: past the read timer, within keep-alive
        assert keep_alive.getresponse().status == 200
        assert metric(url, "edgetune_timeouts_total", phase="headers") == 2
        assert metric(url, "edgetune_timeouts_total", phase="body") == 1


def test_past_max_connections_a_new_one_gets_503_and_the_admitted_ones_are_still_served():
    """Not uvicorn's limit_concurrency: it answers 503 to *every* request while the count is at
    the limit, so clients that reconnect after a 503 starve all of them."""
    with serving(HeldModel(), max_connections=2) as url:
        port = int(url.rsplit(":", 1)[1])
        admitted = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        admitted.request("GET", "/healthz")
        assert admitted.getresponse().read()
        with socket.create_connection(("127.0.0.1", port)):  # the second: the cap is full
            time.sleep(0.2)
            with socket.create_connection(("127.0.0.1", port)) as third:
                assert closed_by_server(third).startswith(b"HTTP/1.1 503")
            admitted.request("GET", "/healthz")
            assert admitted.getresponse().status == 200
        admitted.close()
        time.sleep(0.2)
        assert metric(url, "edgetune_rejected_total", reason="connections") == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"[" + b"7" * 5000 + b"]", "a number of 5000 digits"),
    ],
)
def test_bodies_that_would_break_the_parser_get_one_line_400(body, message):
    with pytest.raises(BadRequest) as refused:
        parse_texts(body, Limits())
    assert refused.value.status == 400 and message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_failing_model_answers_500_naming_a_request_id_not_the_exception(caplog):
    from fastapi.testclient import TestClient

    def failing(texts):
        raise RuntimeError("secret detail at /home/someone/model.onnx")

    app = create_app(failing, {}, max_batch=4, max_wait_s=0)
    with TestClient(app) as client, caplog.at_level(logging.ERROR, logger="edgetune.serve"):
        reply = client.post("/v1/predict", json=["a"])
    assert reply.status_code == 500 and "secret" not in reply.text
    request_id = reply.json()["error"].split("request ")[1].split(";")[0]
    assert any(
        request_id in r.getMessage() and "secret" in str(r.exc_info[1]) for r in caplog.records
    )


# --- loadtest stays on the URL it was given ---------------------------------------------------


@contextmanager
def http_server(status: int, headers: dict[str, str] | None = None, body: bytes = b""):
    """A loopback HTTP server answering every request with `status`; yields (port, requests)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            seen.append(f"{self.command} {self.path}")
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def test_loadtest_follows_no_redirect_and_no_proxy(tmp_path, monkeypatch):
    with http_server(200) as (elsewhere, received):
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{elsewhere}")
        monkeypatch.setenv("no_proxy", "")
        location = {"Location": f"http://127.0.0.1:{elsewhere}/v1/predict"}
        with http_server(307, location) as (redirecting, _):
            result = CliRunner().invoke(
                cli,
                [
                    "loadtest",
                    f"http://127.0.0.1:{redirecting}",
                    "--budget-ms",
                    "100",
                    "--step-seconds",
                    "0.5",
                    "--max-seconds",
                    "5",
                    "--out",
                    str(tmp_path),
                ],
            )
    assert result.exit_code == 2 and "answered 307 redirecting to" in result.output, result.output
    assert "\n" not in result.output.split("error: ")[1].strip() and received == []


def test_loadtest_warm_up_and_closed_steps_end_by_max_seconds(tmp_path):
    with http_server(200, body=b'{"predictions": [{"label": "x"}]}') as (port, _):
        result = CliRunner().invoke(
            cli,
            [
                "loadtest",
                f"http://127.0.0.1:{port}",
                "--budget-ms",
                "1000",
                "--step-seconds",
                "3",
                "--max-seconds",
                "1",
                "--out",
                str(tmp_path),
            ],
        )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "loadtest.json").read_text())
    assert sum(step["seconds"] for step in report["steps"]) <= 1.5, report["steps"]
    assert report["stopped"] == "time bound (1 s) reached"


def test_the_overload_benchmark_reports_every_number(tuned_run):
    """benchmarks/overload.py on the tiny bundle, briefly (no timing assertions)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "overload.py"
    spec = importlib.util.spec_from_file_location("overload", path)
    overload = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(overload)
    out, _ = tuned_run
    result = overload.main(
        [
            str(out / "best"),
            "--clients",
            "8",
            "--slow",
            "2",
            "--idle",
            "2",
            "--burst-seconds",
            "2",
            "--server-arg=--read-timeout-s=0.5",
            "--server-arg=--max-batch=8",
        ]
    )
    assert result["concurrency"] == 12 and result["status_counts"]["200"] > 0
    assert result["served_p99_ms"] > 0 and result["recovery_s"] is not None
    assert result["slow_sockets_closed"] >= 2 and result["idle_sockets_closed"] >= 2
    assert result["counters"]['edgetune_timeouts_total{phase="headers"}'] >= 4
    assert all(value > 0 for value in result["rss_mib"].values())
