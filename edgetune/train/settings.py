"""The fine-tuning loop's knobs, apart from the loop: configs and the CLI read them without
importing torch or transformers (so `edgetune serve` and `predict` start light)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from edgetune.profiles import Profile

Scheduler = Literal["linear", "cosine", "plateau"]
DEFAULT_EPOCHS = 3.0  # when epochs are not given, unless a time budget alone sets the length


class TrainConfig(BaseModel):
    """Every knob of the fine-tuning loop; a section of the recipe, serialised into the report."""

    model_config = ConfigDict(extra="forbid")

    epochs: float | None = Field(
        None,
        gt=0,
        description="None: 3, or with a time budget (and no max_steps) until early "
        "stopping or the budget ends",
    )
    max_steps: int = Field(-1, description="stop after N steps (-1: no limit)")
    max_train_minutes: float | None = Field(None, gt=0)
    learning_rate: float | Literal["auto"] = Field(
        "auto", description="a number, or auto: an LR range test picks it (train/lr_find.py)"
    )
    max_auto_learning_rate: float | None = Field(
        1e-4,
        gt=0,
        description="the ceiling on the LR range test's choice (None: none); a higher "
        "choice fine-tuning pretrained weights diverged on SST-2 (benchmarks/RESULTS.md)",
    )
    batch_size: int | Literal["auto"] = Field(
        "auto",
        description="a number (lowered if it does not fit), or auto: the smallest that "
        "reaches the best examples/s, measured (train/batch_size.py)",
    )
    auto_find_batch_size: bool = True
    scheduler: Scheduler = "linear"
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    eval_steps: int | None = Field(
        None,
        ge=1,
        description="None: every epoch (4 times an epoch when training until early "
        "stopping), at most 500 steps apart",
    )
    early_stopping_patience: int = Field(3, ge=1)
    early_stopping_min_delta: float = Field(0.0, ge=0)
    metric: Literal["accuracy", "macro_f1"] = "accuracy"
    max_length: int | None = Field(None, ge=8, description="None: the profile's sequence length")
    seed: int = 42
    max_train_samples: int | None = Field(None, ge=1)
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast where the device computes bf16 natively"
    )
    group_by_length: bool = Field(True, description="batches of similar length: less padding")
    image_size: int | None = Field(
        None,
        ge=8,
        description="image models: the side images are "
        "resized to (None: the image processor's own; tune sets the profile's)",
    )

    clip_seconds: float | None = Field(
        None, gt=0, description="audio models: the clip length (tune sets the profile's)"
    )

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size(cls, value: object) -> object:
        """One message for every bad value (not one per branch of `int | "auto"`)."""
        if value == "auto":
            return value
        try:
            number = int(value) if not isinstance(value, float) or value.is_integer() else None
        except (TypeError, ValueError):
            number = None
        if number is None or number < 1:
            raise ValueError(f"'{value}' is not a batch size: give a whole number >= 1 or auto")
        return number

    @property
    def until_no_gain(self) -> bool:
        """A time budget and no epochs or steps: train while validation improves, in the budget."""
        return bool(self.max_train_minutes) and self.epochs is None and self.max_steps <= 0

    @property
    def planned_epochs(self) -> float:
        return self.epochs if self.epochs is not None else DEFAULT_EPOCHS

    def for_profile(self, profile: Profile) -> TrainConfig:
        """This config with the input shape the profile deploys where unset: `max_length` its
        sequence length, `image_size` its image side (None for a text profile)."""
        return self.model_copy(
            update={
                "max_length": self.max_length or profile.sequence_length,
                "image_size": self.image_size or profile.image_size,
                "clip_seconds": self.clip_seconds or profile.clip_seconds,
            }
        )
