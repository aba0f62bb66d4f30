"""Connection limits for `serve`: uvicorn's h11 protocol with the two limits it lacks.

A cap on open connections that keeps serving the ones it admitted. uvicorn's own
`limit_concurrency` answers 503 to every request while the *count* of open connections is at
the limit, and clients told 503 reconnect at once, so under a burst of more clients than the
limit the count never falls and nothing is served (measured: 100 % 503 with 1,000 clients and a
limit of 256, benchmarks/RESULTS.md). Here a connection past `max_connections` is answered 503
and closed as it opens, and the admitted ones go on being served at the server's capacity.

A read timer. uvicorn closes a connection idle *between* requests (`timeout_keep_alive`), but
not one that opens and sends nothing, or sends its headers a byte at a time: such sockets would
hold a connection slot and a file descriptor for ever. A connection whose request headers have
not all arrived `read_timeout_s` after it could start sending (it opened, or the last response
went out) is closed. The timer is set once per request, not per byte, so trickling bytes do not
keep it alive. The body has its own timer in the app.
"""

from __future__ import annotations

from collections.abc import Callable

from uvicorn.protocols.http.h11_impl import H11Protocol

REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 26\r\nConnection: close\r\n\r\ntoo many open connections\n"
)


def limited_protocol(
    max_connections: int,
    read_timeout_s: float,
    on_refusal: Callable[[], None],
    on_timeout: Callable[[], None],
) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a connection cap and a read timer (`http=` of its Config)."""

    class LimitedH11(H11Protocol):
        _timer = None
        _armed_for: object = None  # the request cycle current when the timer was set

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:  # this one included
                on_refusal()
                transport.write(REFUSAL)
                transport.close()
                return
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

    return LimitedH11
