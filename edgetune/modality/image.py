"""Image classification: image folders or CSVs of paths, the image processor at the profile's
size and channels, pixel batches. Transformers image classifiers and plain PyTorch factories
(`pkg.module:factory`) alike."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgetune.deploy.bundle import Bundle
from edgetune.errors import InputError
from edgetune.measure.bench import EvalSet, Subject
from edgetune.measure.front_end import FrontEnd
from edgetune.modality.base import (
    BenchData,
    CheckpointInputs,
    Modality,
    Prepared,
    bundle_split,
    holdout,
)
from edgetune.profiles import Profile

if TYPE_CHECKING:
    import datasets

CHECK_ROWS = 128
LATENCY_IMAGES = 8  # distinct validation images repeated into the timed batch


class ImageModality(Modality):
    name = "image"
    tasks = ("image-classification",)

    @classmethod
    def claims_model(cls, model_source: str) -> bool:
        from edgetune.train.sources import is_image_model

        return is_image_model(model_source)

    def check_source(self, model_source: str) -> None:
        from edgetune.train.sources import check_model_source

        check_model_source(model_source, images=True)

    def check_trainable(self, model_source: str) -> str:
        from edgetune.train.sources import check_trainable

        return check_trainable(model_source, head="image")

    def check_profile(self, model_source: str, profile: Profile) -> None:
        from transformers import AutoConfig

        from edgetune.factory import is_factory

        if is_factory(model_source):
            from edgetune.factory import resolve_factory
            from edgetune.train.plain import PlainConfig, image_processor_of

            size = image_processor_of(resolve_factory(model_source)).size["height"]
            config = PlainConfig(model_source, ["?"], "image", (3, size, size), size)
        else:
            config = AutoConfig.from_pretrained(model_source, trust_remote_code=False)
        _check_profile(config, profile)

    def load_data(self, config, seed: int, model_source: str):
        from edgetune.data.images import load_image_dataset

        columns = (getattr(config, "image_column", None), config.label_column)
        dataset = load_image_dataset(config.data, *columns, **holdout(config, seed))
        return self.adopt(dataset)

    def task(self, dataset) -> str:
        return "image-classification"

    def load_pretrained(self, model_source: str, label_names: list[str]):
        from edgetune.train.tasks import ImageTask

        return ImageTask.load(model_source, label_names)

    def train_task(self, preprocessor, model, config):
        from edgetune.data.pixels import sized_processor
        from edgetune.train.tasks import ImageTask

        channels = getattr(model.config, "num_channels", 3)
        return ImageTask(sized_processor(preprocessor, config.image_size), channels, config.seed)

    def prepare(self, model, preprocessor, profile: Profile, max_length: int) -> Prepared:
        """The processor at the profile's image size; the input size is the image side."""
        from edgetune.data.pixels import sized_processor

        channels = _check_profile(model.config, profile)
        processor = sized_processor(preprocessor, profile.image_size)
        native = getattr(model.config, "image_size", None)
        size = profile.image_size or _processor_size(processor) or native or 224
        return Prepared(processor, int(size), channels)

    def calibration(self, dataset, prepared: Prepared, samples: int, seed: int) -> list[dict]:
        from edgetune.data.pixels import calibration_pixels

        images = dataset.train["image"]
        return calibration_pixels(prepared.processor, images, samples, seed, prepared.channels)

    def evaluation(self, dataset, prepared: Prepared) -> EvalSet:
        from edgetune.data.pixels import pixel_batches

        split = dataset.validation
        batches = pixel_batches(prepared.processor, split["image"], prepared.channels)
        return EvalSet(None, [], np.asarray(split["label"]), prepared.input_size, batches)

    def check_batches(self, dataset, prepared: Prepared) -> list[dict]:
        from edgetune.data.pixels import pixel_batches

        images = dataset.validation["image"][:CHECK_ROWS]
        return pixel_batches(prepared.processor, images, prepared.channels)

    def latency_feed(self, dataset, prepared: Prepared, profile: Profile) -> dict | None:
        from edgetune.data.pixels import fixed_batch

        images = dataset.validation["image"][:LATENCY_IMAGES]
        return fixed_batch(prepared.processor, images, profile.batch_size, prepared.channels)

    def front_end(self, dataset, prepared: Prepared, profile: Profile) -> FrontEnd | None:
        """Timed with the processor the bundle will load (`predict`'s), not training's."""
        from edgetune.data.image_processor import as_loaded

        files = _image_files(dataset.validation, LATENCY_IMAGES)
        processor = as_loaded(prepared.processor)
        return _front_end(processor, files, prepared.channels, profile.batch_size)

    def checkpoint_inputs(
        self, checkpoint: Path, data: str | None, prepared: Prepared, calibration_samples: int
    ) -> CheckpointInputs:
        """The data's validation images, or with no data a few stand-ins (grey and noise),
        through the checkpoint's processor at the profile's size."""
        from edgetune.data.pixels import calibration_pixels, pixel_batches

        if data is not None:
            from edgetune.data.images import load_image_dataset

            images = load_image_dataset(data).validation["image"][:CHECK_ROWS]
        else:
            images = _stand_in_images(prepared.input_size)
        processor, channels = prepared.processor, prepared.channels
        calibration = (
            calibration_pixels(processor, images, calibration_samples, 0, channels)
            if calibration_samples
            else []
        )
        batches = pixel_batches(processor, images, channels)
        return CheckpointInputs(batches, "image-classification", calibration)

    def bench_subject(self, name: str, bundle: Bundle, data: BenchData, profile: Profile):
        """Timed on one batch of the data's images (or a grey image) as the bundle's own image
        processor makes them."""
        from PIL import Image

        from edgetune.data.image_processor import load_image_processor
        from edgetune.data.pixels import fixed_batch

        side = bundle.max_length
        if data.data is None:
            images = [Image.new("RGB", (side, side), (128, 128, 128))]
            files, of = [_stand_in_photo()], "a 640x480 JPEG stand-in; --data times yours"
        else:
            split = self._split(bundle, data)
            images = split["image"][:LATENCY_IMAGES]
            files, of = _image_files(split, LATENCY_IMAGES), "the data's images"
        processor = load_image_processor(bundle.path)
        feed = fixed_batch(processor, images, profile.batch_size, bundle.channels)
        front_end = _front_end(processor, files, bundle.channels, profile.batch_size, of)
        return Subject(name, bundle.model_path, None, feed, front_end=front_end)

    def bench_evaluation(self, bundle: Bundle, subject: Subject, data: BenchData) -> EvalSet:
        from edgetune.data.image_processor import load_image_processor
        from edgetune.data.pixels import pixel_batches

        split = self._split(bundle, data)
        processor = load_image_processor(bundle.path)
        batches = pixel_batches(processor, split["image"], bundle.channels)
        return EvalSet(None, [], np.asarray(split["label"]), bundle.max_length, batches)

    @staticmethod
    def _split(bundle: Bundle, data: BenchData):
        from edgetune.data.images import load_image_dataset

        return bundle_split(load_image_dataset, bundle, data)

    def bundle_calibration(self, bundle: Bundle, data: str, samples: int) -> list[dict]:
        """Training images of `data` through the bundle's own image processor and channels."""
        from edgetune.data.image_processor import load_image_processor
        from edgetune.data.images import load_image_dataset
        from edgetune.data.pixels import calibration_pixels

        images = load_image_dataset(data).train["image"]
        processor = load_image_processor(bundle.path)
        return calibration_pixels(processor, images, samples, 0, bundle.channels)

    def predictor(self, bundle: Bundle, threads: int = 0):
        from edgetune.deploy.runtime import ImagePredictor

        return ImagePredictor(bundle, threads)


def _front_end(
    processor, files: list[bytes], channels: int, batch_size: int, of: str = "validation images"
) -> FrontEnd:
    """What `predict` does with a batch of image files before the model: decode, then the
    bundle's processor (resize, crop, rescale, normalise)."""
    from edgetune.data.pixels import open_image, pixel_values

    picked = [files[i % len(files)] for i in range(batch_size)]
    what = f"the image front end (decode, resize, normalise; {of})"
    return FrontEnd(
        what, batch_size, lambda: pixel_values(processor, [open_image(f) for f in picked], channels)
    )


def _image_files(split: datasets.Dataset, count: int) -> list[bytes]:
    """The first `count` images of a split as their files' bytes (what `predict` decodes);
    an image with no file here (a path inside an archive) encoded again as PNG."""
    import datasets

    raw = split.cast_column("image", datasets.Image(decode=False))["image"][:count]
    return [_file_bytes(row) for row in raw]


def _file_bytes(row: dict) -> bytes:
    import datasets

    if row.get("bytes"):
        return row["bytes"]
    if row.get("path") and Path(row["path"]).is_file():
        return Path(row["path"]).read_bytes()
    return _encoded(datasets.Image().decode_example(row), "PNG")


def _stand_in_photo() -> bytes:
    """A 640x480 JPEG of noise over a gradient, for `bench` with no data: a camera-sized
    file to decode and resize, where a stand-in at the model's size would cost nothing."""
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, 640, dtype=np.float32)[None, :, None]
    pixels = np.clip(ramp + rng.normal(0, 25, (480, 640, 3)), 0, 255).astype(np.uint8)
    return _encoded(Image.fromarray(pixels), "JPEG")


def _encoded(image, image_format: str) -> bytes:
    encoded = io.BytesIO()
    image.save(encoded, format=image_format)
    return encoded.getvalue()


def _stand_in_images(side: int) -> list:
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return [Image.new("RGB", (side, side), (128, 128, 128)), Image.fromarray(noise)]


def _check_profile(config, profile: Profile) -> int:
    """The profile's channels and image size suit the model; returns its channels."""
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


def _processor_size(processor) -> int | None:
    size = getattr(processor, "crop_size", None) or getattr(processor, "size", None) or {}
    return size.get("height") or size.get("shortest_edge") if isinstance(size, dict) else None
