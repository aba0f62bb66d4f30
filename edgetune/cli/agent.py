"""`edgetune agent`: measure models on this machine for `tune`/`bench --target` elsewhere."""

from __future__ import annotations

import click

from edgetune.config import AgentConfig

FIELDS = AgentConfig.model_fields


@click.command()
@click.option(
    "--host",
    default=FIELDS["host"].default,
    show_default=True,
    help="Address to listen on (beyond loopback only with a token).",
)
@click.option(
    "--port",
    type=int,
    default=FIELDS["port"].default,
    show_default=True,
    help="Port (0: any free one, printed when ready).",
)
@click.option(
    "--store",
    default=FIELDS["store"].default,
    show_default=True,
    help="Folder where uploaded models and inputs are kept by content hash.",
)
@click.option(
    "--token-file",
    default=None,
    type=click.Path(dir_okay=False),
    help="File whose first line is the token callers must send (default: "
    "$EDGETUNE_AGENT_TOKEN; never given on the command line).",
)
@click.option(
    "--max-upload-mb",
    type=float,
    default=FIELDS["max_upload_mb"].default,
    show_default=True,
    help="Largest upload accepted.",
)
@click.option(
    "--busy-wait-s",
    type=float,
    default=FIELDS["busy_wait_s"].default,
    show_default=True,
    help="How long a caller waits for a measurement in progress.",
)
def agent(host, port, store, token_file, max_upload_mb, busy_wait_s) -> None:
    """Measure ONNX models sent by `tune`/`bench --target URL`, on this machine.

    \b
    Example (on the device):
      EDGETUNE_AGENT_TOKEN=$(cat ~/.agent-token) edgetune agent --host 0.0.0.0 --port 8765
    and where you tune:
      EDGETUNE_AGENT_TOKEN=... edgetune bench runs/x/best --target http://device:8765
    """
    import edgetune

    edgetune.agent(
        AgentConfig(
            host=host,
            port=port,
            store=store,
            token_file=token_file,
            max_upload_mb=max_upload_mb,
            busy_wait_s=busy_wait_s,
        )
    )
