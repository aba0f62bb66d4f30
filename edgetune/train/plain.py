"""Plain PyTorch classifiers (`--model pkg.module:factory`) in the same loop as transformers
models: image models over pixels, and audio models over log-mel features.

The factory returns a pretrained `nn.Module` mapping its input to logits: `pixel_values`
[B, C, H, W] for images (the default), `input_features` [B, n_mels, frames] when the factory
declares `modality = "audio"`. Its last `nn.Linear` is replaced by a new head sized for the
data's labels, and the module is wrapped so that the `Trainer` sees what it expects of a
transformers model (a `labels` argument, an output with `loss` and `logits`, a small `config`).
Preprocessing is declared by attributes of the factory:
- images: a resize + normalise image processor, `image_size`, `image_mean`, `image_std`
  (defaults: 224 px, ImageNet statistics);
- audio: numpy log-mel features (`data/logmel.py`), `sample_rate`, `n_mels`, `n_fft`,
  `hop_length` (defaults: 16 kHz, 64 mels, 25 ms windows every 10 ms).
A checkpoint is the wrapper's safetensors weights + `edgetune_module.json` (which factory, which
labels, which modality), rebuilt by calling the factory again: no pickled code is ever loaded,
and the factory the record names is imported only when the user names it too
(`--trust-factory`, or the same `--model`), since a folder someone handed over may bring its
own module to import.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from edgetune.errors import InputError, first_problem

MODULE_RECORD = "edgetune_module.json"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class PlainConfig:
    """The few config fields edgetune and the Trainer read from a model; `input_shape` is one
    example's (no batch axis): what an export traces when no real input is given."""

    model_type = "plain"

    def __init__(
        self,
        factory: str,
        labels: list[str],
        modality: str,
        input_shape: tuple[int, ...],
        image_size: int | None = None,
    ):
        self.factory, self.modality, self.input_shape = factory, modality, tuple(input_shape)
        self.image_size = image_size
        self.num_channels = input_shape[0] if modality == "image" else 1
        self.id2label = dict(enumerate(labels))
        self.label2id = {name: i for i, name in self.id2label.items()}
        self.num_labels = len(labels)

    def to_json(self) -> dict:
        return {
            "factory": self.factory,
            "labels": [self.id2label[i] for i in range(self.num_labels)],
            "modality": self.modality,
            "input_shape": list(self.input_shape),
            "image_size": self.image_size,
            "num_channels": self.num_channels,
        }


class PlainClassifier(nn.Module):
    """`body(inputs) -> logits`, with the cross-entropy the Trainer trains on. Subclasses name
    the one input (the Trainer and the ONNX graph pass it by that name)."""

    input_name: str

    def __init__(self, body: nn.Module, config: PlainConfig):
        super().__init__()
        self.body, self.config = body, config

    def classify(self, inputs: torch.Tensor, labels: torch.Tensor | None):
        logits = self.body(inputs)
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def example(self) -> torch.Tensor:
        return torch.zeros(1, *self.config.input_shape)


class PlainImageClassifier(PlainClassifier):
    input_name = "pixel_values"

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None):
        return self.classify(pixel_values, labels)


class PlainAudioClassifier(PlainClassifier):
    input_name = "input_features"

    def forward(self, input_features: torch.Tensor, labels: torch.Tensor | None = None):
        return self.classify(input_features, labels)


def _replace_head(body: nn.Module, num_labels: int, spec: str) -> None:
    linears = [(name, m) for name, m in body.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InputError(
            f"{spec}: the model has no nn.Linear head to replace for {num_labels} labels"
        )
    name, old = linears[-1]
    parent = body.get_submodule(name.rpartition(".")[0]) if "." in name else body
    setattr(parent, name.rpartition(".")[2], nn.Linear(old.in_features, num_labels))


def factory_modality(factory: object, spec: str) -> str:
    """What a factory's module takes: its `modality` attribute, "image" when it has none."""
    modality = getattr(factory, "modality", "image")
    if modality not in PLAIN_KINDS:
        raise InputError(
            f"{spec}: modality = {modality!r} is not one edgetune trains plain modules for "
            f"({', '.join(PLAIN_KINDS)})"
        )
    return modality


def image_processor_of(factory: object):
    """The resize + normalise image processor a plain image factory declares."""
    from transformers import ViTImageProcessor

    size = int(getattr(factory, "image_size", 224))
    return ViTImageProcessor(
        size={"height": size, "width": size},
        do_resize=True,
        image_mean=list(getattr(factory, "image_mean", IMAGENET_MEAN)),
        image_std=list(getattr(factory, "image_std", IMAGENET_STD)),
    )


def audio_processor_of(factory: object):
    """The log-mel front end a plain audio factory declares (`data/logmel.py`)."""
    from edgetune.data.logmel import LogMelProcessor

    declared = {
        name: getattr(factory, attribute)
        for name, attribute in (
            ("sampling_rate", "sample_rate"),
            ("n_mels", "n_mels"),
            ("n_fft", "n_fft"),
            ("hop_length", "hop_length"),
        )
        if hasattr(factory, attribute)
    }
    return LogMelProcessor.of(declared)


def _image(factory: object, spec: str, body: nn.Module, labels: list[str]):
    processor = image_processor_of(factory)
    size = processor.size["height"]
    config = PlainConfig(spec, labels, "image", (3, size, size), image_size=size)
    return PlainImageClassifier(body, config), processor


def _audio(factory: object, spec: str, body: nn.Module, labels: list[str]):
    processor = audio_processor_of(factory)
    shape = (processor.n_mels, processor.frames(processor.sampling_rate))  # one second
    return PlainAudioClassifier(body, PlainConfig(spec, labels, "audio", shape)), processor


PLAIN_KINDS = {"image": _image, "audio": _audio}


def build(spec: str, labels: list[str], head: bool = True) -> tuple[PlainClassifier, object]:
    """The factory's pretrained module with a new head for `labels`, and its preprocessor."""
    from edgetune.factory import load_factory, resolve_factory

    factory = resolve_factory(spec)
    modality = factory_modality(factory, spec)
    body = load_factory(spec).train()
    if head:
        _replace_head(body, len(labels), spec)
    return PLAIN_KINDS[modality](factory, spec, body, labels)


def plain_modality(model_source: str) -> str | None:
    """ "image" or "audio" for a plain factory the user named or a plain checkpoint (its
    record); None for anything else."""
    from edgetune.factory import is_factory, resolve_factory

    if is_factory(model_source):
        return factory_modality(resolve_factory(model_source), model_source)
    if is_plain_checkpoint(Path(model_source)):
        return read_record(Path(model_source)).modality
    return None


def save_record(model: PlainClassifier, folder: Path) -> None:
    (Path(folder) / MODULE_RECORD).write_text(json.dumps(model.config.to_json(), indent=2))


def is_plain_checkpoint(folder: Path) -> bool:
    return (Path(folder) / MODULE_RECORD).is_file()


class ModuleRecord(BaseModel):
    """`edgetune_module.json` as read back: typed, so a damaged one is one line."""

    model_config = ConfigDict(extra="ignore")

    factory: str
    labels: list[str] = Field(min_length=1)
    modality: Literal["image", "audio"] = "image"


def read_record(folder: Path) -> ModuleRecord:
    path = Path(folder) / MODULE_RECORD
    try:
        return ModuleRecord.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        field, message = first_problem(exc)
        raise InputError(f"{path}: field '{field}': {message}") from None


def load_plain_checkpoint(
    folder: Path, trust_factory: str | None = None
) -> tuple[PlainClassifier, object]:
    """Rebuilt from the factory, if `trust_factory` (what the user named) is the one the record
    names; then the trained weights (safetensors) loaded strictly, and the preprocessor saved
    beside them."""
    from safetensors.torch import load_file
    from transformers import AutoImageProcessor

    from edgetune.data.front_end import load_audio_processor
    from edgetune.factory import trusted_factory

    record = read_record(folder)
    spec = trusted_factory(record.factory, trust_factory, f"checkpoint '{folder}'")
    model, _ = build(spec, record.labels)
    if model.config.modality != record.modality:
        raise InputError(
            f"checkpoint '{folder}' was trained as a {record.modality} model but {spec} now "
            f"builds a {model.config.modality} one"
        )
    weights = Path(folder) / "model.safetensors"
    if not weights.is_file():
        raise InputError(f"checkpoint '{folder}' has no model.safetensors")
    model.load_state_dict(load_file(str(weights)))
    if record.modality == "audio":
        processor = load_audio_processor(folder)
    else:
        processor = AutoImageProcessor.from_pretrained(str(folder), trust_remote_code=False)
    return model.eval(), processor


class LogitsOnly(nn.Module):
    """A plain classifier returning its logits alone: what its ONNX graph outputs."""

    def __init__(self, model: PlainClassifier):
        super().__init__()
        self.model = model

    def forward(self, inputs):
        return self.model(inputs).logits
