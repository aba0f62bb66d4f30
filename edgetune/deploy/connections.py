"""Connection limits for `serve`: uvicorn with a read timer it lacks, its refusals counted.

uvicorn closes a connection idle *between* requests (`timeout_keep_alive`) and refuses requests
past `limit_concurrency` with 503, but it has no timer on a connection that opens and sends
nothing, or sends its request headers a byte at a time: a few thousand such sockets hold file
descriptors for ever. `ReadTimedH11` (uvicorn's h11 protocol, subclassed) closes a connection
whose request headers have not all arrived `read_timeout_s` after its first byte could be sent
(the connection opened, or the last response went out). The timer is set once per request, not
per byte, so trickling bytes do not keep it alive. The body has its own timer in the app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

LIMIT_MESSAGE = "Exceeded concurrency limit."  # what uvicorn logs for each request it refuses


def read_timed_protocol(read_timeout_s: float, on_timeout: Callable[[], None]) -> type[H11Protocol]:
    """uvicorn's h11 protocol whose connections must deliver request headers in time."""

    class ReadTimedH11(H11Protocol):
        _timer = None
        _armed_for: object = None  # the request cycle current when the timer was set

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            idle = self.cycle is None or self.cycle.response_complete
            if idle and self._armed_for is not self.cycle:  # the first bytes of a new request
                self._arm()
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._timer is not None:
                self._timer.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._armed_for = self.cycle
            self._timer = self.loop.call_later(read_timeout_s, self._expire)

        def _expire(self) -> None:
            self._timer = None
            waiting = self.cycle is self._armed_for and (
                self.cycle is None or self.cycle.response_complete
            )
            if waiting and not self.transport.is_closing():  # no request began in time
                on_timeout()
                self.transport.close()

    return ReadTimedH11


class _CountRefusals(logging.Filter):
    """Counts uvicorn's concurrency-limit refusals and keeps them out of the log (a burst would
    write one line per refused request; /metrics has the count)."""

    def __init__(self, on_refusal: Callable[[], None]):
        super().__init__()
        self.on_refusal = on_refusal

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() == LIMIT_MESSAGE:
            self.on_refusal()
            return False
        return True


class LimitedServer(uvicorn.Server):
    """A uvicorn server whose limit refusals reach `on_refusal` while it runs."""

    def __init__(self, config: uvicorn.Config, on_refusal: Callable[[], None]):
        super().__init__(config)
        self._refusals = _CountRefusals(on_refusal)

    def run(self, sockets=None) -> None:
        logger = logging.getLogger("uvicorn.error")
        logger.addFilter(self._refusals)
        try:
            super().run(sockets=sockets)
        finally:
            logger.removeFilter(self._refusals)
