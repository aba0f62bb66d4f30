"""`edgetune agent`: measure models on this machine for `tune`/`bench --target` elsewhere."""

from __future__ import annotations

import click

from edgetune.cli.options import config_option
from edgetune.config import AgentConfig


@click.command()
@config_option(
    AgentConfig, "host", help="Address to listen on (beyond loopback only with a token)."
)
@config_option(AgentConfig, "port", help="Port (0: any free one, printed when ready).")
@config_option(
    AgentConfig, "store", help="Folder where uploaded models and inputs are kept by content hash."
)
@click.option(
    "--token-file",
    default=None,
    type=click.Path(dir_okay=False),
    help="File whose first line is the token callers must send (default: "
    "$EDGETUNE_AGENT_TOKEN; never given on the command line).",
)
@config_option(AgentConfig, "max_upload_mb", help="Largest upload accepted.")
@config_option(
    AgentConfig, "busy_wait_s", help="How long a caller waits for a measurement in progress."
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
