"""Structured channel pruning for CNN classifiers (images, or a plain audio model's log-mel
features), through Torch-Pruning.

Removing a convolution's output channels means removing the matching input channels of every
layer that reads them (through residual additions, depthwise convolutions, batch norms);
Torch-Pruning's dependency graph finds those groups by tracing the model once, so this pass
only says what to trace, what to leave alone (the classifier) and how much to remove. The
pruned model no longer matches its `config.json`, so it is exported from memory (the bundle's
ONNX file is the deployable artefact; it is checked against this in-memory model).
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from edgetune.compress.passes import PassConfig, PassContext, TorchPass
from edgetune.errors import InputError


class ChannelConfig(PassConfig):
    ratio: float = Field(
        ge=0.0, lt=1.0, description="share of channels removed in every prunable layer"
    )
    round_to: int = Field(
        8, ge=1, description="kept channel counts are multiples of this (kernel-friendly)"
    )


def _classifier(model: nn.Module) -> list[nn.Module]:
    """What must keep its outputs: a transformers model's `classifier`, else the last Linear."""
    head = getattr(model, "classifier", None)
    if head is not None:
        return [m for m in head.modules() if isinstance(m, nn.Linear | nn.Conv2d)] or [head]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InputError(
            f"channel-prune: the {model.config.model_type} model has no classifier head"
        )
    return linears[-1:]


class ChannelPrune(TorchPass):
    name = "channel-prune"
    Config = ChannelConfig
    description = (
        "remove the smallest-norm channel groups of a CNN (Torch-Pruning dependency graph)"
    )

    def run(self, model: nn.Module, config: ChannelConfig, ctx: PassContext) -> dict:
        import torch
        import torch_pruning as tp

        kind = model.config.model_type
        if any("attention" in name for name, _ in model.named_modules()):
            raise InputError(
                f"channel-prune: the {kind} model is a transformer, not a CNN; prune "
                "its layers, heads or FFN neurons instead (--layers/--heads/--ffn)"
            )
        if not any(isinstance(m, nn.Conv1d | nn.Conv2d) for m in model.modules()):
            raise InputError(f"channel-prune: the {kind} model has no convolutions to prune")
        example = _example_input(model, ctx)
        before = sum(p.numel() for p in model.parameters())
        model.eval()
        pruner = tp.pruner.MagnitudePruner(
            model,
            example,
            importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=config.ratio,
            ignored_layers=_classifier(model),
            round_to=config.round_to,
            output_transform=lambda out: out.logits,
        )
        with torch.no_grad():
            pruner.step()
        after = sum(p.numel() for p in model.parameters())
        model.config.edgetune_channel_pruned = True  # its config.json no longer rebuilds it
        return {"params_before": before, "params_after": after}


def _example_input(model: nn.Module, ctx: PassContext):
    import torch

    if ctx.scoring_batches:  # the model's one input (pixels, or a plain model's features)
        return next(iter(ctx.scoring_batches[0].values()))[:1]
    if hasattr(model, "example"):  # a plain PyTorch classifier (`train/plain.py`)
        return model.example()
    size = getattr(model.config, "image_size", 224)
    return torch.randn(1, getattr(model.config, "num_channels", 3), size, size)


def is_channel_pruned(model: nn.Module) -> bool:
    return bool(getattr(model.config, "edgetune_channel_pruned", False))


def trained_in_memory(model: nn.Module) -> nn.Module:
    """The model the Trainer trained, without the mixed-precision wrapper accelerate put on its
    `forward` (left on, the export would compute in bf16)."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model, keep_fp32_wrapper=False).float().eval()
