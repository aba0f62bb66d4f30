"""`edgetune agent`: the measuring service (`deploy/agent.py`) bound and run until stopped.

It refuses to listen beyond loopback without a token: whoever reaches it could make it run
any ONNX model it is sent. The ready line prints the URL (with `--port 0`, the real port).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from edgetune.config import AgentConfig
from edgetune.deploy.agent import AgentState, clear_uploads, make_server
from edgetune.errors import InputError
from edgetune.hardware import describe, fingerprint
from edgetune.measure.remote import TOKEN_ENV, read_token
from edgetune.netutil import is_loopback_host

READY = "edgetune agent: ready on"


def agent(config: AgentConfig) -> None:
    """Serve until SIGTERM/SIGINT; the measurement in progress is finished first."""
    token = read_token(config.token_file)
    if token is None and not is_loopback_host(config.host):
        raise InputError(
            f"--host {config.host} is beyond loopback: give a token "
            f"(--token-file FILE or ${TOKEN_ENV}) or listen on 127.0.0.1"
        )
    store = Path(config.store).expanduser()
    store.mkdir(parents=True, exist_ok=True)
    clear_uploads(store)
    state = AgentState(store, token, config.max_upload_mb, config.busy_wait_s)
    server = make_server(config.host, config.port, state)
    host, port = server.server_address[:2]
    print(
        f"{READY} http://{host}:{port} ({describe(fingerprint())}; "
        f"{'token required' if token else 'no token: loopback only'})",
        flush=True,
    )

    def stop(signum, frame) -> None:  # shutdown() waits for serve_forever: call it elsewhere
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.serve_forever()
    finally:
        server.server_close()
        for s, handler in previous.items():
            signal.signal(s, handler)
