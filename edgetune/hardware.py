"""What this machine's CPU is and can do, read from /proc/cpuinfo: asked by training
(bf16), quantization (VNNI) and the report's notes alike."""

from __future__ import annotations

import platform
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
