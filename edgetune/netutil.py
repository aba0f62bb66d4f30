"""Where edgetune's own HTTP may go: loopback checks, and urllib that goes only where told.

Shared by `loadtest` (its loopback check must hold for every hop) and `--target` (an agent's
address is the only one a measurement is sent to)."""

from __future__ import annotations

import ipaddress
import urllib.request


def is_loopback_host(host: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # urllib then raises HTTPError with the 3xx status


def direct_opener() -> urllib.request.OpenerDirector:
    """urllib without proxies (environment variables could name one) and without redirects:
    a 3xx is an HTTPError for the caller to name, never followed."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
