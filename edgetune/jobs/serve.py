"""`edgetune serve`: a bundle behind HTTP on uvicorn, torch-free.

The socket is bound and listening before the app starts, so with `--port 0` the real port is
known and printed in the ready line (`edgetune serve: ready on http://HOST:PORT`) once the
model is loaded; connections that arrive earlier wait in the backlog instead of being refused.
SIGTERM/SIGINT stop taking connections and finish the requests in flight (uvicorn's graceful
shutdown, up to `graceful_seconds`) before the batcher stops.

Load is shed at each layer (defaults in `ServeConfig`; `deploy/connections.py`): a connection
past `max_connections` open ones is answered 503 and closed; a connection must send its request
headers within `read_timeout_s` and may idle `keep_alive_s` between requests;
the app bounds the batcher's queue (503 + Retry-After), the body's arrival (408) and each
request's time to answer (504).
"""

from __future__ import annotations

import socket

from edgetune.config import ServeConfig
from edgetune.deploy import READY_LINE as READY
from edgetune.deploy.batch_choice import choose_max_batch, sample_texts
from edgetune.deploy.bundle import load_bundle
from edgetune.errors import InputError
from edgetune.measure.session import session_in_use
from edgetune.modality import for_bundle


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and without it
    # a keep-alive client waits ~40 ms per request on delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(
            f"cannot listen on {host}:{port} ({exc.strerror}); "
            "choose another --port (0: any free one) or --host"
        ) from None
    sock.listen(2048)
    return sock


def server_stack():
    """deploy.server, or a one-line error when its packages (in the base install) are missing."""
    try:
        import aiohttp  # noqa: F401 - loadtest's client
        import uvicorn  # noqa: F401

        from edgetune.deploy import server
    except ImportError as exc:
        raise InputError(
            f"serving needs {exc.name}, which `pip install edgetune` installs: reinstall it"
        ) from None
    return server


# What a served predictor takes: the body's parser (None: texts) and the batch function.
SERVED = {
    "texts": lambda p: (None, p.predict),
    "audio": lambda p: (server_stack().body.parse_audio, p.predict_clips),
}


def sample_inputs(predictor, bundle) -> list:
    """What the batch sizes are timed on: the bundle's sample texts, or clips of noise."""
    if predictor.takes == "audio":
        import numpy as np

        rng = np.random.default_rng(0)
        noise = rng.normal(0, 0.1, bundle.max_length).astype(np.float32)
        return [(noise, predictor.processor.sampling_rate)] * 8
    return sample_texts(bundle.path)


def app_settings(config: ServeConfig) -> dict:
    """`create_app`'s arguments for a bundle: its predictor, batching and limits."""
    bundle = load_bundle(config.bundle)
    profile = bundle.manifest.profile
    predictor = for_bundle(bundle).predictor(bundle, config.threads)  # its session settings
    if predictor.takes not in SERVED:
        raise InputError(
            f"{bundle.path}: a {bundle.manifest.task} bundle; serve takes text and audio "
            "bundles (predict it with edgetune predict)"
        )
    parse, run = SERVED[predictor.takes](predictor)
    max_batch = config.max_batch or profile.serve_max_batch
    batching = "set by " + ("--max-batch" if config.max_batch else "the profile")
    if max_batch is None:
        choice = choose_max_batch(run, sample_inputs(predictor, bundle), limit=config.max_texts)
        max_batch, batching = choice.max_batch, choice.describe()
    max_wait_ms = profile.serve_max_wait_ms if config.max_wait_ms is None else config.max_wait_ms
    info = {
        "bundle": bundle.path.name,
        "labels": predictor.labels,
        "candidate": bundle.manifest.candidate,
        "profile": profile.name,
        "max_batch": max_batch,
        "batching": batching,
        "max_wait_ms": max_wait_ms,
        "task": bundle.manifest.task,
        "session": {
            **session_in_use(predictor.session),
            "tuned": bundle.manifest.session is not None and config.threads is None,
        },
    }
    limits = server_stack().Limits(
        config.max_texts,
        config.max_text_chars,
        config.max_body_bytes,
        config.max_queue,
        config.request_timeout_s,
        config.read_timeout_s,
    )
    return {
        "predict": run,
        "info": info,
        "max_batch": max_batch,
        "max_wait_s": max_wait_ms / 1000,
        "limits": limits,
        "pairs": predictor.pairs,
        "parse": parse,
    }


def uvicorn_server(app, config: ServeConfig):
    """uvicorn for `app` with the connection limits of `config`, counted in the app's metrics."""
    import uvicorn

    from edgetune.deploy.connections import limited_protocol

    metrics = app.state.metrics
    protocol = limited_protocol(
        config.max_connections,
        config.read_timeout_s,
        on_refusal=metrics.rejected.labels(reason="connections").inc,
        on_timeout=metrics.timeouts.labels(phase="headers").inc,
    )
    return uvicorn.Server(
        uvicorn.Config(
            app,
            http=protocol,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_keep_alive=config.keep_alive_s,
            timeout_graceful_shutdown=config.graceful_seconds,
        )
    )


def serve(config: ServeConfig) -> None:
    """Serve until SIGTERM/SIGINT."""
    stack = server_stack()  # before loading anything: a missing package is a one-line error
    app_args = app_settings(config)
    info = app_args["info"]
    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"

    def ready() -> None:
        print(
            f"{READY} {url} (batch up to {info['max_batch']}, wait {info['max_wait_ms']} ms; "
            f"profile {info['profile']})",
            flush=True,
        )
        print(f"edgetune serve: {info['batching']}", flush=True)
        print(
            f"edgetune serve: limits: {config.max_connections} connections, {config.max_queue} "
            f"texts queued, {config.request_timeout_s:g} s per request, "
            f"{config.read_timeout_s:g} s to send one",
            flush=True,
        )

    server = uvicorn_server(stack.create_app(**app_args, on_ready=ready), config)
    try:
        server.run(sockets=[sock])  # after a graceful stop uvicorn re-raises the signal it caught
    finally:
        sock.close()
