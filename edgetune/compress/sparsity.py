"""Unstructured magnitude sparsity: zero the smallest weights of every encoder Linear.

It helps *file size after compression* only: dense ONNX Runtime kernels multiply the zeros
all the same, so it does not make inference faster, and the pass says so (`speeds_up`).
Training would fill the zeros in again, so it runs after recovery (`after_training`).
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from edgetune.compress.families import blocks, family_of
from edgetune.compress.passes import PassConfig, PassContext, TorchPass


class SparsityConfig(PassConfig):
    sparsity: float = Field(ge=0.0, lt=1.0, description="share of each Linear's weights zeroed")


class MagnitudeSparsity(TorchPass):
    name = "magnitude-sparsity"
    Config = SparsityConfig
    speeds_up = False
    after_training = True
    description = "zero the smallest weights (size after compression only; no speed-up)"

    def run(self, model: nn.Module, config: SparsityConfig, ctx: PassContext) -> dict:
        zeroed = total = 0
        for layer in blocks(model, family_of(model, self.name)):
            for module in layer.modules():
                if isinstance(module, nn.Linear):
                    w = module.weight.data
                    total += w.numel()
                    k = int(w.numel() * config.sparsity)
                    if k:
                        mask = w.abs() <= w.abs().flatten().kthvalue(k).values
                        zeroed += int(mask.sum())
                        w[mask] = 0.0
        return {"zeroed": zeroed, "of": total}
