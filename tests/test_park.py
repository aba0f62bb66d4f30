"""Idle measuring workers are paused between their slices (measure/park.py): a paused process
uses no CPU until resumed, and a worker left paused by a parent that died does not linger."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from edgetune.measure import park

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGSTOP, prctl")


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def test_a_paused_process_uses_no_cpu_until_it_is_resumed():
    spinning = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        park.pause(spinning.pid)
        deadline = time.monotonic() + 5  # the signal is delivered asynchronously
        while psutil.Process(spinning.pid).status() != psutil.STATUS_STOPPED:
            assert time.monotonic() < deadline, "SIGSTOP did not stop the process"
            time.sleep(0.01)
        before = cpu_seconds(spinning.pid)
        time.sleep(0.3)
        assert cpu_seconds(spinning.pid) - before < 0.02
        park.resume(spinning.pid)
        deadline = time.monotonic() + 5  # on busy cores it may wait for a turn
        while cpu_seconds(spinning.pid) - before < 0.1:
            assert time.monotonic() < deadline, "the resumed process used no CPU"
            time.sleep(0.05)
    finally:
        spinning.kill()
        spinning.wait()


PARENT = """
import subprocess, sys
from edgetune.measure import park
worker = subprocess.Popen(
    [sys.executable, "-m", "edgetune.measure.worker"],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
)
worker.stdin.write('{"op": "stats"}\\n')
worker.stdin.flush()
worker.stdout.readline()  # it answers from its loop, so its parent-death signal is set
park.pause(worker.pid)
print(worker.pid, flush=True)
"""


def test_a_paused_worker_dies_with_its_parent():
    done = subprocess.run(
        [sys.executable, "-c", PARENT], capture_output=True, text=True, timeout=60, check=True
    )
    pid = int(done.stdout.split()[0])
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    assert not alive, "the paused worker outlived its parent"
