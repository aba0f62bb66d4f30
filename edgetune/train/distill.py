"""Knowledge distillation inside the same `Trainer` loop as fine-tuning."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import Trainer


@dataclass
class DistillConfig:
    """Knowledge distillation from a teacher's logits (softened by `temperature`)."""

    temperature: float = 2.0
    alpha: float = 0.7  # weight of the distillation loss; 1 - alpha goes to the labels


class DistillationTrainer(Trainer):
    """`Trainer` whose loss mixes cross-entropy on labels with KL to the teacher's logits."""

    def __init__(self, *args, teacher, distill: DistillConfig, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.eval()
        self.distill = distill

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        import torch
        import torch.nn.functional as F

        outputs = model(**inputs)
        with torch.no_grad():
            self.teacher.to(outputs.logits.device)
            teacher_logits = self.teacher(**inputs).logits
        t = self.distill.temperature
        kd = F.kl_div(F.log_softmax(outputs.logits / t, dim=-1), F.softmax(teacher_logits / t, dim=-1),
                      reduction="batchmean") * t * t
        loss = self.distill.alpha * kd + (1.0 - self.distill.alpha) * outputs.loss
        return (loss, outputs) if return_outputs else loss
