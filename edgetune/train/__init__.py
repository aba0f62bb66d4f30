"""Stage 2: fine-tuning with transformers' Trainer (and distillation in the same loop)."""
