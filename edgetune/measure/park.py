"""Idle measuring workers are paused, so the system being timed has the cores to itself.

ONNX Runtime's pool threads spin after a run (`allow_spinning`, its default and what a deployed
session does): about 60 ms of one core here after each slice. Side by side, the worker that has
just finished its slice spun on while the next system ran, and on a 2-core box that doubled the
next system's p90: MiniLM dynamic INT8 at 128 tokens, four systems side by side, had p90
37-43 ms with the 10 ms pause between slices used before, 21-23 ms with a 200 ms pause, and p50
20.4-21.3 ms throughout (benchmarks/RESULTS.md). Waiting for the threads to park costs ~60 ms a
slice; stopping the process (SIGSTOP) costs nothing, and on SIGCONT its threads carry on as they
were, so each system still runs with its own threads as warm as a deployed session's. Where
there is no SIGSTOP (Windows), a fixed pause instead.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

CAN_PAUSE = hasattr(signal, "SIGSTOP")
FALLBACK_SECONDS = 0.1  # without SIGSTOP: long enough for spinning threads to park


def pause(pid: int) -> None:
    """Stop `pid` (its threads stop spinning at once), or wait for them to park."""
    if CAN_PAUSE:
        os.kill(pid, signal.SIGSTOP)
    else:
        time.sleep(FALLBACK_SECONDS)


def resume(pid: int) -> None:
    if CAN_PAUSE:
        os.kill(pid, signal.SIGCONT)


def die_with_parent() -> None:
    """In a worker: be killed when the parent dies (Linux), so a worker left paused by a parent
    that was killed does not wait forever on a pipe it can no longer read."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
