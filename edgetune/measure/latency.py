"""Latency of an ONNX model on a profile: percentiles, throughput, peak memory.

Latency is measured in a fresh process (`python -m edgetune.measure.latency`) so that its peak
RSS is the ONNX Runtime session's, not the trainer's. A measurement needs both a minimum number of runs and a
minimum duration, after a warm-up. This module imports no torch, on purpose.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgetune.errors import InputError
from edgetune.profiles import Profile

CUDA_WARMUP_RUNS = 50


@dataclass
class LatencySettings:
    """How long to measure; defaults keep one candidate's bench to a few seconds."""

    warmup_runs: int = 10
    min_runs: int = 50
    min_seconds: float = 3.0
    max_seconds: float = 60.0
    io_binding: bool = False  # always on for CUDA profiles


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

    def to_json(self) -> dict:
        return asdict(self)


def create_session(model_path: str | Path, profile: Profile) -> ort.InferenceSession:
    """An ORT session with the profile's providers and threads; clear errors, no silent fallback."""
    available = ort.get_available_providers()
    missing = [p for p in profile.execution_providers if p not in available]
    if missing:
        raise InputError(
            f"profile '{profile.name}' asks for {', '.join(missing)}, which this onnxruntime "
            f"does not have (available: {', '.join(available)}); use a profile for this machine"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = profile.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=profile.execution_providers
        )
    except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph/... types
        raise InputError(f"{model_path}: ONNX Runtime cannot load it as an ONNX model ({exc})") from None
    # ORT falls back to CPU silently when a GPU provider fails to initialise (missing CUDA/cuDNN
    # libraries): a CUDA profile measured on the CPU would be a lie, so refuse.
    if profile.device == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
        raise InputError(
            f"profile '{profile.name}' needs CUDA but ONNX Runtime could not start the CUDA provider "
            "(check the CUDA/cuDNN libraries and that onnxruntime-gpu replaced onnxruntime)"
        )
    return session


def feed_for(session: ort.InferenceSession, encoded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keep only the inputs the graph declares (e.g. drop token_type_ids for DistilBERT)."""
    names = [i.name for i in session.get_inputs()]
    missing = [n for n in names if n not in encoded]
    if missing:
        raise InputError(f"the model needs inputs {missing} that the tokenizer does not produce")
    return {n: np.ascontiguousarray(encoded[n], dtype=np.int64) for n in names}


def _timed_runs(
    model_path: str, profile_json: dict, feed: dict[str, np.ndarray], settings: LatencySettings
) -> tuple[list[float], float, list[str], dict]:
    profile = Profile(**profile_json)
    session = create_session(model_path, profile)
    run = make_runner(session, feed, io_binding=profile.device == "cuda" or settings.io_binding)
    # CUDA picks its kernels (cuDNN/cuBLAS autotuning) during the first runs: warm up longer.
    warmup = max(settings.warmup_runs, CUDA_WARMUP_RUNS) if profile.device == "cuda" else settings.warmup_runs
    for _ in range(warmup):
        run()
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1000.0)
        elapsed = time.perf_counter() - start
        enough = len(times) >= settings.min_runs and elapsed >= settings.min_seconds
        if enough or elapsed >= settings.max_seconds:
            break
    extra = {"gpu_memory_mb": gpu_memory_mb()} if profile.device == "cuda" else {}
    return times, peak_rss_mb(), session.get_providers(), extra


def make_runner(session: ort.InferenceSession, feed: dict[str, np.ndarray], io_binding: bool):
    """A no-argument callable that runs one batch.

    With IO binding the inputs are copied to the session's device once and the outputs stay
    there, so the timing is the model's, not the host<->device copies'; `synchronize_*` makes
    the timer wait for the device (CUDA runs asynchronously).
    """
    if not io_binding:
        return lambda: session.run(None, feed)
    device = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"
    binding = session.io_binding()
    for name, array in feed.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, device, 0))
    for output in session.get_outputs():
        binding.bind_output(output.name, device)

    def run() -> None:
        binding.synchronize_inputs()
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
    return run


def gpu_memory_mb(pid: int | None = None) -> float | None:
    """GPU memory held by this process, from nvidia-smi (None where it is not available)."""
    import os

    pid = pid or os.getpid()
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid):
            return float(parts[1])
    return None


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss
    over from the parent across fork+exec, which would count the trainer's memory."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    scale = 1024.0 if sys.platform != "darwin" else 1024.0 * 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def measure_latency(
    model_path: str | Path,
    profile: Profile,
    feed: dict[str, np.ndarray],
    settings: LatencySettings | None = None,
    isolated: bool = True,
) -> LatencyResult:
    """Latency of one batch (`feed`, already at the profile's batch and length) on the profile.

    `isolated` runs it in a fresh process so peak RSS belongs to the session alone.
    """
    settings = settings or LatencySettings()
    if isolated:
        times, peak_mb, providers, extra = _run_isolated(model_path, profile, feed, settings)
    else:
        times, peak_mb, providers, extra = _timed_runs(str(model_path), profile.model_dump(), feed, settings)
    arr = np.asarray(times)
    batch, seq = next(iter(feed.values())).shape[:2]
    p50 = float(np.percentile(arr, 50))
    return LatencyResult(
        p50_ms=p50,
        p90_ms=float(np.percentile(arr, 90)),
        p99_ms=float(np.percentile(arr, 99)),
        mean_ms=float(arr.mean()),
        runs=len(times),
        batch_size=int(batch),
        sequence_length=int(seq),
        throughput_items_per_s=float(batch * 1000.0 / p50),
        peak_rss_mb=float(peak_mb),
        providers=providers,
        threads=profile.threads,
        **extra,
    )


def _run_isolated(
    model_path: str | Path, profile: Profile, feed: dict[str, np.ndarray], settings: LatencySettings
) -> tuple[list[float], float, list[str], dict]:
    """Run `_timed_runs` in a fresh interpreter (`python -m edgetune.measure.latency`), not a fork:
    nothing of the caller's memory or main module comes along."""
    with tempfile.TemporaryDirectory(prefix="edgetune-bench-") as tmp:
        np.savez(Path(tmp) / "feed.npz", **feed)
        request = {"model": str(model_path), "profile": profile.model_dump(),
                   "settings": asdict(settings), "feed": str(Path(tmp) / "feed.npz"),
                   "result": str(Path(tmp) / "result.json")}
        (Path(tmp) / "request.json").write_text(json.dumps(request))
        proc = subprocess.run([sys.executable, "-m", "edgetune.measure.latency", str(Path(tmp) / "request.json")],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"the latency worker failed: {tail}")
        result = json.loads((Path(tmp) / "result.json").read_text())
    return result["times"], result["peak_rss_mb"], result["providers"], result["extra"]


def _worker(request_path: str) -> None:
    request = json.loads(Path(request_path).read_text())
    with np.load(request["feed"]) as data:
        feed = {k: data[k] for k in data.files}
    times, peak_mb, providers, extra = _timed_runs(request["model"], request["profile"], feed,
                                                   LatencySettings(**request["settings"]))
    Path(request["result"]).write_text(json.dumps(
        {"times": times, "peak_rss_mb": peak_mb, "providers": providers, "extra": extra}))


if __name__ == "__main__":
    _worker(sys.argv[1])
