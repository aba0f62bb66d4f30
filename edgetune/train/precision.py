"""What training computes in: bf16 where the device does it natively, fp32 elsewhere."""

from __future__ import annotations

import numpy as np

from edgetune.measure.bench import stack_logits


def training_precision(asked: str) -> tuple[bool, str]:
    """bf16 autocast where the device computes bf16 natively (CUDA with bf16, or a CPU with
    AVX-512 BF16 / AMX), fp32 elsewhere; the reason says which flags were read."""
    import torch

    from edgetune.hardware import cpu_flags

    if asked == "fp32":
        return False, "fp32 (asked)"
    if torch.cuda.is_available():
        native = torch.cuda.is_bf16_supported()
        return native, "bf16 (CUDA)" if native else "fp32 (this GPU has no bf16)"
    found = sorted({"avx512_bf16", "amx_bf16"} & cpu_flags())
    if found:
        return True, f"bf16 autocast (CPU has {', '.join(found)})"
    if asked == "bf16":
        return True, "bf16 autocast (asked; this CPU has no native bf16, so it may be slower)"
    return False, "fp32 (CPU flags have no avx512_bf16/amx_bf16)"


def fp32_logits(model, batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    """The model's logits on numpy `batches` in plain fp32 (no autocast), batch by batch."""
    import torch

    model.eval()
    device = next(model.parameters()).device  # plain nn.Modules have no `.device`
    outputs = []
    with torch.inference_mode():
        for batch in batches:
            feed = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
            outputs.append(model(**feed).logits.float().cpu().numpy())
    return stack_logits(outputs)
