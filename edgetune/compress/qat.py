"""Quantization-aware recovery: train with the rounding that static INT8 will apply, so that the
weights learn to live with it, then hand the model to ONNX Runtime's static QDQ quantizer.

Every `nn.Linear` becomes a `QatLinear` in place (the class is swapped; parameters, names and
`state_dict` keys stay those of a plain transformers model, so checkpoints save and reload as
usual). Its forward rounds what ORT's static QDQ pass rounds for that MatMul/Gemm: the input and
the output per tensor to uint8 (asymmetric, the range widened to hold 0; a MatMul's output before
its bias, a Gemm's after) and the weight per output channel to int8 (symmetric, [-127, 127], or
[-64, 64] where the CPU lacks VNNI and ORT reduces the range), with straight-through gradients
(`torch.fake_quantize_*`). The products of two
activations (attention scores and context) are not rounded here, and the QDQ export leaves them
in fp32 (`static-int8` with `activation_products=False`): they hold a few percent of the MACs
and, on the demo, the largest share of Percentile's added noise (benchmarks/RESULTS.md).

Input ranges follow an exponential moving average of each batch's min/max while training; before
export, `calibrate` sets them to the min/max over the calibration batches, as ORT's MinMax
calibrator does on the same batches, so the fake-quantized PyTorch model is the QDQ model's twin.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATION_RANGE = (0, 255)  # uint8, asymmetric
EMA = 0.9  # weight of the running range against each training batch's own


def weight_range(reduce_range: bool) -> tuple[int, int]:
    """ORT's symmetric int8 weight range: [-127, 127], or [-64, 64] with reduce_range."""
    return (-64, 64) if reduce_range else (-127, 127)


class Range:
    """A tensor's observed range and its uint8 rounding (ORT's asymmetric activation scheme)."""

    def __init__(self) -> None:
        self.low: float | None = None
        self.high: float | None = None

    def observe(self, x: torch.Tensor, calibrating: bool) -> None:
        low, high = float(x.min()), float(x.max())
        if self.low is None:
            self.low, self.high = low, high
        elif calibrating:  # MinMax over every calibration batch
            self.low, self.high = min(self.low, low), max(self.high, high)
        else:
            self.low = EMA * self.low + (1 - EMA) * low
            self.high = EMA * self.high + (1 - EMA) * high

    def round(self, x: torch.Tensor, calibrating: bool = False) -> torch.Tensor:
        if calibrating:  # ranges are taken on the unrounded model, as ORT calibrates fp32
            return x
        qmin, qmax = ACTIVATION_RANGE
        low, high = min(self.low, 0.0), max(self.high, 0.0)
        scale = max((high - low) / (qmax - qmin), torch.finfo(torch.float32).tiny)
        zero_point = round(qmin - low / scale)
        rounded = torch.fake_quantize_per_tensor_affine(x.float(), scale, zero_point, qmin, qmax)
        return rounded.to(x.dtype)  # bf16 under autocast: rounded in fp32, as ORT rounds


class QatLinear(nn.Linear):
    """An `nn.Linear` rounded where static INT8 QDQ rounds it: its input, its weight and its
    product (ORT quantizes a MatMul's output before the bias Add, a Gemm's after its bias)."""

    weight_limits: tuple[int, int]
    ranges: dict[str, Range]  # "input", "output": plain attributes, not in the state_dict
    calibrating: bool
    round_input: bool  # False: a QatLayerNorm rounded it already

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        observe = self.training or self.calibrating or self.ranges["output"].low is None
        if observe and self.round_input:
            self.ranges["input"].observe(x.detach(), self.calibrating)
        if self.round_input:
            x = self.ranges["input"].round(x, self.calibrating)
        gemm = x.dim() == 2  # exported as one Gemm; a batch of sequences as MatMul + Add
        y = F.linear(
            x,
            self.weight if self.calibrating else self._round_weight(),
            self.bias if gemm else None,
        )
        if observe:
            self.ranges["output"].observe(y.detach(), self.calibrating)
        y = self.ranges["output"].round(y, self.calibrating)
        return y if gemm or self.bias is None else y + self.bias

    def _round_weight(self) -> torch.Tensor:
        qmin, qmax = self.weight_limits
        absmax = self.weight.detach().abs().amax(dim=1).clamp(min=1e-12)
        scale = (2 * absmax / (qmax - qmin)).float()
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(self.weight, scale, zero_point, 0, qmin, qmax)


class QatLayerNorm(nn.LayerNorm):
    """A LayerNorm whose output feeds a Linear: ORT rounds that tensor once, for every consumer
    (the residual Add included), so it is rounded here, and the Linear reads it as it is."""

    ranges: dict[str, Range]
    calibrating: bool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if self.training or self.calibrating or self.ranges["output"].low is None:
            self.ranges["output"].observe(y.detach(), self.calibrating)
        return self.ranges["output"].round(y, self.calibrating)


def prepare(model: nn.Module, reduce_range: bool) -> nn.Module:
    """Every `nn.Linear` of `model` rounded as static INT8 will round it (in place); a
    LayerNorm whose output a Linear reads is rounded at the LayerNorm (`QatLayerNorm`)."""
    norms = _norms_feeding_linears(model)
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = QatLinear
            module.weight_limits = weight_range(reduce_range)
            module.round_input = id(module) not in norms["linears"]
        elif id(module) in norms["norms"]:
            module.__class__ = QatLayerNorm
        else:
            continue
        module.ranges = {"input": Range(), "output": Range()}
        module.calibrating = False
    return model


@torch.no_grad()
def _norms_feeding_linears(model: nn.Module) -> dict[str, set[int]]:
    """The LayerNorms whose output tensor a Linear reads as its input, found on the model's
    dummy inputs (ids of the modules; none found where the model takes no dummy input)."""
    made: dict[int, tuple[nn.Module, torch.Tensor]] = {}
    found: dict[str, set[int]] = {"norms": set(), "linears": set()}

    def record(module, args, output):
        made[id(output)] = (module, output)  # the tensor kept alive: its id stays its own

    def match(module, args):
        if args and id(args[0]) in made:
            found["norms"].add(id(made[id(args[0])][0]))
            found["linears"].add(id(module))

    hooks = [
        m.register_forward_hook(record) for m in model.modules() if isinstance(m, nn.LayerNorm)
    ]
    hooks += [m.register_forward_pre_hook(match) for m in model.modules() if type(m) is nn.Linear]
    was_training = model.training
    try:
        model.eval()
        model(**model.dummy_inputs)
    except (AttributeError, TypeError, ValueError, RuntimeError):
        found = {"norms": set(), "linears": set()}  # rounded at each Linear's input instead
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return found


def layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (QatLinear, QatLayerNorm))]


@torch.no_grad()
def calibrate(model: nn.Module, batches: list[dict]) -> None:
    """Input ranges set to the min/max over `batches` (numpy or torch), as ORT's MinMax sets
    them: the model then rounds as its QDQ export will."""
    model.eval()
    for layer in layers(model):
        layer.ranges = {"input": Range(), "output": Range()}
        layer.calibrating = True
    try:
        for batch in batches:
            model(**{k: torch.as_tensor(v) for k, v in batch.items()})
    finally:
        for layer in layers(model):
            layer.calibrating = False


def strip(model: nn.Module) -> nn.Module:
    """Back to plain `nn.Linear` layers (the trained weights kept), for the fp32 export that
    the static QDQ pass then quantizes."""
    for layer in layers(model):
        layer.__class__ = nn.Linear if isinstance(layer, QatLinear) else nn.LayerNorm
        for name in ("weight_limits", "ranges", "calibrating", "round_input"):
            if name in layer.__dict__:
                delattr(layer, name)
    return model
