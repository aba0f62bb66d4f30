"""The pruning search's knobs, apart from the search: the recipe (`config.py`) and the CLI
read them without importing the search or torch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SearchSettings(BaseModel):
    """The pruning search (`tune --prune-search`)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    prune_configs: list[str] | None = Field(
        None,
        description="e.g. [L4, L3-F0.5], each trained unless a broken bound rules it out; "
        "default: a grid searched adaptively and past its edge (search/frontier.py)",
    )
    modes: list[str] = Field(default_factory=lambda: ["optimized-fp32", "dynamic-int8"])
    budget_minutes: float | None = Field(
        None,
        gt=0,
        description="probes + recovery; default: the rest of an hour-long run (at least 10)",
    )
    max_accuracy_drop: float = Field(
        1.0, ge=0, description="points vs the fine-tuned fp32 ONNX model"
    )
    recovery_minutes: float | None = Field(None, gt=0)
    recovery_lr: float | None = Field(None, gt=0)
    importance: Literal["taylor", "magnitude"] = "taylor"
    distillation: Literal["layerwise", "logits"] = Field(
        "layerwise", description="layerwise: logits KL + hidden states of the kept teacher layers"
    )
    stop_margin: float = Field(
        0.5,
        ge=0,
        description="a student stops once it is this many "
        "points above the accuracy bound; its minutes go to the next",
    )
    qat_share: float | None = Field(
        0.3,
        gt=0,
        le=1,
        description="a student whose static INT8 broke the bound (another mode held it) trains "
        "this share of its recovery more with fake quantization (search/qat.py); None: off",
    )
    eval_rows: int | None = Field(
        1000,
        ge=10,
        description="students judge their progress on this many validation rows, "
        "stratified and fixed (None: all); their final accuracy is on all of them",
    )
    executor: Literal["local", "ray"] = Field(
        "local", description="ray: probes and students as Ray tasks (pip install 'edgetune[ray]')"
    )
    ray_address: str | None = Field(
        None, description="auto, HOST:PORT, or None: a local Ray instance"
    )

    def min_accuracy(self, reference: float) -> float:
        """The lowest accuracy a pruned candidate may keep: `reference` less the allowed drop."""
        return reference - self.max_accuracy_drop / 100.0
