"""How one run's data reaches its models, text or images: the dataset, calibration batches,
the evaluation set, the fixed batch latency is measured on, and the bundle's task name.

`tune` asks `RunInputs` and stays the same for both modalities; which one a run is comes from
the model (an image-classification architecture) and is checked against the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgetune.errors import InputError
from edgetune.measure.bench import EvalSet
from edgetune.profiles import Profile


@dataclass
class RunInputs:
    dataset: object  # TextDataset or ImageDataset
    kind: str  # "text" or "image"

    @classmethod
    def load(cls, config, seed: int, model: str | None = None) -> RunInputs:
        """The data of `config` (a TuneConfig-like object) as the model's modality wants it
        (`model`: the model or checkpoint, when the config names it otherwise)."""
        from edgetune.data.images import load_image_dataset, looks_like_images
        from edgetune.data.text import load_text_dataset
        from edgetune.train.sources import is_image_model

        model = model or config.model
        fraction = getattr(config, "validation_fraction", 0.1)
        drop = getattr(config, "drop_unseen_labels", False)
        if is_image_model(model):
            return cls(
                load_image_dataset(
                    config.data,
                    getattr(config, "image_column", None),
                    config.label_column,
                    fraction,
                    seed,
                    drop,
                ),
                "image",
            )
        if looks_like_images(config.data):
            raise InputError(
                f"{config.data} holds images but model '{model}' is a text "
                "model; give an image-classification model (ViT, ResNet, ...)"
            )
        return cls(
            load_text_dataset(
                config.data, config.text_column, config.label_column, fraction, seed, drop
            ),
            "text",
        )

    @property
    def task(self) -> str:
        if self.kind == "image":
            return "image-classification"
        return "text-pair-classification" if self.dataset.is_pair else "text-classification"

    def validation_texts(self) -> list:
        return list(self.dataset.validation["text"]) if self.kind == "text" else []

    def calibration(self, preprocessor, max_length: int, samples: int, seed: int, channels: int):
        if self.kind == "image":
            from edgetune.data.pixels import calibration_pixels

            return calibration_pixels(
                preprocessor, self.dataset.train["image"], samples, seed, channels
            )
        from edgetune.data.encoding import calibration_batches

        return calibration_batches(
            preprocessor, list(self.dataset.train["text"]), max_length, samples, seed
        )

    def evaluation(self, preprocessor, max_length: int, channels: int) -> EvalSet:
        labels = np.asarray(self.dataset.validation["label"])
        if self.kind == "image":
            from edgetune.data.pixels import pixel_batches

            batches = pixel_batches(preprocessor, self.dataset.validation["image"], channels)
            return EvalSet(None, [], labels, max_length, batches)
        return EvalSet(preprocessor, self.validation_texts(), labels, max_length)

    def check_batches(self, preprocessor, channels: int = 3) -> list[dict] | None:
        """What an export is checked on for images (None: text, checked on its texts)."""
        if self.kind != "image":
            return None
        from edgetune.data.pixels import pixel_batches

        return pixel_batches(preprocessor, self.dataset.validation["image"][:128], channels)

    def latency_feed(self, preprocessor, profile: Profile, channels: int) -> dict | None:
        """Images: one batch at the profile's batch size, of validation images (None: text,
        which the bench pads to the profile's sequence length itself)."""
        if self.kind != "image":
            return None
        from edgetune.data.pixels import fixed_batch

        return fixed_batch(
            preprocessor, self.dataset.validation["image"][:8], profile.batch_size, channels
        )


def check_image_profile(model_source: str, profile: Profile) -> None:
    """Before training: the profile's image size and channels suit the model."""
    from transformers import AutoConfig

    from edgetune.factory import is_factory
    from edgetune.train.plain import PlainConfig

    if is_factory(model_source):
        from edgetune.factory import resolve_factory

        config = PlainConfig(
            model_source, ["?"], int(getattr(resolve_factory(model_source), "image_size", 224))
        )
    else:
        config = AutoConfig.from_pretrained(model_source, trust_remote_code=False)
    _check_profile(config, profile)


def _check_profile(config, profile: Profile) -> int:
    from edgetune.data.pixels import FIXED_SIZE_FAMILIES

    channels = getattr(config, "num_channels", 3)
    if profile.channels is not None and profile.channels != channels:
        raise InputError(
            f"profile '{profile.name}' asks for {profile.channels} channel(s) but the "
            f"{config.model_type} model takes {channels}; fix the profile's channels"
        )
    native = getattr(config, "image_size", None)
    if (
        profile.image_size is not None
        and config.model_type in FIXED_SIZE_FAMILIES
        and native is not None
        and profile.image_size != native
    ):
        raise InputError(
            f"profile '{profile.name}' asks for {profile.image_size}px images but this "
            f"{config.model_type} model was trained at {native}px (its position "
            f"embeddings fix it); set image_size = {native} or leave it out"
        )
    return channels


def image_settings(model, preprocessor, profile: Profile) -> tuple[object, int, int]:
    """The processor at the profile's image size, the model's channels, and the size used."""
    from edgetune.data.pixels import sized_processor

    channels, native = (
        _check_profile(model.config, profile),
        getattr(model.config, "image_size", None),
    )
    processor = sized_processor(preprocessor, profile.image_size)
    size = profile.image_size or _processor_size(processor) or native or 224
    return processor, channels, int(size)


def _processor_size(processor) -> int | None:
    size = getattr(processor, "crop_size", None) or getattr(processor, "size", None) or {}
    return size.get("height") or size.get("shortest_edge") if isinstance(size, dict) else None
