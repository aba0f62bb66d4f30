"""One measured system in a process of its own: `python -m edgetune.measure.worker`.

It loads one session, warms it up, then waits on stdin for slices to run, so the parent can
interleave many systems round by round while nothing but ONNX Runtime runs in each measuring
process, and each process's peak RSS is its own session's. One JSON object per line, each way:

    {"op": "load", "model": ..., "profile": {...}, "session": {...} | null, "feeds": "x.npz",
     "io_binding": false, "warmup": 10}
    {"op": "run", "feed": "fixed" | "traffic", "runs": 5, "seconds": 0.3}  -> {"times": [...]}
    {"op": "stats"}                                                      -> {"peak_rss_mb": ...}
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from edgetune.measure.park import die_with_parent
from edgetune.measure.session import (
    SessionSettings,
    create_session,
    gpu_memory_mb,
    make_runner,
    peak_rss_mb,
)
from edgetune.profiles import Profile

CUDA_WARMUP_RUNS = 50


def load_feeds(path: str) -> dict[str, list[dict[str, np.ndarray]]]:
    """`fixed/0/input_ids`-style keys -> {"fixed": [feed], "traffic": [feed, ...]}."""
    feeds: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    with np.load(path) as data:
        for key in data.files:
            kind, index, name = key.split("/")
            feeds.setdefault(kind, {}).setdefault(int(index), {})[name] = data[key]
    return {kind: [by_index[i] for i in sorted(by_index)] for kind, by_index in feeds.items()}


def save_feeds(path: str, feeds: dict[str, list[dict[str, np.ndarray]]]) -> None:
    np.savez(
        path,
        **{
            f"{kind}/{i}/{name}": array
            for kind, batches in feeds.items()
            for i, batch in enumerate(batches)
            for name, array in batch.items()
        },
    )


class Measured:
    def __init__(self, request: dict):
        self.profile = Profile(**request["profile"])
        settings = SessionSettings.model_validate(request.get("session") or {})
        self.session = create_session(request["model"], self.profile, settings)
        names = [i.name for i in self.session.get_inputs()]
        io_binding = self.profile.device == "cuda" or request.get("io_binding", False)
        self.runners = {
            kind: [make_runner(self.session, {n: b[n] for n in names}, io_binding) for b in batches]
            for kind, batches in load_feeds(request["feeds"]).items()
        }
        self.cursor = 0
        warmup = request.get("warmup", 10)
        if self.profile.device == "cuda":  # cuDNN/cuBLAS pick their kernels in the first runs
            warmup = max(warmup, CUDA_WARMUP_RUNS)
        for i in range(warmup):
            self.runners["fixed"][0]()
            for run in self.runners.get("traffic", [])[i::warmup]:
                run()

    def run(self, feed: str, runs: int, seconds: float) -> list[float]:
        """At least `runs` runs and `seconds` seconds; traffic batches are taken in turn."""
        runners = self.runners[feed]
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < runs or time.perf_counter() - start < seconds:
            run = runners[self.cursor % len(runners)] if feed == "traffic" else runners[0]
            self.cursor += feed == "traffic"
            t0 = time.perf_counter()
            run()
            times.append((time.perf_counter() - t0) * 1000.0)
        return times

    def stats(self) -> dict:
        gpu = gpu_memory_mb() if self.profile.device == "cuda" else None
        return {
            "peak_rss_mb": peak_rss_mb(),
            "providers": self.session.get_providers(),
            "gpu_memory_mb": gpu,
        }


def serve(stdin=sys.stdin, stdout=sys.stdout) -> None:
    measured: Measured | None = None
    for line in stdin:
        request = json.loads(line)
        try:
            if request["op"] == "load":
                measured = Measured(request)
                reply: dict = {"ok": True}
            elif request["op"] == "run":
                reply = {
                    "times": measured.run(request["feed"], request["runs"], request["seconds"])
                }
            else:
                reply = measured.stats()
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            reply = {
                "error": f"{exc.__class__.__name__}: {first_line}",
                "input_error": exc.__class__.__name__ == "InputError",
            }
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


if __name__ == "__main__":
    die_with_parent()  # the parent pauses it between slices (measure/park.py)
    serve()
