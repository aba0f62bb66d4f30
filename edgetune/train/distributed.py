"""Data-parallel training under `torchrun` / `accelerate launch`: who writes, and one LR for all.

The Trainer runs one process per device; only the main process writes checkpoints, bundles
and reports, and the learning rate the main process found is the one every process uses.
"""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def from_main(value):
    """`value` as the main process has it (unchanged when not distributed)."""
    import torch.distributed as dist

    if world_size() == 1 or not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
