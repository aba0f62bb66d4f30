"""`edgetune serve` and `edgetune loadtest`: run a bundle behind HTTP, and measure what it holds."""

from __future__ import annotations

import click

from edgetune.cli.options import config_option, split_list
from edgetune.config import LoadtestConfig, ServeConfig


@click.command()
@click.argument("bundle", type=click.Path())
@config_option(ServeConfig, "host", help="Address to listen on.")
@config_option(ServeConfig, "port", help="Port (0: any free one, printed when ready).")
@click.option(
    "--threads",
    type=int,
    default=None,
    help="ONNX Runtime threads (default: the bundle's tuned session settings, else its profile's).",
)
@click.option(
    "--max-batch",
    type=int,
    default=None,
    help=(
        "Texts one run may batch (default: the profile's serve_max_batch, or else measured at "
        "start: the size with the lowest time per text)."
    ),
)
@click.option(
    "--max-wait-ms",
    type=float,
    default=None,
    help="How long a batch waits to fill (default: the profile's serve_max_wait_ms).",
)
@config_option(ServeConfig, "max_texts", help="Texts per request.")
@config_option(ServeConfig, "max_text_chars", help="Characters per text.")
@config_option(ServeConfig, "max_body_bytes", help="Request body size.")
@config_option(
    ServeConfig, "max_queue", help="Texts waiting for the model; more: 503 with Retry-After."
)
@config_option(
    ServeConfig,
    "request_timeout_s",
    help="Seconds from a request's arrival to its answer; later: 504.",
)
@config_option(
    ServeConfig,
    "read_timeout_s",
    help="Seconds a client has to send its request headers (else the "
    "connection is closed), then its body (else 408).",
)
@config_option(
    ServeConfig,
    "max_connections",
    help="Open connections; a new one past it is answered 503 and closed.",
)
@config_option(
    ServeConfig, "keep_alive_s", help="An idle connection is closed after this many seconds."
)
def serve(
    bundle,
    host,
    port,
    threads,
    max_batch,
    max_wait_ms,
    max_texts,
    max_text_chars,
    max_body_bytes,
    **limits,
) -> None:
    """Serve a BUNDLE over HTTP (FastAPI on uvicorn; no torch).

    \b
    POST /v1/predict   ["text", ...] or {"texts": [...]} -> {"predictions": [{"label", "scores"}]}
    GET  /healthz      what is served
    GET  /metrics      Prometheus: requests, errors, latency, batch sizes, refusals, timeouts
    Concurrent requests are micro-batched. SIGTERM/Ctrl-C finish the requests in flight, then stop.
    Overload is shed, not queued: see the limits below; expose it behind a reverse proxy.

    \b
    Example:
      edgetune serve runs/sst2/best --port 8000
      curl -s localhost:8000/v1/predict -d '["a gripping, beautiful film"]'
    """
    import edgetune
    from edgetune.config import validated

    edgetune.serve(
        validated(
            ServeConfig,
            "serve",
            bundle=bundle,
            host=host,
            port=port,
            threads=threads,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_texts=max_texts,
            max_text_chars=max_text_chars,
            max_body_bytes=max_body_bytes,
            **limits,
        )
    )


@click.command()
@click.argument("target")
@config_option(LoadtestConfig, "out", help="Folder for loadtest.json and loadtest.png.")
@click.option(
    "--profile",
    "profile_name",
    default=None,
    help="Whose budget to hold (default: the bundle's profile).",
)
@click.option(
    "--budget-ms",
    type=float,
    default=None,
    help="p99 budget in ms (default: the profile's latency budget).",
)
@config_option(LoadtestConfig, "concurrency", help="Closed-loop clients of the saturation step.")
@config_option(LoadtestConfig, "step_seconds", help="Length of each step.")
@click.option(
    "--rates",
    default=None,
    help="Open-loop rates, e.g. '50,100,200' (default: fractions of the saturated throughput).",
)
@config_option(LoadtestConfig, "max_seconds", help="The whole test stops by then.")
@config_option(LoadtestConfig, "max_requests", help="Requests in all, at most.")
@click.option(
    "--texts",
    "texts_file",
    default=None,
    help="A .csv/.tsv/.jsonl file of texts to send (default: built-in sentences).",
)
@click.option("--text-column", default=None, help="Text column of --texts.")
@click.option(
    "--server-arg",
    "server_args",
    multiple=True,
    help="Extra `serve` flag for the server started here (repeatable).",
)
def loadtest(
    target,
    out,
    profile_name,
    budget_ms,
    concurrency,
    step_seconds,
    rates,
    max_seconds,
    max_requests,
    texts_file,
    text_column,
    server_args,
) -> None:
    """Find the traffic a served model holds within its budget: TARGET is a bundle (served
    here on 127.0.0.1) or a loopback URL of a running `edgetune serve`.

    \b
    Example:
      edgetune loadtest runs/sst2/best --out runs/sst2/loadtest
    """
    import edgetune
    from edgetune.config import validated

    try:
        rate_list = [float(r) for r in split_list(rates) or []]
    except ValueError:
        raise click.BadParameter(
            f"'{rates}': give rates as numbers, e.g. 50,100,200", param_hint="--rates"
        ) from None
    result = edgetune.loadtest(
        validated(
            LoadtestConfig,
            "loadtest",
            target=target,
            out=out,
            profile=profile_name,
            budget_ms=budget_ms,
            concurrency=concurrency,
            step_seconds=step_seconds,
            rates=rate_list,
            max_seconds=max_seconds,
            max_requests=max_requests,
            texts=texts_file,
            text_column=text_column,
            server_args=list(server_args),
        )
    )
    click.echo(result_summary(result))
    from pathlib import Path

    plot = f", {out}/loadtest.png" if (Path(out) / "loadtest.png").is_file() else ""
    click.echo(f"written: {out}/loadtest.json{plot}")


def result_summary(result) -> str:
    lines = [
        (
            f"{'step':8s} {'clients':>7s} {'offered/s':>9s} {'served/s':>9s} {'p50 ms':>8s} "
            f"{'p90 ms':>8s} {'p99 ms':>8s} {'errors':>6s}  budget"
        )
    ]
    for s in result.steps:
        verdict = {True: "within", False: "over", None: ""}[s.within_budget]
        lines.append(
            f"{s.kind:8s} {s.concurrency or '':>7} {s.offered_rps or '':>9} "
            f"{s.throughput_rps:9.1f} {s.p50_ms or 0:8.2f} {s.p90_ms or 0:8.2f} "
            f"{s.p99_ms or 0:8.2f} {s.errors:6d}  {verdict}"
        )
    capacity = (
        f"{result.capacity_rps:g} requests/s with p99 <= {result.budget_ms:g} ms"
        if result.capacity_rps is not None
        else f"none: no rate tried kept p99 within {result.budget_ms:g} ms"
    )
    lines += [f"capacity at budget: {capacity} ({result.stopped})", *result.notes]
    return "\n".join(lines)
