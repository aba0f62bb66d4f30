"""Latency measured by an `edgetune agent` on the machine the model will run on.

`Target.measure_interleaved` has the signature of the local `measure_interleaved`: it uploads
each model and its input batches (skipped when the agent already keeps that content hash),
asks the agent for the interleaved rounds, and builds the results from the raw times with the
same statistics as a local run. Each result's `machine` is the agent's fingerprint.
`Target.predict` has the agent run a validation set (`--accuracy-on target`). An agent that does
not answer raises `AgentUnreachable`, so that a fleet (`measure/fleet.py`) can go to another.

Every call has a bounded timeout, follows no redirect and ignores proxy variables; the token
comes from `EDGETUNE_AGENT_TOKEN` or a file, never from the command line.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from edgetune.errors import InputError
from edgetune.measure.latency import LatencyResult, LatencySettings, System, _summary
from edgetune.measure.worker import save_feeds
from edgetune.netutil import direct_opener
from edgetune.profiles import Profile

TOKEN_ENV = "EDGETUNE_AGENT_TOKEN"
CONNECT_TIMEOUT_S = 30.0  # uploads and small requests
BUSY_RETRIES = 60  # 503 busy answers waited out (Retry-After each) before giving up


class AgentUnreachable(InputError):
    """The agent did not answer, or stopped answering mid-call: another agent may."""

    def __init__(self, message: str, url: str):
        super().__init__(message)
        self.url = url


def read_token(token_file: str | Path | None = None) -> str | None:
    """The agent token: from `token_file` (its first line), else the environment, else None."""
    if token_file is not None:
        try:
            token = Path(token_file).read_text().strip().splitlines()
        except OSError as exc:
            raise InputError(f"cannot read the token file {token_file} ({exc.strerror})") from None
        if not token:
            raise InputError(f"the token file {token_file} is empty")
        return token[0]
    return os.environ.get(TOKEN_ENV) or None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Target:
    """One agent, by URL."""

    def __init__(self, url: str, token: str | None = None):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"--target {url}: give the agent's URL, e.g. http://10.0.0.7:8765")
        self.url, self.token = url.rstrip("/"), token

    def _call(
        self, method: str, path: str, body: bytes | None = None, timeout: float = CONNECT_TIMEOUT_S
    ) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for _ in range(BUSY_RETRIES):
            request = urllib.request.Request(self.url + path, body, headers, method=method)
            try:
                with direct_opener().open(request, timeout=timeout) as response:
                    raw = response.read()
                    return response.status, json.loads(raw) if raw else {}
            except urllib.error.HTTPError as exc:
                if exc.code == 404 and method == "HEAD":
                    return 404, {}
                if 300 <= exc.code < 400:
                    raise InputError(
                        f"agent {self.url} answered a redirect ({exc.code}) to "
                        f"{exc.headers.get('Location')}; give the agent's own address"
                    ) from None
                if exc.code == 503 and exc.headers.get("Retry-After"):
                    time.sleep(float(exc.headers["Retry-After"]))
                    continue
                raise InputError(f"agent {self.url}: {_error_line(exc)}") from None
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
                reason = getattr(exc, "reason", exc) or exc.__class__.__name__
                raise AgentUnreachable(
                    f"agent {self.url} did not answer ({reason}); check that "
                    "`edgetune agent` runs there and the address",
                    self.url,
                ) from None
        raise InputError(f"agent {self.url} stayed busy; try again when it is free")

    def fingerprint(self) -> dict:
        return self._call("GET", "/healthz")[1]["fingerprint"]

    def upload(self, kind: str, path: Path) -> str:
        """The content hash the agent keeps `path` under (sent only if it lacks it)."""
        digest = file_sha256(path)
        if self._call("HEAD", f"/{kind}/{digest}")[0] != 200:
            timeout = CONNECT_TIMEOUT_S + path.stat().st_size / 1e6  # >= 1 MB/s
            self._call("PUT", f"/{kind}/{digest}", path.read_bytes(), timeout)
        return digest

    def measure_interleaved(
        self,
        systems: list[System],
        profile: Profile,
        settings: LatencySettings | None = None,
        budget_ms: float | None = None,
    ) -> dict[str, LatencyResult]:
        """As `measure.latency.measure_interleaved`, on the agent's machine."""
        settings = settings or LatencySettings()
        self.fingerprint()  # first: a wrong token or address is said before any upload
        request = []
        alias = {s.name: f"m{i}" for i, s in enumerate(systems)}  # no local names there
        with tempfile.TemporaryDirectory(prefix="edgetune-target-") as tmp:
            for i, s in enumerate(systems):
                feeds = Path(tmp) / f"{i}.npz"
                save_feeds(
                    str(feeds), {"fixed": [s.feed], **({"traffic": s.traffic} if s.traffic else {})}
                )
                request.append(
                    {
                        "name": alias[s.name],  # the agent sees no local names or paths
                        "model": self.upload("models", Path(s.model_path)),
                        "feeds": self.upload("feeds", feeds),
                        "session": s.session.model_dump() if s.session else None,
                        "outranked_by": [alias[n] for n in s.outranked_by if n in alias],
                    }
                )
        body = {
            "systems": request,
            "profile": profile.model_dump(),
            "budget_ms": budget_ms,
            "settings": settings.how_long(),
        }
        _, answer = self._call(
            "POST",
            "/measure",
            json.dumps(body).encode(),
            timeout=measure_timeout(len(systems), settings),
        )
        results = {}
        for i, s in enumerate(systems):
            raw = answer["results"][f"m{i}"]
            s.rounds = [np.asarray(r, dtype=float) for r in raw["rounds"]]
            s.traffic_rounds = [np.asarray(r, dtype=float) for r in raw["traffic_rounds"]]
            results[s.name] = _summary(s, profile, raw["stats"], budget_ms)
            results[s.name].machine = answer["fingerprint"]
        return results

    def predict(
        self, model_path: Path, batches: list[dict[str, np.ndarray]], profile: Profile
    ) -> tuple[np.ndarray, int, dict]:
        """The model's argmax predictions on `batches`, run by the agent: predictions, the
        number of classes, and the agent's fingerprint."""
        self.fingerprint()
        with tempfile.TemporaryDirectory(prefix="edgetune-target-") as tmp:
            feeds = Path(tmp) / "eval.npz"
            save_feeds(str(feeds), {"fixed": batches})
            body = {
                "model": self.upload("models", Path(model_path)),
                "feeds": self.upload("feeds", feeds),
                "profile": profile.model_dump(),
            }
        timeout = CONNECT_TIMEOUT_S + 60.0 + 20.0 * len(batches)  # loading, then each batch
        _, answer = self._call("POST", "/predict", json.dumps(body).encode(), timeout=timeout)
        return np.asarray(answer["predictions"]), answer["classes"], answer["fingerprint"]


def measure_timeout(systems: int, settings: LatencySettings) -> float:
    """A generous bound on one measurement: loading, warm-up and every round it may take."""
    rounds = max(settings.max_rounds, 2 * settings.rounds)
    per_system = 60.0 + rounds * (settings.slice_seconds() + 1.0)
    return CONNECT_TIMEOUT_S + systems * per_system


def _error_line(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read())["error"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {exc.code} {exc.reason}"
