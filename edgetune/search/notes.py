"""Never offer a compressed model that is slower than plain fp32 without saying so, and why."""

from __future__ import annotations

from edgetune.search.record import Candidate

SLOWER_REASONS = {
    "fp32": "ONNX Runtime already applies these fusions when it loads the plain model "
            "(ORT_ENABLE_ALL), so offline fusion buys nothing here; the gap is noise or kernel choice",
    "int8": "int8 kernels without VNNI (AVX2 u8s8 path) or (de)quantize nodes left between "
            "ops (QDQ static) cost more than the int8 matmuls save at this batch and length",
    "int4": "MatMulNBits unpacks 4-bit weights block by block; on a CPU at small batch that "
            "saves memory and size, not time",
    "fp16": "most CPUs have no fast fp16 matmul, so ONNX Runtime casts back and forth",
}


def note_slower_than_fp32(candidates: list[Candidate]) -> None:
    fp32 = next((c for c in candidates if c.name == "fp32"), None)
    if fp32 is None:
        return
    for c in candidates:
        if c is not fp32 and c.latency.p90_ms > fp32.latency.p90_ms:
            ratio = c.latency.p90_ms / fp32.latency.p90_ms
            reason = SLOWER_REASONS.get(c.precision, "the compressed graph runs slower kernels here")
            c.notes.append(f"slower than fp32 ({ratio:.2f}x p90): {reason}")
