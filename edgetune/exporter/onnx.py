"""Export a fine-tuned checkpoint to ONNX with optimum's exporter, then check it numerically.

optimum's ONNX config registry knows each architecture's inputs, outputs and dynamic axes;
we only add the check that matters to a user: on real validation inputs, do ONNX Runtime's
logits match PyTorch's within `atol`? If not, fail naming the max difference.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgetune.data.encoding import eval_batches
from edgetune.errors import InputError, ValidationError
from edgetune.measure.bench import predict_logits, stack_logits

LOG = logging.getLogger(__name__)
DEFAULT_OPSET = 18  # optimum's recommended minimum for BERT-like encoders
DEFAULT_ATOL = 1e-4


@dataclass
class ExportCheck:
    max_abs_diff: float
    atol: float
    examples: int
    predictions_agree: float

    def to_json(self) -> dict:
        return asdict(self)


def label_names(model) -> list[str]:
    """A classifier's label names in id order (its config's id2label)."""
    return [str(model.config.id2label[i]) for i in range(model.config.num_labels)]


def load_checkpoint(checkpoint: str | Path, trust_factory: str | None = None):
    """A fine-tuned classification checkpoint and its preprocessor: the tokenizer, or for an
    image model its image processor (no remote code). A plain PyTorch module's checkpoint is
    rebuilt only if `trust_factory`, the factory the user named, is the one it records."""
    from transformers import (
        AutoFeatureExtractor,
        AutoImageProcessor,
        AutoModelForAudioClassification,
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    # Absolute before anything changes the working directory (the exporter does), or a
    # relative folder would later be read as a hub id.
    from edgetune.train.plain import is_plain_checkpoint, load_plain_checkpoint
    from edgetune.train.sources import is_audio_model, is_image_model, is_token_model

    path = Path(checkpoint).expanduser().resolve()
    if not path.exists():
        raise InputError(f"checkpoint '{checkpoint}' does not exist")
    if is_plain_checkpoint(path):
        return load_plain_checkpoint(path, trust_factory)
    if not (path / "config.json").is_file():
        raise InputError(f"checkpoint '{checkpoint}' holds no model (no config.json)")
    model_class, processor_class = (
        (AutoModelForImageClassification, AutoImageProcessor)
        if is_image_model(str(path))
        else (AutoModelForAudioClassification, AutoFeatureExtractor)
        if is_audio_model(str(path))
        else (AutoModelForTokenClassification, AutoTokenizer)
        if is_token_model(str(path))
        else (AutoModelForSequenceClassification, AutoTokenizer)
    )
    try:
        model = model_class.from_pretrained(path, trust_remote_code=False)
        tokenizer = processor_class.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise InputError(
            f"checkpoint '{checkpoint}' could not be loaded: {str(exc).splitlines()[0]}"
        ) from None
    return model.eval(), tokenizer


def export_onnx(
    model,
    tokenizer,
    target: str | Path,
    opset: int = DEFAULT_OPSET,
    example: dict[str, np.ndarray] | None = None,
) -> Path:
    """Export `model` (a text, token, image or audio classifier) to the single file `target`;
    a plain PyTorch one is traced on `example` (a batch it will be checked on) if given."""
    from optimum.exporters.onnx import onnx_export_from_model

    from edgetune.exporter.torch_export import export_plain
    from edgetune.train.plain import PlainClassifier
    from edgetune.train.sources import export_task

    target = Path(target).resolve()  # before the chdir below
    if isinstance(model, PlainClassifier):  # not a transformers model: torch.onnx.export
        return export_plain(model, target, opset, example)
    with tempfile.TemporaryDirectory(prefix="edgetune-export-") as tmp, contextlib.chdir(tmp):
        onnx_export_from_model(
            with_plain_weights(model),
            Path(tmp) / "onnx",
            opset=opset,
            task=export_task(model),
            do_validation=False,
            preprocessors=[tokenizer],
            device="cpu",
        )
        exported = Path(tmp) / "onnx" / "model.onnx"
        if list(exported.parent.glob("*.onnx_data")) or list(exported.parent.glob("*.data")):
            raise RuntimeError("the exporter wrote external data; expected a single-file model")
        target.parent.mkdir(parents=True, exist_ok=True)
        exported.replace(target)
    return target


def with_plain_weights(model):
    """`model` with its weight parametrizations (wav2vec2's weight-normed positional
    convolution) folded into plain weights, in place (the same values): exported as
    initializers, which ONNX Runtime's quantizers need (dynamic INT8 stopped on the computed
    weight). In place, since the parametrized class is shared: a copy's removal breaks it."""
    from torch.nn.utils import parametrize

    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return model


def pytorch_logits(model, batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    import torch

    outputs = []
    with torch.inference_mode():
        for batch in batches:
            feed = {k: torch.from_numpy(v) for k, v in batch.items()}
            outputs.append(model(**feed).logits.float().numpy())
    return stack_logits(outputs)


def validate_onnx(
    onnx_path: str | Path,
    model,
    tokenizer,
    texts: Sequence[str],
    max_length: int,
    atol: float = DEFAULT_ATOL,
    max_examples: int = 128,
    batches: list[dict[str, np.ndarray]] | None = None,
) -> ExportCheck:
    """Compare ONNX Runtime and PyTorch logits on real texts (or the given input `batches`,
    e.g. images); raise ValidationError past atol."""
    import onnxruntime as ort

    if batches is None:
        batches = eval_batches(tokenizer, list(texts)[:max_examples], max_length, batch_size=32)
    else:
        batches = _first_rows(batches, max_examples)
    count = sum(len(next(iter(b.values()))) for b in batches)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ort_out = predict_logits(session, batches)
    torch_out = pytorch_logits(model, batches)
    diff = float(np.max(np.abs(ort_out - torch_out)))
    agree = float(np.mean(ort_out.argmax(-1) == torch_out.argmax(-1)))
    if not np.isfinite(diff) or diff > atol:
        raise ValidationError(
            f"ONNX output 'logits' differs from PyTorch by up to {diff:.3g} (atol {atol:g}) on "
            f"{count} validation examples; raise --atol or try another --opset",
            max_abs_diff=diff,
            atol=atol,
        )
    return ExportCheck(diff, atol, count, agree)


def _first_rows(batches: list[dict[str, np.ndarray]], rows: int) -> list[dict[str, np.ndarray]]:
    kept, left = [], rows
    for batch in batches:
        if left <= 0:
            break
        kept.append({k: v[:left] for k, v in batch.items()})
        left -= len(next(iter(batch.values())))
    return kept


def export_validated(
    model,
    tokenizer,
    target: str | Path,
    texts: Sequence[str],
    max_length: int,
    opset: int | None = None,
    atol: float | None = None,
    batches: list[dict[str, np.ndarray]] | None = None,
) -> tuple[Path, ExportCheck]:
    """Export, then check against PyTorch (on `texts`, or input `batches`): the pair every
    edgetune path runs."""
    example = _first_rows(batches, 1)[0] if batches else None
    path = export_onnx(model, tokenizer, target, opset or DEFAULT_OPSET, example)
    return path, validate_onnx(
        path, model, tokenizer, texts, max_length, atol or DEFAULT_ATOL, batches=batches
    )
