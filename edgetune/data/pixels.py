"""Images -> the numpy `pixel_values` batches a model or an ONNX session takes.

The model's own image processor (resize, crop, rescale, normalise) does the work; this module
adds what edgetune needs around it: the profile's image size and channels, the light training
augmentation (random horizontal flip and a random crop of 80-100 % of the area), and batches
at one fixed shape for latency and calibration.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgetune.errors import InputError

# Families whose input size is fixed (position embeddings; a plain model's export shape):
# another size is refused up front.
FIXED_SIZE_FAMILIES = ("vit", "deit", "plain")


def sized_processor(processor, image_size: int | None):
    """The processor resizing (and cropping) to `image_size`, or as it came when None."""
    if image_size is None:
        return processor
    size = dict(processor.size) if isinstance(processor.size, dict) else {"height": processor.size}
    processor.size = (
        {"shortest_edge": image_size}
        if "shortest_edge" in size
        else {"height": image_size, "width": image_size}
    )
    if getattr(processor, "crop_size", None) is not None:
        processor.crop_size = {"height": image_size, "width": image_size}
    if getattr(processor, "crop_pct", None) is not None:
        processor.crop_pct = 1.0  # the shortest edge to the asked size, then its centre square
    return processor


def to_mode(image, channels: int):
    """PIL image in the model's channel layout (RGB, or L for one channel)."""
    mode = "L" if channels == 1 else "RGB"
    return image if image.mode == mode else image.convert(mode)


def augment(image, rng: np.random.Generator):
    """A random crop of 80-100 % of the area (aspect kept), flipped left-right half the time."""
    from PIL import Image

    width, height = image.size
    scale = float(np.sqrt(rng.uniform(0.8, 1.0)))
    w, h = max(1, int(width * scale)), max(1, int(height * scale))
    left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    image = image.crop((left, top, left + w, top + h))
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image


def open_image(source: str | Path | bytes):
    """An image file (its path or its bytes) decoded whole, as `predict` reads it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            return image.copy()
    except (OSError, UnidentifiedImageError):
        name = "an image's bytes" if isinstance(source, bytes) else str(source)
        raise InputError(f"{name}: not a readable image") from None


def pixel_values(processor, images: Sequence, channels: int = 3) -> np.ndarray:
    out = processor(images=[to_mode(i, channels) for i in images], return_tensors="np")
    return np.asarray(out["pixel_values"], dtype=np.float32)


def pixel_batches(
    processor, images: Sequence, channels: int = 3, batch_size: int = 32
) -> list[dict[str, np.ndarray]]:
    """The images in order, in batches (every image comes out at the processor's one size)."""
    images = list(images)
    return [
        {"pixel_values": pixel_values(processor, images[i : i + batch_size], channels)}
        for i in range(0, len(images), batch_size)
    ]


def fixed_batch(
    processor, images: Sequence, batch_size: int, channels: int = 3
) -> dict[str, np.ndarray]:
    """One batch of exactly `batch_size` real images (repeated when there are fewer)."""
    images = list(images)
    chunk = [images[i % len(images)] for i in range(batch_size)]
    return {"pixel_values": pixel_values(processor, chunk, channels)}


def calibration_pixels(
    processor, images: Sequence, samples: int, seed: int, channels: int = 3, batch_size: int = 8
) -> list[dict[str, np.ndarray]]:
    """A seeded sample of training images in small batches, for static INT8."""
    images = list(images)
    order = list(np.random.default_rng(seed).permutation(len(images))[:samples])
    order = [order[i % len(order)] for i in range(-(-len(order) // batch_size) * batch_size)]
    # full batches only (repeating the first images): histogram calibrators need one shape
    return pixel_batches(processor, [images[i] for i in order], channels, batch_size)
