"""`edgetune agent`: measure ONNX models on the machine they will run on, for a tuner elsewhere.

A small HTTP service (the standard library's threading server: it runs on a runtime-only
install). Models and their input batches are uploaded once and kept by content hash; a
measurement names them and gets back the raw per-run times of the same interleaved rounds
`bench` runs locally (`measure/latency.py`: one worker process per model, rotating order, extra
rounds for marginal verdicts), so the caller's statistics apply unchanged. Every answer carries
the machine's fingerprint.

    PUT  /models/<sha256>   a plain ONNX file (checked: no external data, no custom-op domain)
    PUT  /feeds/<sha256>    an .npz of input batches (no pickles)
    HEAD /models/<sha256>   200 if kept (uploads are skipped), 404 if not; /feeds likewise
    POST /measure           {"systems": [{"name", "model", "feeds", "session"}], "profile",
                             "settings", "budget_ms"}
                            -> {"fingerprint", "results": {name: rounds + stats}}
    POST /predict           {"model", "feeds", "profile"} -> {"fingerprint", "predictions",
                             "classes"}: the argmax of the first output for every `fixed` batch
                             (accuracy on the device, scored by the caller)
    GET  /healthz           {"ok", "busy", "fingerprint"}

One measurement runs at a time (two would disturb each other); a caller that finds it busy
waits up to `busy_wait_s`, then gets 503 with Retry-After. With a token every request must
carry `Authorization: Bearer <token>`; without one the agent only listens on loopback.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgetune.errors import InputError
from edgetune.hardware import fingerprint
from edgetune.measure.latency import LatencySettings, System, measure_interleaved
from edgetune.measure.session import SessionSettings
from edgetune.measure.worker import load_feeds
from edgetune.profiles import Profile

SHA256 = re.compile(r"^[0-9a-f]{64}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+:=-]{0,199}$")
# Operator domains a node may use: ONNX's own and ONNX Runtime's built-in contrib ops (fused
# attention, quantized MatMul); anything else needs a custom-op library, which is refused.
KNOWN_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "com.microsoft.nchwc"}
MAX_REQUEST_BYTES = 1 << 20  # a /measure body: names and settings, never data
COPY_CHUNK = 1 << 20


class RequestError(Exception):
    """A bad request: its status and one line for the caller."""

    def __init__(self, status: int, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


class MeasuredSystem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME.pattern)
    model: str = Field(pattern=SHA256.pattern)
    feeds: str = Field(pattern=SHA256.pattern)
    session: SessionSettings | None = None  # checked strictly: a bad value is a 400
    outranked_by: list[str] = Field(default_factory=list, max_length=64)  # other systems' names


class MeasureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    systems: list[MeasuredSystem] = Field(min_length=1, max_length=64)
    profile: Profile
    settings: dict = Field(default_factory=dict)
    budget_ms: float | None = Field(None, gt=0)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(pattern=SHA256.pattern)
    feeds: str = Field(pattern=SHA256.pattern)
    profile: Profile


class AgentState:
    """What the handler threads share: the store, the token, the one-measurement slot."""

    def __init__(self, store: Path, token: str | None, max_upload_mb: float, busy_wait_s: float):
        self.store, self.token = store, token
        self.max_upload = int(max_upload_mb * 1e6)
        self.busy_wait_s = busy_wait_s
        self.slot = threading.Lock()
        for kind in ("models", "feeds"):
            (store / kind).mkdir(parents=True, exist_ok=True)

    def path(self, kind: str, digest: str) -> Path:
        return self.store / kind / f"{digest}.{'onnx' if kind == 'models' else 'npz'}"


def check_plain_onnx(path: Path) -> None:
    """A plain ONNX file: parses, keeps all weights inside, uses no custom-op domain."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the sender's file
        raise RequestError(400, f"not an ONNX model ({exc.__class__.__name__})") from None
    external = [
        t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
    ]
    if external:
        raise RequestError(
            400,
            "the model keeps weights in external data files; send one self-contained .onnx file",
        )
    local = {f.domain for f in model.functions}  # the model's own functions are not custom ops
    graphs = [model.graph, *model.functions]
    used = set()
    while graphs:  # every node, in subgraphs (If, Loop) and function bodies too
        graph = graphs.pop()
        for node in graph.node:
            used.add(node.domain)
            for attribute in node.attribute:
                graphs.extend([attribute.g] if attribute.HasField("g") else attribute.graphs)
    unknown = sorted(used - KNOWN_DOMAINS - local)
    if unknown:
        raise RequestError(
            400,
            f"operator domain(s) {unknown} need a custom-op library, which the agent never loads",
        )


def check_feeds(path: Path) -> None:
    """An .npz of plain arrays named `fixed/0/input_ids` etc. (no pickled objects)."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            names = data.files
            for name in names:
                data[name]
    except Exception as exc:  # noqa: BLE001 - any failure is the sender's file
        raise RequestError(400, f"not an .npz of arrays ({exc.__class__.__name__})") from None
    if not names or not all(re.fullmatch(r"(fixed|traffic)/\d+/[\w.:/-]+", n) for n in names):
        raise RequestError(
            400, "feeds must be arrays named fixed/<i>/<input> or traffic/<i>/<input>"
        )


def kept(state: AgentState, name: str, model_digest: str, feeds_digest: str) -> tuple[Path, dict]:
    """The kept model's path and its feeds' batches (409 if either was not uploaded)."""
    model, feeds = state.path("models", model_digest), state.path("feeds", feeds_digest)
    if not model.is_file() or not feeds.is_file():
        raise RequestError(
            409,
            f"{name}: upload the model and feeds first (PUT /models/<sha256>, PUT /feeds/<sha256>)",
        )
    return model, load_feeds(str(feeds))


def predict(state: AgentState, request: PredictRequest) -> dict:
    """The model's argmax predictions on every `fixed` batch, with this machine's session."""
    from edgetune.measure.bench import predict_logits
    from edgetune.measure.session import create_session

    model, batches = kept(state, "predict", request.model, request.feeds)
    if not state.slot.acquire(timeout=state.busy_wait_s):
        raise RequestError(503, "busy measuring for another caller", retry_after=5)
    try:
        logits = predict_logits(create_session(model, request.profile), batches.get("fixed", []))
    except (InputError, RuntimeError, ValueError) as exc:  # the sender's model, feeds, providers
        raise RequestError(422, str(exc).splitlines()[0]) from None
    finally:
        state.slot.release()
    return {
        "fingerprint": fingerprint(),
        "predictions": logits.argmax(-1).tolist(),
        "classes": int(logits.shape[-1]),
    }


def measure(state: AgentState, request: MeasureRequest) -> dict:
    """The interleaved rounds on this machine; raw times per system, and the fingerprint."""
    systems = []
    for s in request.systems:
        model, batches = kept(state, s.name, s.model, s.feeds)
        if not batches.get("fixed"):
            raise RequestError(400, f"{s.name}: the feeds hold no fixed batch")
        fixed, traffic = batches["fixed"][0], batches.get("traffic", [])
        systems.append(System(s.name, model, fixed, traffic, s.session, tuple(s.outranked_by)))
    if len({s.name for s in systems}) != len(systems):
        raise RequestError(400, "system names must differ")
    try:
        settings = LatencySettings(**request.settings)
    except TypeError as exc:
        raise RequestError(400, f"settings: {exc}") from None
    if not state.slot.acquire(timeout=state.busy_wait_s):
        raise RequestError(503, "busy measuring for another caller", retry_after=5)
    try:
        results = measure_interleaved(systems, request.profile, settings, request.budget_ms)
    except (InputError, RuntimeError) as exc:  # the sender's model, feeds or providers
        raise RequestError(422, str(exc).splitlines()[0]) from None
    finally:
        state.slot.release()
    answer = {}
    for s in systems:
        latency = results[s.name]
        answer[s.name] = {
            "rounds": [r.tolist() for r in s.rounds],
            "traffic_rounds": [r.tolist() for r in s.traffic_rounds],
            "stats": {
                "peak_rss_mb": latency.peak_rss_mb,
                "providers": latency.providers,
                "gpu_memory_mb": latency.gpu_memory_mb,
            },
        }
    return {"fingerprint": fingerprint(), "results": answer}


class AgentHandler(BaseHTTPRequestHandler):
    """Every request: token, then route; a bad one gets its status and one JSON line."""

    state: AgentState  # set on the subclass `make_server` builds
    protocol_version = "HTTP/1.1"
    timeout = 60  # a socket that sends nothing for this long is closed

    def log_message(self, format: str, *args) -> None:
        pass  # quiet: the caller prints what matters

    def do_GET(self) -> None:
        self._handle(lambda: self._get())

    def do_HEAD(self) -> None:
        self._handle(lambda: self._head())

    def do_PUT(self) -> None:
        self._handle(lambda: self._put())

    def do_POST(self) -> None:
        self._handle(lambda: self._post())

    def _handle(self, route) -> None:
        try:
            self._authorize()
            status, body = route()
            self._reply(status, body)
        except RequestError as exc:
            self.close_connection = True
            self._reply(exc.status, {"error": str(exc)}, exc.retry_after)
        except Exception as exc:  # noqa: BLE001 - the agent keeps serving; the caller learns why
            self.close_connection = True
            self._reply(500, {"error": f"internal error ({exc.__class__.__name__})"})

    def _authorize(self) -> None:
        token = self.state.token
        if token is None:
            return
        given = self.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise RequestError(401, "missing or wrong token (Authorization: Bearer <token>)")

    def _blob(self) -> tuple[str, str]:
        match = re.fullmatch(r"/(models|feeds)/([0-9a-f]{64})", self.path)
        if not match:
            raise RequestError(404, f"no such resource: {self.path[:100]}")
        return match.group(1), match.group(2)

    def _get(self) -> tuple[int, dict]:
        if self.path != "/healthz":
            raise RequestError(404, f"no such resource: {self.path[:100]}")
        return 200, {"ok": True, "busy": self.state.slot.locked(), "fingerprint": fingerprint()}

    def _head(self) -> tuple[int, None]:
        kind, digest = self._blob()
        return (200 if self.state.path(kind, digest).is_file() else 404), None

    def _put(self) -> tuple[int, dict]:
        kind, digest = self._blob()
        length = self._length(self.state.max_upload)
        target = self.state.path(kind, digest)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".upload-", delete=False) as out:
            temp = Path(out.name)
            hasher, left = hashlib.sha256(), length
            while left:
                chunk = self.rfile.read(min(COPY_CHUNK, left))
                if not chunk:
                    break
                hasher.update(chunk)
                out.write(chunk)
                left -= len(chunk)
        try:
            if left:
                raise RequestError(400, f"the upload ended {left} bytes short")
            if hasher.hexdigest() != digest:
                raise RequestError(400, "the upload's sha256 is not the one in its path")
            (check_plain_onnx if kind == "models" else check_feeds)(temp)
            temp.replace(target)
        finally:
            temp.unlink(missing_ok=True)
        return 201, {"stored": digest, "bytes": length}

    def _post(self) -> tuple[int, dict]:
        routes = {"/measure": (MeasureRequest, measure), "/predict": (PredictRequest, predict)}
        if self.path not in routes:
            raise RequestError(404, f"no such resource: {self.path[:100]}")
        schema, run = routes[self.path]
        raw = self.rfile.read(self._length(MAX_REQUEST_BYTES))
        try:
            request = schema.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise RequestError(
                400, f"bad {self.path[1:]} request: {where}: {first['msg']}"
            ) from None
        return 200, run(self.state, request)

    def _length(self, limit: int) -> int:
        value = self.headers.get("Content-Length")
        if value is None or not value.isdigit():
            raise RequestError(411, "Content-Length is required")
        if int(value) > limit:
            raise RequestError(
                413,
                f"{int(value)} bytes is over the limit of {limit}; raise "
                "the agent's --max-upload-mb",
            )
        return int(value)

    def _reply(self, status: int, body: dict | None, retry_after: float | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if retry_after is not None:
            self.send_header("Retry-After", f"{retry_after:g}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def make_server(host: str, port: int, state: AgentState) -> ThreadingHTTPServer:
    """The agent's server, bound (port 0: any free one)."""
    handler = type("BoundAgentHandler", (AgentHandler,), {"state": state})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise InputError(
            f"cannot listen on {host}:{port} ({exc.strerror}); choose another "
            "--port (0: any free one) or --host"
        ) from None
    server.daemon_threads = True
    return server


def clear_uploads(store: Path) -> None:
    """Uploads a killed agent left half-written (never the kept files)."""
    for partial in store.glob("*/.upload-*"):  # temp files of `_put`, never folders
        partial.unlink(missing_ok=True)
