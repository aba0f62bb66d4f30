"""What the CPU can do, read from its flags, and the INT8 settings that follow from it."""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from pathlib import Path

VNNI_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}


@dataclass
class QuantizationChoice:
    mode: str
    per_channel: bool
    reduce_range: bool
    weight_type: str
    reason: str

    def to_json(self) -> dict:
        return asdict(self)


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


def choose_dynamic_int8(flags: set[str] | None = None, machine: str | None = None,
                        per_channel: bool = True) -> QuantizationChoice:
    """Reduce-range only on x86 without VNNI (AVX-512 VNNI, AVX-VNNI, AMX)."""
    flags = cpu_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    vnni = VNNI_FLAGS & flags
    if machine in ("arm64", "aarch64"):
        reduce, why = False, "ARM64: int8 dot-product kernels do not saturate; full 8-bit range"
    elif vnni:
        reduce, why = False, f"x86 with {min(vnni)}: VNNI int8 kernels, full 8-bit range"
    else:
        have = "avx512" if "avx512f" in flags else ("avx2" if "avx2" in flags else "no AVX2")
        reduce, why = True, f"x86 {have} without VNNI: reduce_range avoids u8s8 saturation"
    scope = "per-channel" if per_channel else "per-tensor"
    return QuantizationChoice("dynamic-int8", per_channel, reduce, "int8", f"{why}; {scope} weights")
