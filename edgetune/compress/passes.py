"""A compression pass: a name, a typed config whose fields are its knobs, what it suits, and `run`.

Two stages: `TorchPass` edits a PyTorch model in place before export (structured pruning,
sparsity); `OnnxPass` turns one ONNX file into another (fusion, quantization). Every pass is
listed once in `PASSES` (by import path, so that ONNX-only commands never import torch), and
a candidate is a chain of `Step`s (pass name + config), so `--modes`, the search space, the
cache keys and the bundle's record all speak the same vocabulary.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from edgetune.errors import InputError, first_problem

Device = Literal["cpu", "cuda"]
Precision = Literal["fp32", "fp16", "int8", "int4"]

# The registry: pass name -> "module:Class". Adding a pass is one new file and one line here.
PASSES: dict[str, str] = {
    "ort-fusion": "edgetune.compress.onnx_passes:OrtFusion",
    "dynamic-int8": "edgetune.compress.onnx_passes:DynamicInt8",
    "static-int8": "edgetune.compress.onnx_passes:StaticInt8",
    "fp16": "edgetune.compress.onnx_passes:Fp16",
    "int4": "edgetune.compress.onnx_passes:Int4WeightOnly",
    "layer-drop": "edgetune.compress.pruning:LayerDrop",
    "head-prune": "edgetune.compress.pruning:HeadPrune",
    "ffn-prune": "edgetune.compress.pruning:FfnPrune",
    "hidden-prune": "edgetune.compress.hidden:HiddenPrune",
    "channel-prune": "edgetune.compress.channels:ChannelPrune",
    "magnitude-sparsity": "edgetune.compress.sparsity:MagnitudeSparsity",
    "vocab-trim": "edgetune.compress.vocab:VocabTrim",
}


class PassConfig(BaseModel):
    """Base of every pass config: unknown keys are errors; frozen, so it can be a cache key."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class PassContext:
    """What a pass may need besides the model: its type, calibration batches, CPU flags,
    and (torch passes) an importance criterion with the batches it scores on."""

    model_type: str | None = None  # transformers' model_type; None: an ONNX file without one
    calibration: list[dict[str, np.ndarray]] = field(default_factory=list)
    flags: set[str] | None = None
    importance: Any = None  # compress.importance.Importance, for torch passes
    scoring_batches: list | None = None
    scores: Any = None  # compress.importance.Scores, kept current by the pruning passes
    # a folder for static INT8's calibrated ranges: variants of one calibration (mixed precision
    # keeping other nodes in fp32) reuse them instead of calibrating again
    range_cache: Path | None = None
    vocabulary: Any = None  # compress.vocab.VocabularyUse: the ids a task's text uses (vocab-trim)


class Pass(ABC):
    """Declared once per class: the knobs (`Config`), where it suits, what it claims."""

    name: ClassVar[str]
    Config: ClassVar[type[PassConfig]]
    stage: ClassVar[Literal["torch", "onnx"]]
    precision: ClassVar[Precision] = "fp32"  # precision of what it outputs
    devices: ClassVar[frozenset[str]] = frozenset({"cpu", "cuda"})
    speeds_up: ClassVar[bool] = True  # False: it only shrinks size (said in the report)
    after_training: ClassVar[bool] = False  # torch passes whose effect training would undo
    needs_calibration: ClassVar[bool] = False
    # its outputs for a row depend on the other rows of the batch (activation ranges taken at
    # run time over the whole batch, padding included): accuracy also measured under load
    batch_dependent: ClassVar[bool] = False
    description: ClassVar[str] = ""

    @classmethod
    def parse_config(cls, values: dict | PassConfig | None) -> PassConfig:
        if isinstance(values, PassConfig):
            return values
        options = ", ".join(cls.Config.model_fields) or "none"
        unknown = sorted(set(values or {}) - set(cls.Config.model_fields))
        if unknown:
            raise InputError(
                f"pass '{cls.name}': unknown option {', '.join(unknown)} (its options: {options})"
            )
        try:
            return cls.Config(**(values or {}))
        except ValidationError as exc:
            where, message = first_problem(exc)
            raise InputError(
                f"pass '{cls.name}': {where}: {message} (its options: {options})"
            ) from None


class OnnxPass(Pass):
    stage = "onnx"

    @abstractmethod
    def run(self, source: Path, target: Path, config: PassConfig, ctx: PassContext) -> dict:
        """Write `target` from `source`; return the settings it chose (recorded in the bundle)."""


class TorchPass(Pass):
    stage = "torch"

    @abstractmethod
    def run(self, model, config: PassConfig, ctx: PassContext) -> dict:
        """Edit `model` in place; return what it did (recorded in the bundle)."""


def get_pass(name: str) -> Pass:
    if name not in PASSES:
        raise InputError(f"unknown pass '{name}': use one of {', '.join(PASSES)}")
    module, _, cls = PASSES[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


@dataclass(frozen=True)
class Step:
    """One pass with its config: the unit of a candidate's recipe."""

    pass_name: str
    config: PassConfig

    @classmethod
    def of(cls, pass_name: str, **values) -> Step:
        return cls(pass_name, get_pass(pass_name).parse_config(values))

    @classmethod
    def parse(cls, text: str) -> Step:
        """`name` or `name:key=value,key=value` (the CLI's `--pass`)."""
        name, _, rest = text.strip().partition(":")
        values: dict[str, Any] = {}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq:
                raise InputError(f"pass option '{item}': write key=value, e.g. {name}:sparsity=0.5")
            values[key.strip().replace("-", "_")] = value.strip()
        return cls.of(name, **values)

    def to_json(self) -> dict:
        return {"pass": self.pass_name, "config": self.config.model_dump(mode="json")}


def describe_passes() -> list[dict]:
    """Every registered pass with its declared knobs (for `edgetune passes` and the docs)."""
    out = []
    for name in PASSES:
        p = get_pass(name)
        knobs = {
            k: {
                "type": getattr(f.annotation, "__name__", str(f.annotation)),
                "default": f.default,
                "description": f.description or "",
            }
            for k, f in p.Config.model_fields.items()
        }
        out.append(
            {
                "name": name,
                "stage": p.stage,
                "precision": p.precision,
                "devices": sorted(p.devices),
                "speeds_up": p.speeds_up,
                "after_training": p.after_training,
                "description": p.description,
                "options": knobs,
            }
        )
    return out
