"""Never offer a compressed model that is slower than plain fp32 without saying so, and why.

"Slower" only counts when the two p90 intervals do not overlap; the explanation reads this
machine's CPU features instead of guessing them.
"""

from __future__ import annotations

from edgetune.hardware import VNNI_FLAGS, cpu_flags, cpu_model
from edgetune.search.record import Candidate


def explain_slowdown(
    precision: str, flags: set[str], model: str, ops: set[str] = frozenset()
) -> str:
    """Why a mode of this precision can be slower than fp32 on this CPU (facts first; `ops`:
    the candidate graph's op types, when known)."""
    cpu = f"{model}: " if model else ""
    if precision == "int8" and "ConvInteger" in ops:
        return (
            "its convolutions became ConvInteger (dynamic INT8), which ONNX Runtime runs "
            "without an optimised CPU kernel; static INT8 (QDQ) quantizes convolutions well"
        )
    if precision == "int8":
        vnni = sorted(VNNI_FLAGS & flags)
        if vnni:
            return (
                f"{cpu}has {', '.join(vnni)}, so fast int8 kernels exist here; the (de)quantize "
                "steps around them cost more than the int8 matmuls save at this batch and length"
            )
        return (
            f"{cpu}no VNNI ({'/'.join(sorted(VNNI_FLAGS))} absent from the CPU flags): int8 "
            "matmuls take the slower u8s8 path, plus the (de)quantize steps"
        )
    if precision == "fp16":
        native = sorted({"avx512_fp16", "amx_fp16"} & flags)
        return (
            f"{cpu}{'has ' + ', '.join(native) if native else 'no native fp16 arithmetic'}; "
            "ONNX Runtime's CPU kernels cast fp16 back and forth"
        )
    if precision == "int4":
        return (
            "MatMulNBits unpacks 4-bit weights block by block; at small batch that saves "
            "memory and size, not time"
        )
    return (
        "ONNX Runtime already applies these fusions when it loads the plain model "
        "(ORT_ENABLE_ALL), so offline fusion buys nothing here"
    )


def note_slower_than_fp32(
    candidates: list[Candidate], flags: set[str] | None = None, model: str | None = None
) -> None:
    fp32 = next((c for c in candidates if c.name == "fp32"), None)
    if fp32 is None or fp32.latency is None:
        return
    flags = cpu_flags() if flags is None else flags
    model = cpu_model() if model is None else model
    ref = fp32.latency
    for c in candidates:
        lat = c.latency
        if c is fp32 or lat is None or lat.p90_ms <= ref.p90_ms:
            continue
        if lat.p90_ci and ref.p90_ci and lat.p90_ci[0] <= ref.p90_ci[1]:
            continue  # the intervals overlap: not shown to be slower
        ratio = lat.p90_ms / ref.p90_ms
        c.notes.append(
            f"slower than fp32 ({ratio:.2f}x p90, intervals apart): "
            f"{explain_slowdown(c.precision, flags, model, _op_types(c.model_path))}"
        )


def _op_types(model_path: str) -> set[str]:
    import onnx

    try:
        return {n.op_type for n in onnx.load(str(model_path), load_external_data=False).graph.node}
    except Exception:  # noqa: BLE001 - a note is not worth failing a run over
        return set()
