"""Checks that run before any training: is the model there and trainable, and are the saved
checkpoints whole? Each failure is one line naming what is wrong and what to do."""

from __future__ import annotations

import json
import logging
import struct
import time
from pathlib import Path

from edgetune.errors import InputError
from edgetune.hub import check_hub_id

LOG = logging.getLogger(__name__)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "spm.model",
)


def check_model_source(model_source: str, images: bool = False) -> None:
    """A local folder with config, weights' config and tokenizer (image processor, for an
    image model); or a hub id that resolves."""
    from edgetune.factory import is_factory, resolve_factory

    if is_factory(model_source):  # a plain PyTorch model: importable is what is checked
        resolve_factory(model_source)
        return
    path = Path(model_source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputError(
                f"model '{model_source}' is a file; give a Hugging Face model folder "
                "(config.json, weights, tokenizer files) or a hub id"
            )
        if not (path / "config.json").is_file():
            raise InputError(
                f"model path '{model_source}' holds no model (no config.json); "
                "give a Hugging Face model folder or a hub id"
            )
        if images:
            if not (path / "preprocessor_config.json").is_file():
                raise InputError(
                    f"model path '{model_source}' holds no image processor (no "
                    "preprocessor_config.json); save it beside the model with "
                    "image_processor.save_pretrained(folder)"
                )
            return
        if not any((path / name).is_file() for name in TOKENIZER_FILES):
            raise InputError(
                f"model path '{model_source}' holds no tokenizer (none of "
                f"{', '.join(TOKENIZER_FILES[:3])}, ...); save it beside the model "
                "with tokenizer.save_pretrained(folder)"
            )
        return
    if model_source.startswith((".", "/", "~")) or model_source.count("/") > 1:
        raise InputError(f"model path '{model_source}' does not exist")
    check_hub_id(model_source, "model", "model")


def check_trainable(model_source: str, head: str = "sequence") -> str:
    """The architecture has a `head` ("sequence", "image" or "token") classification head in
    transformers (no remote code); returns its `model_type`."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING,
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
        MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING,
    )

    from edgetune.factory import is_factory

    if is_factory(model_source):
        return "plain"
    try:
        config = AutoConfig.from_pretrained(model_source, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise InputError(
            f"model '{model_source}': its config.json cannot be read ({first})"
        ) from None
    heads = {
        "sequence": MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
        "image": MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING,
        "token": MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING,
        "audio": MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING,
    }[head]
    if type(config) not in heads:
        raise InputError(
            f"model '{model_source}' is a {config.model_type} model, which has no "
            f"{head}-classification head in transformers; edgetune tunes text, token, image "
            "and audio classifiers"
        )
    return config.model_type


def is_token_model(model_source: str) -> bool:
    """A checkpoint whose config.json names a token-classification architecture (a model
    fine-tuned for tagging; a base model is matched by its data instead)."""
    import json

    config = Path(model_source).expanduser() / "config.json"
    try:
        architectures = json.loads(config.read_text()).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return False
    return any(str(a).endswith("ForTokenClassification") for a in architectures)


def is_image_model(model_source: str) -> bool:
    """An architecture transformers classifies images with (read from config.json alone), a
    plain PyTorch image factory (`pkg.module:factory`), or a checkpoint of one."""
    from transformers import AutoConfig

    from edgetune.train.plain import plain_modality

    plain = plain_modality(model_source)
    if plain is not None:
        return plain == "image"
    if not Path(model_source).expanduser().exists():
        # A hub id: found, or one line within the hub check's seconds (transformers would
        # retry an unreachable hub for half a minute before we could say so).
        check_model_source(model_source)
    try:
        config = AutoConfig.from_pretrained(model_source, trust_remote_code=False)
    except (OSError, ValueError, KeyError):
        return False  # check_trainable says what is wrong
    return classifies_images(config)


def classifies_images(config) -> bool:
    """A transformers config whose architecture has an image-classification head: the one test
    of "image model?" for a source (`is_image_model`) and a loaded model (the exporter's task)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING

    return type(config) in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING


def classifies_audio(config) -> bool:
    """A transformers config whose architecture has an audio-classification head."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING

    return type(config) in MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING


def is_audio_model(model_source: str) -> bool:
    """A local model folder whose config.json is an audio classifier's architecture (a hub
    model is matched by its data instead: no hub call to find out), or a plain PyTorch audio
    factory or a checkpoint of one."""
    from transformers import AutoConfig

    from edgetune.train.plain import plain_modality

    plain = plain_modality(model_source)
    if plain is not None:
        return plain == "audio"
    if not (Path(model_source).expanduser() / "config.json").is_file():
        return False
    try:
        config = AutoConfig.from_pretrained(model_source, trust_remote_code=False)
    except (OSError, ValueError, KeyError):
        return False
    return classifies_audio(config)


def export_task(model) -> str:
    """optimum's task for a loaded transformers classifier: its head decides the outputs."""
    if classifies_images(model.config):
        return "image-classification"
    if classifies_audio(model.config):
        return "audio-classification"
    if type(model).__name__.endswith("ForTokenClassification"):
        return "token-classification"
    return "text-classification"


def _safetensors_whole(path: Path) -> bool:
    """The header parses and the file is as long as the header says (a torn write is shorter)."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        end = max(
            (v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0
        )
        return path.stat().st_size == 8 + length + end
    except (OSError, ValueError, KeyError, struct.error):
        return False


def checkpoint_is_whole(folder: Path) -> bool:
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    weights = list(folder.glob("*.safetensors"))
    return bool(weights) and all(_safetensors_whole(w) for w in weights)


def last_good_checkpoint(folder: Path) -> str | None:
    """The newest whole `checkpoint-N` in `folder`; broken ones are set aside (renamed) and said."""
    from transformers.trainer_utils import get_last_checkpoint

    while folder.is_dir() and (last := get_last_checkpoint(str(folder))):
        if checkpoint_is_whole(Path(last)):
            return last
        # Not "checkpoint-*": the Trainer would take it for a checkpoint again (and rotate it).
        aside = Path(last).with_name(f"damaged-{Path(last).name}-{int(time.time())}")
        Path(last).rename(aside)
        LOG.warning(
            "--resume: %s is damaged (torn write?); set aside as %s, trying the one before",
            last,
            aside.name,
        )
    return None
