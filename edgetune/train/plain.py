"""Plain PyTorch image classifiers (`--model pkg.module:factory`) in the same loop as
transformers models.

The factory returns a pretrained `nn.Module` mapping `pixel_values` [B, C, H, W] to logits.
Its last `nn.Linear` is replaced by a new head sized for the data's labels, and the module is
wrapped so that the `Trainer` sees what it expects of a transformers model (a `labels`
argument, an output with `loss` and `logits`, a small `config`). Preprocessing is a plain
resize + normalise image processor: the factory may declare `image_size`, `image_mean` and
`image_std` as attributes (defaults: 224 px, ImageNet statistics). A checkpoint is the
wrapper's safetensors weights + `edgetune_module.json` (which factory, which labels), rebuilt
by calling the factory again: no pickled code is ever loaded, and the factory the record names
is imported only when the user names it too (`--trust-factory`, or the same `--model`), since
a folder someone handed over may bring its own module to import.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn
from transformers.modeling_outputs import ImageClassifierOutput

from edgetune.errors import InputError, first_problem

MODULE_RECORD = "edgetune_module.json"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class PlainConfig:
    """The few config fields edgetune and the Trainer read from a model."""

    model_type = "plain"

    def __init__(self, factory: str, labels: list[str], image_size: int, num_channels: int = 3):
        self.factory, self.image_size, self.num_channels = factory, image_size, num_channels
        self.id2label = dict(enumerate(labels))
        self.label2id = {name: i for i, name in self.id2label.items()}
        self.num_labels = len(labels)

    def to_json(self) -> dict:
        return {
            "factory": self.factory,
            "labels": [self.id2label[i] for i in range(self.num_labels)],
            "image_size": self.image_size,
            "num_channels": self.num_channels,
        }


class PlainImageClassifier(nn.Module):
    """`body(pixel_values) -> logits`, with the cross-entropy the Trainer trains on."""

    def __init__(self, body: nn.Module, config: PlainConfig):
        super().__init__()
        self.body, self.config = body, config

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None):
        logits = self.body(pixel_values)
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)


def _replace_head(body: nn.Module, num_labels: int, spec: str) -> None:
    linears = [(name, m) for name, m in body.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InputError(
            f"{spec}: the model has no nn.Linear head to replace for {num_labels} labels"
        )
    name, old = linears[-1]
    parent = body.get_submodule(name.rpartition(".")[0]) if "." in name else body
    setattr(parent, name.rpartition(".")[2], nn.Linear(old.in_features, num_labels))


def build(spec: str, labels: list[str], head: bool = True) -> tuple[PlainImageClassifier, object]:
    """The factory's pretrained module with a new head for `labels`, and its image processor."""
    from transformers import ViTImageProcessor

    from edgetune.factory import load_factory, resolve_factory

    body = load_factory(spec).train()
    factory = resolve_factory(spec)
    size = int(getattr(factory, "image_size", 224))
    if head:
        _replace_head(body, len(labels), spec)
    processor = ViTImageProcessor(
        size={"height": size, "width": size},
        do_resize=True,
        image_mean=list(getattr(factory, "image_mean", IMAGENET_MEAN)),
        image_std=list(getattr(factory, "image_std", IMAGENET_STD)),
    )
    return PlainImageClassifier(body, PlainConfig(spec, labels, size)), processor


def save_record(model: PlainImageClassifier, folder: Path) -> None:
    (Path(folder) / MODULE_RECORD).write_text(json.dumps(model.config.to_json(), indent=2))


def is_plain_checkpoint(folder: Path) -> bool:
    return (Path(folder) / MODULE_RECORD).is_file()


class ModuleRecord(BaseModel):
    """`edgetune_module.json` as read back: typed, so a damaged one is one line."""

    model_config = ConfigDict(extra="ignore")

    factory: str
    labels: list[str] = Field(min_length=1)


def read_record(folder: Path) -> ModuleRecord:
    path = Path(folder) / MODULE_RECORD
    try:
        return ModuleRecord.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        field, message = first_problem(exc)
        raise InputError(f"{path}: field '{field}': {message}") from None


def load_plain_checkpoint(
    folder: Path, trust_factory: str | None = None
) -> tuple[PlainImageClassifier, object]:
    """Rebuilt from the factory, if `trust_factory` (what the user named) is the one the record
    names; then the trained weights (safetensors) loaded strictly."""
    from safetensors.torch import load_file
    from transformers import AutoImageProcessor

    from edgetune.factory import trusted_factory

    record = read_record(folder)
    spec = trusted_factory(record.factory, trust_factory, f"checkpoint '{folder}'")
    model, _ = build(spec, record.labels)
    weights = Path(folder) / "model.safetensors"
    if not weights.is_file():
        raise InputError(f"checkpoint '{folder}' has no model.safetensors")
    model.load_state_dict(load_file(str(weights)))
    processor = AutoImageProcessor.from_pretrained(str(folder), trust_remote_code=False)
    return model.eval(), processor


class LogitsOnly(nn.Module):
    """A plain classifier returning its logits alone: what its ONNX graph outputs."""

    def __init__(self, model: PlainImageClassifier):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values).logits
