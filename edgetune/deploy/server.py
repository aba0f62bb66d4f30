"""The HTTP server for a bundle: FastAPI on uvicorn, micro-batched, with Prometheus metrics.

`POST /v1/predict` takes a JSON list of texts (or `{"texts": [...]}`; for a sentence-pair
model each item is `["first", "second"]`) and answers
`{"predictions": [{"label", "scores"}, ...]}`; `GET /healthz`; `GET /metrics` (Prometheus text).
Every bad request is a 4xx with `{"error": "..."}` saying what was wrong; the body is parsed
here, not by a schema, so a malformed body, a wrong type, an empty list, too many or too long
texts and an oversized body each get their own message. torch-free, like the runtime.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgetune.deploy.batcher import MicroBatcher

LATENCY_BUCKETS = (.001, .0025, .005, .0075, .01, .015, .02, .03, .05, .075, .1, .15, .25, .5, 1, 2.5, 5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class Limits:
    max_texts: int = 64
    max_text_chars: int = 10_000
    max_body_bytes: int = 1 << 20


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Metrics:
    """The server's counters on their own registry (two apps in one process do not mix)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("edgetune_requests", "Prediction requests by HTTP status",
                                ["status"], registry=self.registry)
        self.errors = Counter("edgetune_request_errors", "Prediction requests that failed (4xx/5xx)",
                              registry=self.registry)
        self.texts = Counter("edgetune_texts", "Texts classified", registry=self.registry)
        self.latency = Histogram("edgetune_request_latency_seconds", "Request latency in the server",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("edgetune_batch_size", "Texts per ONNX Runtime run",
                                    buckets=BATCH_BUCKETS, registry=self.registry)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"request body of {declared} bytes is over the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest(413, f"request body is over the limit of {limit} bytes")
    return bytes(body)


def _texts_of(item: object, index: int, pairs: bool) -> list[str]:
    """The string(s) of one item: a text, or for a sentence-pair model [first, second]."""
    if not pairs:
        if not isinstance(item, str):
            raise BadRequest(422, f"text {index} is a {type(item).__name__}, not a string")
        return [item]
    if not (isinstance(item, list) and len(item) == 2 and all(isinstance(t, str) for t in item)):
        raise BadRequest(422, f"item {index} is not a pair: this model classifies sentence pairs; "
                              'send ["first text", "second text"] for each')
    return item


def parse_texts(body: bytes, limits: Limits, pairs: bool = False) -> list:
    """The texts (or pairs) of a request body, or a BadRequest that says what is wrong with it."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"the body is not valid JSON ({exc}); send a JSON list of texts") from None
    if isinstance(data, dict):
        if set(data) != {"texts"}:
            raise BadRequest(422, 'send a JSON list of texts or {"texts": [...]}; '
                                  f"got an object with keys {sorted(data)}")
        data = data["texts"]
    if not isinstance(data, list):
        raise BadRequest(422, f"send a JSON list of texts; got {type(data).__name__}")
    if not data:
        raise BadRequest(422, "the list of texts is empty")
    if len(data) > limits.max_texts:
        raise BadRequest(413, f"{len(data)} texts is over the limit of {limits.max_texts} per request")
    for index, item in enumerate(data):
        for text in _texts_of(item, index, pairs):
            if len(text) > limits.max_text_chars:
                raise BadRequest(413, f"text {index} has {len(text)} characters; the limit is "
                                      f"{limits.max_text_chars}")
    return data


def create_app(predict: Callable[[list], list[dict]], info: dict, max_batch: int,
               max_wait_s: float, limits: Limits | None = None,
               on_ready: Callable[[], None] = lambda: None, pairs: bool = False) -> FastAPI:
    """An app around `predict` (a batch of texts, or of [first, second] pairs with `pairs`,
    -> one result per item)."""
    limits = limits or Limits()
    metrics = Metrics()
    batcher = MicroBatcher(predict, max_batch, max_wait_s, on_batch=metrics.batch_size.observe)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        on_ready()
        yield
        await batcher.stop()

    app = FastAPI(title="edgetune", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.metrics = metrics

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Unknown paths and wrong methods answer in the same shape as every other error."""
        return JSONResponse({"error": f"{request.method} {request.url.path}: {exc.detail}"},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    def answer(status: int, content: dict, started: float) -> JSONResponse:
        metrics.requests.labels(status=str(status)).inc()
        if status >= 400:
            metrics.errors.inc()
        metrics.latency.observe(time.perf_counter() - started)
        return JSONResponse(content, status_code=status)

    @app.post("/v1/predict")
    async def predict_route(request: Request) -> JSONResponse:
        started = time.perf_counter()
        try:
            texts = parse_texts(await _read_body(request, limits.max_body_bytes), limits, pairs)
        except BadRequest as exc:
            return answer(exc.status, {"error": str(exc)}, started)
        try:
            predictions = await batcher.submit(texts)
        except Exception as exc:  # noqa: BLE001 - the model failed; the server keeps serving
            return answer(500, {"error": f"prediction failed: {type(exc).__name__}: {exc}"}, started)
        metrics.texts.inc(len(texts))
        return answer(200, {"predictions": predictions}, started)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", **info}

    @app.get("/metrics")
    async def metrics_route() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
