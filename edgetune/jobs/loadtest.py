"""`edgetune loadtest`: capacity at budget of a served bundle, measured over loopback HTTP.

Given a bundle, the server is started here (`edgetune serve` in its own process, on
127.0.0.1 and a free port) and stopped after; given a URL, it must be a loopback one: this
tool sends traffic nowhere else. Writes `loadtest.json` and `loadtest.png` under `out`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from itertools import pairwise
from pathlib import Path
from urllib.parse import urlparse

from edgetune.config import LoadtestConfig
from edgetune.console import console
from edgetune.data.columns import split_text_columns
from edgetune.deploy import READY_LINE as READY
from edgetune.deploy import SAMPLE_TEXTS
from edgetune.deploy.loadtest import LoadTestResult, run_load_test
from edgetune.errors import TUNE_EXTRA, InputError
from edgetune.fsutil import write_json_atomic
from edgetune.netutil import direct_opener, is_loopback_host


def is_loopback(url: str) -> bool:
    return is_loopback_host(urlparse(url).hostname or "")


@contextmanager
def local_server(
    bundle: str,
    extra_args: list[str],
    wait_s: float = 120.0,
    on_process: Callable[[subprocess.Popen], None] = lambda process: None,
) -> Iterator[str]:
    """`edgetune serve BUNDLE` on a free loopback port; yields its URL; SIGTERM on the way out.
    `on_process` gets the server's process (a benchmark reads its memory). `-P`: the current
    folder is not put on the child's `sys.path`, so no file there can stand in for a module."""
    command = [
        sys.executable,
        "-P",
        "-m",
        "edgetune",
        "serve",
        bundle,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        *extra_args,
    ]
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        on_process(process)
        found: list[str] = []

        def read_ready() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                if line.startswith(READY):
                    found.append(line.split()[4])
                    break

        reader = threading.Thread(target=read_ready, daemon=True)
        reader.start()
        reader.join(wait_s)
        try:
            if not found:
                process.kill()
                process.wait()
                errors.seek(0)
                last = (errors.read().strip().splitlines() or ["(no output)"])[-1]
                raise InputError(f"the server for {bundle} did not start: {last}")
            yield found[0]
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _texts(config: LoadtestConfig, pairs: bool) -> list:
    """The texts to send: --texts' column(s), or built-in sentences (paired for a pair model)."""
    if not config.texts:
        return [list(p) for p in pairwise(SAMPLE_TEXTS)] if pairs else SAMPLE_TEXTS
    from edgetune.deploy.runtime import read_rows

    rows, columns, _ = read_rows(Path(config.texts), config.text_column, pairs)
    texts = [[str(r.get(c) or "") for c in columns] for _, r in zip(range(10_000), rows)]
    texts = [t if len(t) == 2 else t[0] for t in texts if all(t)]
    if not texts:
        raise InputError(f"{config.texts}: no texts in column(s) {', '.join(columns)}")
    return texts


def _clips(config: LoadtestConfig) -> list[bytes]:
    """The audio files to send, each as a request's whole body: those under --texts (a folder,
    or one file), or built-in stand-ins (tones and noise, 1 s at 16 kHz, as WAV)."""
    from edgetune.data.waveform import AUDIO_SUFFIXES, sample_clips

    if not config.texts:
        return sample_clips()
    root = Path(config.texts)
    files = [root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []
    clips = [f.read_bytes() for f in files if f.suffix.lower() in AUDIO_SUFFIXES][:1000]
    if not clips:
        raise InputError(
            f"{config.texts}: no audio files ({', '.join(AUDIO_SUFFIXES)}) to send to an "
            "audio bundle; give a folder of clips or leave --texts out"
        )
    return clips


def _inputs(config: LoadtestConfig, bundle: str | None) -> list:
    """What each request carries, by the target's task: audio clips or texts (pairs)."""
    task = _target_task(config, bundle)
    if task == "audio-classification":
        return _clips(config)
    pairs = task == "text-pair-classification" or (
        bundle is None and len(split_text_columns(config.text_column) or []) == 2
    )
    return _texts(config, pairs)


def _filled(item: str | list[str] | bytes) -> bool:
    if isinstance(item, bytes):
        return bool(item)
    return all(text.strip() for text in ([item] if isinstance(item, str) else item))


def _target_task(config: LoadtestConfig, bundle: str | None) -> str | None:
    """The bundle's task, or (for a URL) the one its server reports on /healthz."""
    if bundle is not None:
        from edgetune.deploy.bundle import load_bundle

        return load_bundle(bundle).manifest.task
    return _served_task(config.target)


def _served_task(url: str) -> str | None:
    """The `task` an edgetune server reports on /healthz (None if it says none or is down:
    the load test itself then reports the server's state)."""
    try:
        with direct_opener().open(url.rstrip("/") + "/healthz", timeout=5) as reply:
            return json.loads(reply.read()).get("task")
    except (OSError, ValueError, AttributeError):  # a redirect too: HTTPError is an OSError
        return None


def _budget(config: LoadtestConfig, bundle: str | None) -> tuple[float, str]:
    if config.budget_ms is not None:
        return config.budget_ms, "--budget-ms"
    if config.profile is not None:
        from edgetune.profiles import load_profile

        profile = load_profile(config.profile)
        return profile.latency_budget_ms, f"profile {profile.name}"
    if bundle is None:
        raise InputError("loadtest of a URL needs --budget-ms or --profile (whose budget to hold)")
    from edgetune.deploy.bundle import load_bundle

    profile = load_bundle(bundle).manifest.profile
    return profile.latency_budget_ms, f"the bundle's profile {profile.name}"


def load_test_bundle(bundle: Path, out: Path, texts: list) -> dict:
    """`tune --loadtest`: the chosen bundle's capacity, also written into its manifest; steps
    as long as its profile's `loadtest_step_seconds`."""
    from edgetune.deploy.bundle import MANIFEST_NAME, load_bundle

    manifest = load_bundle(bundle).manifest
    step_seconds = manifest.profile.loadtest_step_seconds
    result = loadtest(
        LoadtestConfig(
            target=str(bundle),
            out=str(out),
            step_seconds=step_seconds,
            max_seconds=30 * step_seconds,
        ),
        texts=[t for t in texts if _filled(t)] or None,
    )
    summary = {
        "capacity_rps": result.capacity_rps,
        "budget_ms": result.budget_ms,
        "single_stream_p90_ms": result.single_stream.p90_ms,
        "saturated_rps": result.saturated.throughput_rps,
        "stopped": result.stopped,
        "notes": result.notes,
        "details": str(out / "loadtest.json"),
    }
    serving = manifest.model_copy(update={"serving": summary})
    write_json_atomic(bundle / MANIFEST_NAME, serving.to_json())
    return summary


def loadtest(config: LoadtestConfig, texts: list | None = None) -> LoadTestResult:
    target = config.target
    is_url = target.startswith(("http://", "https://"))
    if is_url and not is_loopback(target):
        raise InputError(
            f"{target}: loadtest sends traffic to loopback addresses only "
            "(127.0.0.1, ::1, localhost); run it on the server's machine"
        )
    if not is_url and not Path(target).is_dir():
        raise InputError(f"{target}: neither a bundle folder nor an http:// URL")
    budget_ms, budget_from = _budget(config, None if is_url else target)
    texts = texts or _inputs(config, None if is_url else target)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    server = nullcontext(target) if is_url else local_server(target, config.server_args)
    with server as base:
        url = base.rstrip("/") + "/v1/predict"
        console.print(
            f"load test of {url}: p99 budget {budget_ms:g} ms ({budget_from}), "
            f"{config.step_seconds:g} s per step, at most {config.max_seconds:g} s"
        )
        result = run_load_test(
            url,
            texts,
            budget_ms,
            config.concurrency,
            config.step_seconds,
            config.rates,
            config.max_seconds,
            config.max_requests,
            console.print,
        )
    if not is_url:
        result.notes.append(
            f"the server and this load generator shared this machine's {os.cpu_count()} cores"
        )
    plot = importlib.util.find_spec("matplotlib") is not None
    if not plot:
        result.notes.append(f"no loadtest.png: the plot needs matplotlib ({TUNE_EXTRA})")
    write_json_atomic(out / "loadtest.json", result.to_json())
    if plot:
        from edgetune.deploy.plot import plot_load

        plot_load(result, out / "loadtest.png")
    return result
