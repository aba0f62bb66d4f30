"""What this machine's CPU is and can do, read from /proc/cpuinfo: asked by training
(bf16), quantization (VNNI) and the report's notes alike; and the fingerprint every latency
carries, so that a number says which machine it was measured on."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from functools import cache
from pathlib import Path

VNNI_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}


def cpu_flags() -> set[str]:
    """CPU feature flags (Linux /proc/cpuinfo); empty where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo); empty where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""


def usable_cores() -> int:
    """The cores this process may run on (a `taskset` or container limit counts)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@cache
def fingerprint() -> dict:
    """This machine as a latency depends on it: CPU model and flags, usable cores, memory,
    OS and architecture, the onnxruntime version and its providers. `id` names the whole."""
    import onnxruntime as ort
    import psutil

    found = {
        "cpu": cpu_model(),
        "flags": sorted(cpu_flags()),
        "cores": usable_cores(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
    }
    return {"id": machine_id(found), **found}


def machine_id(found: dict) -> str:
    """A short digest of a fingerprint (without its own `id`): equal ids, same machine kind."""
    body = json.dumps({k: v for k, v in found.items() if k != "id"}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def describe(found: dict) -> str:
    """One line: `AMD EPYC, 2 cores, 24.0 GB, x86_64 Linux 6.1, onnxruntime 1.32.0 [id]`."""
    return (
        f"{found.get('cpu') or 'unknown CPU'}, {found.get('cores')} cores, "
        f"{found.get('memory_gb')} GB, {found.get('arch')} {found.get('os')}, "
        f"onnxruntime {found.get('onnxruntime')} [{found.get('id')}]"
    )
