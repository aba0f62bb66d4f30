"""The bundle's manifest (`edgetune.json`) as one typed record: written here, validated on load.

It says what a server needs to run the model (task, labels, input names, max length,
precision, profile, the tuned session settings) and what was measured and done to it (metrics,
export check, the pass steps with their configs). `format` is checked first, so a bundle from a
newer edgetune gets a clear "upgrade" instead of a confusing field error. Unknown keys are kept,
not dropped.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgetune._version import __version__
from edgetune.errors import InputError, first_problem
from edgetune.measure.session import SessionSettings
from edgetune.profiles import Profile

FORMAT_NAME = "edgetune-bundle"
FORMAT_VERSION = 1
FORMAT = f"{FORMAT_NAME}/{FORMAT_VERSION}"


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow")

    format: str = FORMAT
    edgetune_version: str = __version__
    task: Literal[
        "text-classification",
        "text-pair-classification",
        "token-classification",
        "image-classification",
        "audio-classification",
    ] = "text-classification"
    labels: list[str] = Field(min_length=1)
    max_length: int = Field(ge=1)  # image models: the image side in pixels
    precision: Literal["fp32", "fp16", "int8", "int4"]
    profile: Profile
    input_names: list[str] = Field(default_factory=list)
    candidate: str | None = None
    source: str | None = None
    metrics: dict | None = None  # accuracy, latency, size_mb, pytorch_accuracy (as measured)
    export_check: dict | None = None
    opset: int | None = None
    mode: str | None = None
    steps: list[dict] = Field(default_factory=list)  # the ONNX passes run, with their configs
    quantization: dict | None = None
    pruning: dict | None = None
    train: dict | None = None
    serving: dict | None = None  # `tune --loadtest`: capacity at budget over loopback HTTP
    # session settings tuned where the model runs: predict, serve and bench open it with them
    # (None: a bundle from before tuning, or tuning off: the defaults)
    session: SessionSettings | None = None
    session_tuning: dict | None = None  # how `session` was chosen: the machine, the ratio

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        match = re.fullmatch(rf"{FORMAT_NAME}/(\d+)", value)
        if not match:
            raise ValueError(f"'{value}' is not an edgetune bundle format")
        if int(match.group(1)) > FORMAT_VERSION:
            raise ValueError(
                f"bundle format {value} is newer than this edgetune reads ({FORMAT}); "
                "upgrade edgetune"
            )
        return value

    @classmethod
    def parse(cls, data: object, where: str) -> Manifest:
        if not isinstance(data, dict):
            raise InputError(f"{where}: not an edgetune manifest (expected a JSON object)")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            field, message = first_problem(exc)
            raise InputError(f"{where}: field '{field}': {message}") from None

    def to_json(self) -> dict:
        return self.model_dump(mode="json", exclude_none=False)


def candidate_manifest(
    labels: list[str], max_length: int, precision: str, profile: Profile, settings: dict, **fields
) -> Manifest:
    """The one place a manifest is assembled: the fixed fields, then what the passes recorded."""
    return Manifest(
        labels=labels,
        max_length=max_length,
        precision=precision,
        profile=profile,
        **{**settings, **fields},
    )


# measured on a bundle's model, so not true of a model built from it
MEASURED = {"metrics", "serving", "session", "session_tuning"}


def derived_manifest(base: Manifest, precision: str, settings: dict, **fields) -> Manifest:
    """The manifest of a model built from `base`'s (`edgetune quantize` on a bundle): what
    describes the inputs and the model's history is kept, the new steps follow the old ones,
    and what was measured on the old model is dropped (bench the new one)."""
    kept = base.model_dump(
        exclude={"format", "edgetune_version", "labels", "max_length", "precision", "profile"}
        | MEASURED
    )
    steps = [*base.steps, *settings.get("steps", [])]
    return candidate_manifest(
        base.labels,
        base.max_length,
        precision,
        base.profile,
        {**kept, **settings, "steps": steps},
        **fields,
    )
