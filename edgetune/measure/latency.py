"""Latency of ONNX models on a profile, measured side by side so that drift falls on all alike.

Every system runs in a process of its own (`measure/worker.py`); the systems are timed in
rounds, each round giving every system one slice of runs, in an order that rotates from
round to round. Percentiles come with 95 % intervals (cluster bootstrap over rounds,
`measure/stats.py`). With a budget, each system gets a verdict: `met` (the p90 interval is
under the budget), `missed` (over it) or `marginal` (it straddles it); marginal systems get
more rounds, up to `max_rounds`, unless one that outranks it (as accurate and as small, by the
caller's account) met the budget and is significantly faster: no objective would then choose
it, whatever its verdict. Traffic latency runs the validation texts at their own
lengths (dynamic shapes) after the fixed-shape rounds. No torch here, on purpose.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from edgetune.errors import InputError
from edgetune.hardware import fingerprint
from edgetune.measure import park
from edgetune.measure.session import SessionSettings
from edgetune.measure.stats import CI_METHOD, percentile_interval, ratio_interval
from edgetune.measure.worker import save_feeds
from edgetune.profiles import Profile


@dataclass
class LatencySettings:
    """How long to measure. Defaults: about 3 s per system at the profile's shape."""

    warmup_runs: int = 10
    min_runs: int = 50  # over all rounds
    min_seconds: float = 3.0  # over all rounds
    rounds: int = 10
    max_rounds: int = 30  # cap for marginal verdicts
    io_binding: bool = False  # always on for CUDA profiles
    traffic_batches: int = 64  # distinct validation batches timed for traffic latency
    # where: None here, or a `measure.remote.Target` (an `edgetune agent` on the device)
    target: object | None = field(default=None, compare=False)

    def how_long(self) -> dict:
        """The settings that say how long to measure (what an agent is sent)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "target"}

    def slice_runs(self) -> int:
        return max(1, -(-self.min_runs // self.rounds))

    def slice_seconds(self) -> float:
        return self.min_seconds / self.rounds


@dataclass
class LatencyResult:
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    runs: int
    batch_size: int
    sequence_length: int
    throughput_items_per_s: float
    peak_rss_mb: float
    providers: list[str]
    threads: int
    gpu_memory_mb: float | None = None  # this process's GPU memory (CUDA profiles)
    p50_ci: list[float] = field(default_factory=list)  # [low, high], 95 %
    p90_ci: list[float] = field(default_factory=list)
    p99_ci: list[float] = field(default_factory=list)
    rounds: int = 1
    ci_method: str = CI_METHOD
    traffic_p50_ms: float | None = None  # validation texts at their own lengths
    traffic_p90_ms: float | None = None
    traffic_p90_ci: list[float] = field(default_factory=list)
    verdict: str = ""  # met | missed | marginal (empty without a budget)
    verdict_note: str = ""
    input_shape: list[int] = field(default_factory=list)  # the first input's fixed shape
    machine: dict = field(default_factory=dict)  # where it was measured (hardware.fingerprint)

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def shape_label(self) -> str:
        """`batch x seq` for text; the whole shape (1x3x224x224) for images and other inputs."""
        if len(self.input_shape) > 2:
            return "x".join(str(d) for d in self.input_shape)
        return f"{self.batch_size} x {self.sequence_length}"


@dataclass
class System:
    """One model to measure: its fixed-shape batch and, optionally, traffic batches; the
    session settings it runs with (a bundle's tuned ones, a tuning trial's; None: default)."""

    name: str
    model_path: Path
    feed: dict[str, np.ndarray]
    traffic: list[dict[str, np.ndarray]] = field(default_factory=list)
    session: SessionSettings | None = None
    # systems at least as accurate and as small as this one (the caller knows accuracy): a
    # marginal verdict is not measured further once one of them met the budget, faster
    outranked_by: tuple[str, ...] = ()
    rounds: list[np.ndarray] = field(default_factory=list)
    traffic_rounds: list[np.ndarray] = field(default_factory=list)


class _Worker:
    """The parent's end of one `python -m edgetune.measure.worker` process."""

    def __init__(self, system: System, profile: Profile, settings: LatencySettings, tmp: Path):
        feeds = tmp / f"{id(system)}.npz"
        save_feeds(
            str(feeds),
            {"fixed": [system.feed], **({"traffic": system.traffic} if system.traffic else {})},
        )
        self.name = system.name
        # -P: the current folder is not first on the worker's sys.path (no file there stands
        # in for a module it imports)
        command = [sys.executable, "-P", "-m", "edgetune.measure.worker"]
        self.proc = subprocess.Popen(
            command, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.request = {  # sent one worker at a time: warm-ups sharing the cores slow them all
            "op": "load",
            "model": str(system.model_path),
            "profile": profile.model_dump(),
            "session": system.session.model_dump() if system.session else None,
            "feeds": str(feeds),
            "io_binding": settings.io_binding,
            "warmup": settings.warmup_runs,
        }
        self.paused = False

    def pause(self) -> None:
        """Stopped until the next request (`measure/park.py`)."""
        park.pause(self.proc.pid)
        self.paused = True

    def send(self, request: dict) -> None:
        if self.paused:
            park.resume(self.proc.pid)
            self.paused = False
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def ask(self, request: dict | None) -> dict:
        """Send `request` (None: only read the reply to one already sent) and wait for it."""
        if request is not None:
            self.send(request)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the latency worker for {self.name} died (exit {self.proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise (InputError if reply.get("input_error") else RuntimeError)(
                f"measuring {self.name}: {reply['error']}"
            )
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            if self.paused:
                park.resume(self.proc.pid)
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


def budget_p90(result: LatencyResult, profile: Profile) -> tuple[float, list[float], bool]:
    """The p90 (and its interval) the budget is checked on: the traffic one when the profile
    says `budget_on = "traffic"` and it was measured, else the fixed-shape one."""
    if profile.budget_on == "traffic" and result.traffic_p90_ms is not None:
        return result.traffic_p90_ms, result.traffic_p90_ci, True
    return result.p90_ms, result.p90_ci, False


def latency_verdict(p90: float, p90_ci: list[float], budget_ms: float) -> str:
    if p90_ci and p90_ci[1] <= budget_ms:
        return "met"
    if p90_ci and p90_ci[0] > budget_ms:
        return "missed"
    return "marginal" if p90_ci else ("met" if p90 <= budget_ms else "missed")


def _interval(rounds: list[np.ndarray], q: float) -> list[float]:
    i = percentile_interval(rounds, q)
    return [i.low, i.high]


def _summary(
    system: System, profile: Profile, stats: dict, budget_ms: float | None
) -> LatencyResult:
    pooled = np.concatenate(system.rounds)
    shape = next(iter(system.feed.values())).shape
    batch, seq = (shape[0] if shape else 1), (shape[1] if len(shape) > 1 else 1)
    p50 = float(np.percentile(pooled, 50))
    result = LatencyResult(
        p50_ms=p50,
        p90_ms=float(np.percentile(pooled, 90)),
        p99_ms=float(np.percentile(pooled, 99)),
        mean_ms=float(pooled.mean()),
        runs=len(pooled),
        batch_size=int(batch),
        sequence_length=int(seq),
        throughput_items_per_s=float(batch * 1000.0 / p50),
        peak_rss_mb=float(stats["peak_rss_mb"]),
        providers=stats["providers"],
        threads=(system.session and system.session.intra_op_threads) or profile.threads,
        gpu_memory_mb=stats["gpu_memory_mb"],
        p50_ci=_interval(system.rounds, 50),
        p90_ci=_interval(system.rounds, 90),
        p99_ci=_interval(system.rounds, 99),
        rounds=len(system.rounds),
        input_shape=[int(d) for d in shape],
    )
    result.round_times = system.rounds  # not a field: kept for ratios, not written to JSON
    if system.traffic_rounds:
        traffic = np.concatenate(system.traffic_rounds)
        result.traffic_p50_ms = float(np.percentile(traffic, 50))
        result.traffic_p90_ms = float(np.percentile(traffic, 90))
        result.traffic_p90_ci = _interval(system.traffic_rounds, 90)
        result.traffic_round_times = system.traffic_rounds  # as round_times, for ratios
    if budget_ms is not None:
        judge(result, profile, budget_ms)
    return result


def judge(result: LatencyResult, profile: Profile, budget_ms: float) -> None:
    """Set `result`'s verdict on `budget_ms` and the note that says how it was reached."""
    p90, ci, on_traffic = budget_p90(result, profile)
    result.verdict = latency_verdict(p90, ci, budget_ms)
    result.verdict_note = (
        f"{result.verdict}: p90 {p90:.2f} ms [{ci[0]:.2f}, {ci[1]:.2f}] vs budget "
        f"{budget_ms:g} ms after {result.rounds} rounds"
        + (" (traffic shapes)" if on_traffic else "")
    )


def _round(
    workers: dict[str, _Worker], systems: list[System], r: int, feed: str, settings: LatencySettings
) -> None:
    """One round: every system one slice, starting at a different system each round."""
    order = systems[r % len(systems) :] + systems[: r % len(systems)]
    for s in order:
        runs, seconds = (
            (settings.slice_runs(), settings.slice_seconds())
            if feed == "fixed"
            else (max(1, len(s.traffic) // settings.rounds), 0.0)
        )
        worker = workers[s.name]
        request = {"op": "run", "feed": feed, "runs": runs, "seconds": seconds}
        times = np.asarray(worker.ask(request)["times"])
        (s.rounds if feed == "fixed" else s.traffic_rounds).append(times)
        worker.pause()  # its pool threads spin on: the next system must not share the cores


def measure_interleaved(
    systems: list[System],
    profile: Profile,
    settings: LatencySettings | None = None,
    budget_ms: float | None = None,
    worker=_Worker,
) -> dict[str, LatencyResult]:
    """Interleaved rounds over all systems (see the module docstring); results by name.
    `worker` makes the process for one system (tests pass a fake)."""
    settings = settings or LatencySettings()
    for s in systems:  # a System measured before starts afresh
        s.rounds, s.traffic_rounds = [], []
    with tempfile.TemporaryDirectory(prefix="edgetune-bench-") as tmp:
        workers = {s.name: worker(s, profile, settings, Path(tmp)) for s in systems}
        try:
            for w in workers.values():  # they import at once; each loads and warms up alone
                w.ask(w.request)
                w.pause()
            for r in range(settings.rounds):
                _round(workers, systems, r, "fixed", settings)
            with_traffic = [s for s in systems if s.traffic]
            for r in range(settings.rounds if with_traffic else 0):
                _round(workers, with_traffic, r, "traffic", settings)
            stats = {name: w.ask({"op": "stats"}) for name, w in workers.items()}
            results = {s.name: _summary(s, profile, stats[s.name], budget_ms) for s in systems}
            extra = settings.rounds
            while budget_ms is not None and extra < settings.max_rounds:
                marginal = _worth_more_rounds(systems, results, profile)
                if not marginal:
                    break
                for r in range(min(settings.rounds, settings.max_rounds - extra)):
                    _round(workers, marginal, extra + r, "fixed", settings)
                extra += settings.rounds
                results.update(
                    {s.name: _summary(s, profile, stats[s.name], budget_ms) for s in marginal}
                )
        finally:
            for w in workers.values():
                w.close()
    for result in results.values():
        result.machine = fingerprint()
    return results


def _worth_more_rounds(
    systems: list[System], results: dict[str, LatencyResult], profile: Profile
) -> list[System]:
    """The marginal systems whose verdict can still change the choice. One is settled (its note
    says so) when a system that outranks it met the budget and its own budget p90 over that
    one's (paired, 95 % interval over their shared rounds) lies wholly above 1."""
    by_name = {s.name: s for s in systems}
    worth = []
    for s in (s for s in systems if results[s.name].verdict == "marginal"):
        traffic = budget_p90(results[s.name], profile)[2]
        for other in (by_name[n] for n in s.outranked_by if n in by_name):
            if results[other.name].verdict != "met":
                continue
            ratio = (
                ratio_interval(other.traffic_rounds, s.traffic_rounds, 90)
                if traffic
                else ratio_interval(other.rounds, s.rounds, 90)
            )
            if ratio.low > 1.0:
                results[s.name].verdict_note += (
                    f"; not measured further: {other.name}, as accurate and as small, met the "
                    f"budget, and this p90 is {ratio.value:.2f}x its [{ratio.low:.2f}, "
                    f"{ratio.high:.2f}]"
                )
                break
        else:
            worth.append(s)
    return worth


def measure_latency(
    model_path: str | Path,
    profile: Profile,
    feed: dict[str, np.ndarray],
    settings: LatencySettings | None = None,
) -> LatencyResult:
    """One model alone, in a worker process as `bench` runs it (peak RSS its own)."""
    system = System(Path(model_path).name, Path(model_path), feed)
    return measure_interleaved([system], profile, settings)[system.name]
