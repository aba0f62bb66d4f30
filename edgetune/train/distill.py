"""Knowledge distillation inside the same `Trainer` loop as fine-tuning.

The loss mixes cross-entropy on the labels with KL to the teacher's softened logits and,
layer-wise, the MSE between the student's hidden states and those of the teacher layers it
was made from (`layer_map`: which teacher layer each student layer came from, as the
layer-drop pass recorded it), and optionally between attention distributions where a layer
kept all its heads. `hidden_weight = attention_weight = 0` is logits-only distillation.

A student with a narrower residual stream (`hidden-prune`) is compared through a learned linear
projection of its hidden states to the teacher's width, trained with the student. It starts as
the map the pass recorded (`hidden_index`: student channel i is teacher channel
hidden_index[i]), so the kept channels are matched from the first step and the dropped ones are
learned from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import Trainer
from transformers.modeling_outputs import SequenceClassifierOutput


@dataclass
class DistillConfig:
    temperature: float = 2.0
    alpha: float = 0.7  # weight of the logits KL; 1 - alpha goes to the labels
    hidden_weight: float = 1.0  # MSE of hidden states, per mapped layer (0: off)
    attention_weight: float = 0.0  # MSE of attention maps where heads match (0: off)
    layer_map: list[int] | None = None  # student layer i <- teacher layer layer_map[i]
    hidden_index: list[int] | None = None  # student channel i <- teacher channel (hidden-prune)

    @classmethod
    def named(
        cls, kind: str, layer_map: list[int] | None = None, hidden_index: list[int] | None = None
    ) -> DistillConfig:
        """`layerwise` (default) or `logits` (KL on logits only, for comparison)."""
        if kind == "logits":
            return cls(hidden_weight=0.0, attention_weight=0.0, layer_map=layer_map)
        return cls(layer_map=layer_map, hidden_index=hidden_index)


def default_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Evenly spaced teacher layers, ending at the last one (identity when equal)."""
    return [round((i + 1) * teacher_layers / student_layers) - 1 for i in range(student_layers)]


def width_projection(student_width: int, teacher_width: int, hidden_index: list[int] | None):
    """Student hidden states -> the teacher's width; the recorded channel map where there is one
    (identity on the kept channels, zero elsewhere), a default-initialized layer otherwise."""
    import torch
    from torch import nn

    projection = nn.Linear(student_width, teacher_width, bias=False)
    if hidden_index is not None and len(hidden_index) == student_width:
        with torch.no_grad():
            projection.weight.zero_()
            projection.weight[hidden_index, range(student_width)] = 1.0
    return projection


def _logits_kl(student, teacher, temperature: float, labels):
    """KL from the teacher's softened logits, times T^2. Per-token logits (token
    classification) are compared at the labelled positions (first sub-tokens), averaged over
    them; a row's logits over the rows."""
    import torch.nn.functional as F

    t = temperature
    per_class = F.kl_div(
        F.log_softmax(student / t, dim=-1), F.softmax(teacher / t, dim=-1), reduction="none"
    )
    if student.ndim == 3 and labels is not None:
        labelled = (labels != -100).to(per_class.dtype)
        return (per_class.sum(-1) * labelled).sum() / labelled.sum().clamp(min=1.0) * t * t
    return per_class.sum() / student.shape[0] * t * t


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
        self.projection = self._projection_for(self.model, teacher)

    def _projection_for(self, student, teacher):
        """The learned width projection when the residual streams differ in width, else None."""
        widths = [getattr(m.config, "hidden_size", None) for m in (student, teacher)]
        if self.distill.hidden_weight <= 0 or None in widths or widths[0] == widths[1]:
            return None
        return width_projection(*widths, self.distill.hidden_index)

    def create_optimizer(self):
        """Trainer's optimizer, with the width projection's weights trained alongside."""
        optimizer = super().create_optimizer()
        if self.projection is None:
            return optimizer
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        if id(self.projection.weight) not in held:
            self.projection.to(next(self.model.parameters()).device)
            optimizer.add_param_group({"params": [self.projection.weight]})
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        import torch

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
        kd = _logits_kl(outputs.logits, taught.logits, d.temperature, inputs.get("labels"))
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
                if self.projection is not None:
                    s = self.projection(s)
                total = total + d.hidden_weight * _masked_mse(s, te, mask) / len(mapping)
            if d.attention_weight > 0:
                s, te = outputs.attentions[i], taught.attentions[j]
                if s.shape == te.shape:  # this layer kept all its heads
                    pair = mask[:, None, :, None] * mask[:, None, None, :]
                    total = total + d.attention_weight * _masked_mse(s, te, pair) / len(mapping)
        return total
