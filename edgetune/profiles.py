"""Deployment profiles: what the deployed model must run on and meet.

A profile is a TOML file validated by pydantic. `load_profile` takes a shipped name
(`cpu-edge`) or a path to the user's own file; every error names the file and the field.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgetune.errors import InputError, first_problem

PROFILES_DIR = Path(__file__).parent / "profiles"
Precision = Literal["fp32", "fp16", "int8", "int4"]


class Profile(BaseModel):
    """Where and how the model will be deployed, and what it must meet there."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    device: Literal["cpu", "cuda"] = "cpu"
    execution_providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    intra_op_threads: int = Field(default=0, ge=0, description="0 = all cores")
    batch_size: int = Field(default=1, ge=1)
    sequence_length: int = Field(default=128, ge=8, le=8192)
    latency_budget_ms: float = Field(gt=0, description="p90 latency budget per batch")
    max_model_size_mb: float | None = Field(default=None, gt=0)
    # counted bounds (`measure/counts.py`): checked from the graph, before anything is timed
    max_params_m: float | None = Field(None, gt=0, description="millions of parameters")
    max_gmacs: float | None = Field(
        None, gt=0, description="billions of multiply-accumulates per batch at the profile's shape"
    )
    max_peak_memory_mb: float | None = Field(
        None, gt=0, description="peak activation memory (an estimate from the graph)"
    )
    precisions: list[Precision] = Field(default_factory=lambda: ["fp32", "int8"])
    measure_seconds: float = Field(
        3.0,
        gt=0,
        le=3600,
        description="latency: seconds each model is timed over all rounds (more: tighter "
        "intervals; tests set it low)",
    )
    budget_on: Literal["fixed", "traffic"] = Field(
        "fixed",
        description="fixed: batch x sequence_length padded; traffic: the data's own lengths",
    )
    serve_max_batch: int | None = Field(
        None,
        ge=1,
        description="`serve`: texts one session run may "
        "batch (None: measured at start, deploy/batch_choice.py)",
    )
    serve_max_wait_ms: float = Field(
        2.0, ge=0, description="`serve`: how long a batch waits to fill"
    )
    loadtest_step_seconds: float = Field(
        4.0,
        gt=0,
        le=600,
        description="`tune --loadtest`: seconds of each traffic step (30 steps at most; tests "
        "set it low)",
    )
    image_size: int | None = Field(
        None,
        ge=8,
        le=4096,
        description="image models: the side in "
        "pixels they take (None: the model's image processor's own)",
    )
    channels: int | None = Field(
        None,
        ge=1,
        le=4,
        description="image models: the channels the "
        "deployed model takes (None: the model's own; checked)",
    )
    sample_rate: int | None = Field(
        None,
        ge=1000,
        le=384_000,
        description="audio models: the rate the device records at (None: the model's own; "
        "a model trained at another is refused: clips are resampled to the model's)",
    )
    clip_seconds: float | None = Field(
        None,
        gt=0,
        le=60,
        description="audio models: the fixed clip length, cut or padded with silence (None: 1 s)",
    )

    targets: list[str] = Field(
        default_factory=list,
        exclude=True,  # where it is measured is not what it is: never in keys, bundles, requests
        description="`edgetune agent` URLs of alike devices that measure for this profile, "
        "sharing the work (`--target` overrides)",
    )

    @field_validator("execution_providers")
    @classmethod
    def _known_providers(cls, providers: list[str]) -> list[str]:
        if not providers:
            raise ValueError("at least one execution provider is needed")
        bad = [p for p in providers if not p.endswith("ExecutionProvider")]
        if bad:
            raise ValueError(
                f"{bad} are not ONNX Runtime provider names (e.g. CPUExecutionProvider)"
            )
        return providers

    @property
    def threads(self) -> int:
        """The thread count actually used (0 means all cores)."""
        return self.intra_op_threads or (os.cpu_count() or 1)


def available_profiles() -> dict[str, Path]:
    """Shipped profiles by name."""
    return {p.stem: p for p in sorted(PROFILES_DIR.glob("*.toml"))}


def load_profile(name_or_path: str | Path, latency_budget_ms: float | None = None) -> Profile:
    """Load a shipped profile by name or a user's TOML file; optionally override the budget."""
    shipped = available_profiles()
    path = shipped.get(str(name_or_path)) or Path(name_or_path)
    if not path.is_file():
        raise InputError(
            f"unknown profile '{name_or_path}': use one of {', '.join(shipped)} "
            "or a path to a .toml file"
        )
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"profile {path}: not valid TOML ({exc})") from None
    if latency_budget_ms is not None:
        raw["latency_budget_ms"] = latency_budget_ms
    try:
        return Profile(**raw)
    except ValidationError as exc:
        field, message = first_problem(exc)
        raise InputError(f"profile {path}: field '{field}': {message}") from None
