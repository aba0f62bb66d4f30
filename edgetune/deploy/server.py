"""The HTTP server for a bundle: FastAPI on uvicorn, micro-batched, with Prometheus metrics.

`POST /v1/predict` takes a JSON list of texts (or `{"texts": [...]}`; for a sentence-pair
model each item is `["first", "second"]`) and answers
`{"predictions": [{"label", "scores"}, ...]}`; `GET /healthz`; `GET /metrics` (Prometheus text).
Every bad request is a 4xx with `{"error": "..."}` saying what was wrong (`deploy/body.py`).
torch-free, like the runtime.

Under overload the server sheds work instead of growing: a full batcher queue answers 503 with
`Retry-After`, a body that does not arrive within `read_timeout_s` 408, a request not answered
within `request_timeout_s` of its arrival 504, and a client that leaves has its texts dropped
before the model runs them; each is counted in /metrics. A 500 never carries the exception's
text (it may hold paths or data): the body names a request id, the log has the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgetune.deploy import body  # noqa: F401 - `jobs/serve.py` reads parsers through it
from edgetune.deploy.batcher import MicroBatcher, QueueFull
from edgetune.deploy.body import BadRequest, Limits, parse_texts, read_body

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1,
    2.5,
    5,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
RETRY_AFTER_S = 1
log = logging.getLogger("edgetune.serve")


class Metrics:
    """The server's counters on their own registry (two apps in one process do not mix)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "edgetune_requests",
            "Prediction requests by HTTP status",
            ["status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "edgetune_request_errors",
            "Prediction requests that failed (4xx/5xx)",
            registry=self.registry,
        )
        self.texts = Counter("edgetune_texts", "Texts classified", registry=self.registry)
        self.latency = Histogram(
            "edgetune_request_latency_seconds",
            "Request latency in the server",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "edgetune_batch_size",
            "Texts per ONNX Runtime run",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.rejected = Counter(
            "edgetune_rejected",
            "Requests refused with 503 by reason "
            "(queue_full: the batcher's queue; connections: the connection cap)",
            ["reason"],
            registry=self.registry,
        )
        self.timeouts = Counter(
            "edgetune_timeouts",
            "Requests timed out by phase (headers, body: 408 or closed; deadline: 504)",
            ["phase"],
            registry=self.registry,
        )
        self.cancelled = Counter(
            "edgetune_cancelled",
            "Requests dropped from a batch before the model ran, by reason (client_left, deadline)",
            ["reason"],
            registry=self.registry,
        )
        self.queued = Gauge(
            "edgetune_queued_texts", "Texts waiting for the model", registry=self.registry
        )


class ClientLeft(Exception):
    """The client closed its connection before its answer was ready."""


async def _unless_client_leaves(request: Request, work) -> list:
    """`work`'s result, or ClientLeft as soon as the client disconnects (the work is cancelled,
    so the batcher drops its texts)."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        task.cancel()  # a no-op once done
    if not task.done() or task.cancelled():
        raise ClientLeft
    return task.result()


def create_app(
    predict: Callable[[list], list[dict]],
    info: dict,
    max_batch: int,
    max_wait_s: float,
    limits: Limits | None = None,
    on_ready: Callable[[], None] = lambda: None,
    pairs: bool = False,
    parse: Callable[[bytes, Limits], list] | None = None,
) -> FastAPI:
    """An app around `predict` (a batch of texts, or of [first, second] pairs with `pairs`,
    or of what `parse` reads from a body, e.g. audio clips -> one result per item)."""
    limits = limits or Limits()
    metrics = Metrics()
    batcher = MicroBatcher(
        predict,
        max_batch,
        max_wait_s,
        on_batch=metrics.batch_size.observe,
        max_queue=limits.max_queue,
        on_drop=lambda reason: metrics.cancelled.labels(reason=reason).inc(),
    )
    metrics.queued.set_function(lambda: batcher.queued_texts)

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
        return JSONResponse(
            {"error": f"{request.method} {request.url.path}: {exc.detail}"},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    def answer(
        status: int, content: dict, started: float, headers: dict | None = None
    ) -> JSONResponse:
        metrics.requests.labels(status=str(status)).inc()
        if status >= 400:
            metrics.errors.inc()
        metrics.latency.observe(time.perf_counter() - started)
        return JSONResponse(content, status_code=status, headers=headers)

    async def predictions(request: Request, deadline: float) -> list:
        raw = await read_body(request, limits)
        texts = parse(raw, limits) if parse else parse_texts(raw, limits, pairs)
        found = await _unless_client_leaves(request, batcher.submit(texts, deadline))
        metrics.texts.inc(len(texts))
        return found

    @app.post("/v1/predict")
    async def predict_route(request: Request) -> JSONResponse:
        started = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + limits.request_timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                return answer(200, {"predictions": await predictions(request, deadline)}, started)
        except BadRequest as exc:
            if exc.status != 408:
                return answer(exc.status, {"error": str(exc)}, started)
            metrics.timeouts.labels(phase="body").inc()  # the rest of the body is not awaited
            return answer(408, {"error": str(exc)}, started, {"Connection": "close"})
        except QueueFull as exc:
            metrics.rejected.labels(reason="queue_full").inc()
            return answer(
                503,
                {"error": f"overloaded: {exc}; retry after {RETRY_AFTER_S} s"},
                started,
                {"Retry-After": str(RETRY_AFTER_S)},
            )
        except TimeoutError:
            metrics.timeouts.labels(phase="deadline").inc()
            return answer(
                504,
                {
                    "error": f"no answer within {limits.request_timeout_s:g} s; "
                    "the server is overloaded"
                },
                started,
            )
        except ClientLeft:
            return answer(499, {"error": "the client closed the connection"}, started)
        except Exception:  # the model (or a bug) failed: the server keeps serving
            request_id = uuid.uuid4().hex[:12]
            log.exception("request %s: prediction failed", request_id)
            return answer(
                500,
                {
                    "error": f"prediction failed (request {request_id}; the "
                    "server's log has the cause)"
                },
                started,
            )

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", **info}

    @app.get("/metrics")
    async def metrics_route() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
