"""The INT8 settings that follow from what the CPU can do (`edgetune.hardware`)."""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass

from edgetune.hardware import VNNI_FLAGS, cpu_flags


@dataclass
class QuantizationChoice:
    mode: str
    per_channel: bool
    reduce_range: bool
    weight_type: str
    reason: str

    def to_json(self) -> dict:
        return asdict(self)


def choose_dynamic_int8(
    flags: set[str] | None = None, machine: str | None = None, per_channel: bool = True
) -> QuantizationChoice:
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
    return QuantizationChoice(
        "dynamic-int8", per_channel, reduce, "int8", f"{why}; {scope} weights"
    )
