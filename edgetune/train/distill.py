"""Knowledge distillation inside the same `Trainer` loop as fine-tuning.

The loss mixes cross-entropy on the labels with KL to the teacher's softened logits and,
layer-wise, the MSE between the student's hidden states and those of the teacher layers it
was made from (`layer_map`: which teacher layer each student layer came from, as the
layer-drop pass recorded it), and optionally between attention distributions where a layer
kept all its heads. `hidden_weight = attention_weight = 0` is logits-only distillation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from transformers import Trainer
from transformers.modeling_outputs import SequenceClassifierOutput

LOG = logging.getLogger(__name__)


@dataclass
class DistillConfig:
    temperature: float = 2.0
    alpha: float = 0.7  # weight of the logits KL; 1 - alpha goes to the labels
    hidden_weight: float = 1.0  # MSE of hidden states, per mapped layer (0: off)
    attention_weight: float = 0.0  # MSE of attention maps where heads match (0: off)
    layer_map: list[int] | None = None  # student layer i <- teacher layer layer_map[i]

    @classmethod
    def named(cls, kind: str, layer_map: list[int] | None = None) -> DistillConfig:
        """`layerwise` (default) or `logits` (KL on logits only, for comparison)."""
        if kind == "logits":
            return cls(hidden_weight=0.0, attention_weight=0.0, layer_map=layer_map)
        return cls(layer_map=layer_map)


def default_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Evenly spaced teacher layers, ending at the last one (identity when equal)."""
    return [round((i + 1) * teacher_layers / student_layers) - 1 for i in range(student_layers)]


def _masked_mse(student, teacher, mask):
    """Mean squared error over the positions `mask` keeps ([B, T] -> broadcast)."""
    weight = mask.to(student.dtype)
    while weight.dim() < student.dim():
        weight = weight.unsqueeze(-1)
    per_position = ((student - teacher) ** 2 * weight).sum()
    return per_position / (weight.expand_as(student).sum().clamp(min=1.0))


class DistillationTrainer(Trainer):
    """`Trainer` whose loss is the distillation loss above."""

    def __init__(self, *args, teacher, distill: DistillConfig, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.eval()
        self.distill = distill
        self._warned = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        import torch
        import torch.nn.functional as F

        d = self.distill
        hidden, attention = d.hidden_weight > 0, d.attention_weight > 0
        # Only the outputs asked for: CNN image models take no `output_attentions` at all.
        asked = {
            k: True
            for k, on in (("output_hidden_states", hidden), ("output_attentions", attention))
            if on
        }
        outputs = model(**inputs, **asked)
        with torch.no_grad():
            self.teacher.to(outputs.logits.device)
            taught = self.teacher(**inputs, **asked)
        t = d.temperature
        kd = (
            F.kl_div(
                F.log_softmax(outputs.logits / t, dim=-1),
                F.softmax(taught.logits / t, dim=-1),
                reduction="batchmean",
            )
            * t
            * t
        )
        loss = d.alpha * kd + (1.0 - d.alpha) * outputs.loss
        if hidden or attention:
            loss = loss + self._layer_loss(outputs, taught, inputs.get("attention_mask"))
        # Evaluation reads the logits only: drop hidden states and attentions from the outputs.
        return (loss, SequenceClassifierOutput(logits=outputs.logits)) if return_outputs else loss

    def _layer_loss(self, outputs, taught, mask):
        import torch

        d = self.distill
        student_layers = len(outputs.hidden_states or outputs.attentions) - (
            1 if outputs.hidden_states else 0
        )
        teacher_layers = len(taught.hidden_states or taught.attentions) - (
            1 if taught.hidden_states else 0
        )
        mapping = d.layer_map or default_layer_map(student_layers, teacher_layers)
        if mask is None:
            mask = torch.ones(outputs.logits.shape[0], 1, device=outputs.logits.device)
        total = outputs.logits.new_zeros(())
        for i, j in enumerate(mapping):
            if d.hidden_weight > 0:
                s, te = outputs.hidden_states[i + 1], taught.hidden_states[j + 1]
                if s.shape[-1] == te.shape[-1]:
                    total = total + d.hidden_weight * _masked_mse(s, te, mask) / len(mapping)
                elif not self._warned:
                    self._warned = True
                    LOG.warning(
                        "hidden sizes differ (%d vs %d): hidden-state distillation skipped",
                        s.shape[-1],
                        te.shape[-1],
                    )
            if d.attention_weight > 0:
                s, te = outputs.attentions[i], taught.attentions[j]
                if s.shape == te.shape:  # this layer kept all its heads
                    pair = mask[:, None, :, None] * mask[:, None, None, :]
                    total = total + d.attention_weight * _masked_mse(s, te, pair) / len(mapping)
        return total
